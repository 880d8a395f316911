"""The embedded DuckDB storage backend.

Every DuckDB detail lives here. One database file holds the `events` table;
the writer appends whole batches from Arrow tables in one transaction each,
which DuckDB makes durable by syncing its write-ahead log on commit. Readers
use short transactions over bounded sequence ranges, so no read holds back a
checkpoint for long.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from eventlog.archive import ARCHIVE_COLUMNS, ARCHIVE_SCHEMA
from eventlog.errors import LogUnavailable, StorageInvalidated, TokenExists
from eventlog.filters import Matcher
from eventlog.storage import (
    AuditQuery,
    AuditRecord,
    EventRecord,
    LogBounds,
    ScanResult,
    StoredAudit,
    StoredEvent,
    StoredKey,
    SubscriptionRecord,
    TokenRecord,
)

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    sequence BIGINT NOT NULL,
    recordedtime TIMESTAMPTZ NOT NULL,
    id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    specversion VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    subject VARCHAR,
    time VARCHAR,
    datacontenttype VARCHAR,
    dataschema VARCHAR,
    extensions MAP(VARCHAR, VARCHAR) NOT NULL,
    key BIGINT NOT NULL,
    digest BLOB NOT NULL,
    event VARCHAR NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS audit_ids;
CREATE TABLE IF NOT EXISTS audit (
    id BIGINT NOT NULL DEFAULT nextval('audit_ids'),
    time TIMESTAMPTZ NOT NULL,
    principal VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL,
    status INTEGER NOT NULL,
    client VARCHAR,
    count BIGINT,
    first_sequence BIGINT,
    last_sequence BIGINT,
    detail JSON
);
-- A publish's audit record lives on the newest event it appended, written by
-- the same INSERT: a second statement would cost each commit group as much
-- as its events do. Retention moves these records into `audit` before it
-- deletes their events.
ALTER TABLE events ADD COLUMN IF NOT EXISTS audit_id BIGINT;
ALTER TABLE events ADD COLUMN IF NOT EXISTS audit_time TIMESTAMPTZ;
ALTER TABLE events ADD COLUMN IF NOT EXISTS audit_principal VARCHAR;
ALTER TABLE events ADD COLUMN IF NOT EXISTS audit_record VARCHAR;
-- The audit trail: `audit_keys` has the columns that queries filter on, and
-- `audit_trail` every column. Only publishes are stored on events.
CREATE VIEW IF NOT EXISTS audit_keys AS
SELECT id, time, principal, action FROM audit
UNION ALL
SELECT audit_id, audit_time, audit_principal, 'publish' FROM events WHERE audit_id IS NOT NULL;
CREATE VIEW IF NOT EXISTS audit_trail AS
SELECT id, time, principal, action, outcome, status, client, count, first_sequence,
    last_sequence, detail::VARCHAR AS detail
FROM audit
UNION ALL
SELECT audit_id, audit_time, audit_principal, 'publish', audit_record->>'outcome',
    (audit_record->>'status')::INTEGER, audit_record->>'client',
    (audit_record->>'count')::BIGINT, (audit_record->>'first_sequence')::BIGINT, sequence,
    json_extract(audit_record, '$.detail')::VARCHAR
FROM events
WHERE audit_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS tokens (
    name VARCHAR PRIMARY KEY,
    token_hash BLOB NOT NULL,
    grants VARCHAR[] NOT NULL,
    created TIMESTAMPTZ NOT NULL
);
-- At most one row: the newest event that retention deleted, so that the head
-- and the horizon survive a restart after every event was deleted.
CREATE TABLE IF NOT EXISTS retention (
    trimmed_through BIGINT NOT NULL,
    trimmed_recordedtime TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriptions (
    name VARCHAR PRIMARY KEY,
    owner VARCHAR NOT NULL,
    filters JSON NOT NULL,
    cursor BIGINT NOT NULL,
    created TIMESTAMPTZ NOT NULL,
    updated TIMESTAMPTZ NOT NULL
);
"""

_AUDIT_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("us", tz="UTC")),
        ("principal", pa.string()),
        ("action", pa.string()),
        ("outcome", pa.string()),
        ("status", pa.int32()),
        ("client", pa.string()),
        ("count", pa.int64()),
        ("first_sequence", pa.int64()),
        ("last_sequence", pa.int64()),
        ("detail", pa.string()),
    ]
)
_AUDIT_COLUMNS = ", ".join(_AUDIT_SCHEMA.names)
# The columns of `events` that hold a publish's audit record, besides its id.
_FOLDED_AUDIT_COLUMNS = "audit_time, audit_principal, audit_record"
# The audit records as `read_audit_arrow` returns them: with their ids.
_AUDIT_EXPORT_SCHEMA = pa.schema([("id", pa.int64()), *_AUDIT_SCHEMA])

_ARCHIVE_SELECT = ", ".join(ARCHIVE_COLUMNS)
# Rows per Arrow batch of `read_events_arrow`: DuckDB's vector size times 4.
_ARROW_BATCH_ROWS = 8192

_ARROW_SCHEMA = pa.schema(
    [
        ("sequence", pa.int64()),
        ("recordedtime", pa.timestamp("us", tz="UTC")),
        ("id", pa.string()),
        ("source", pa.string()),
        ("specversion", pa.string()),
        ("type", pa.string()),
        ("subject", pa.string()),
        ("time", pa.string()),
        ("datacontenttype", pa.string()),
        ("dataschema", pa.string()),
        ("extensions", pa.map_(pa.string(), pa.string())),
        ("key", pa.int64()),
        ("digest", pa.binary()),
        ("event", pa.string()),
    ]
)

_COLUMNS = ", ".join(_ARROW_SCHEMA.names)

# How long `reopen` waits for the queries that are running to end.
_REOPEN_WAIT_SECONDS = 10.0
# The write-ahead log size that triggers an automatic checkpoint after a
# reopen: large enough that none happens before `checkpoint` succeeds.
_DEFERRED_THRESHOLD = "1TB"
# Free space that a checkpoint needs besides twice the write-ahead log.
_CHECKPOINT_HEADROOM_BYTES = 1024 * 1024

# Filtered scans examine windows of sequences that grow from the first size
# to the last, and stop after the total; the caller continues from
# `scanned_to`. The window keeps each read transaction short.
_FIRST_WINDOW = 4_096
_MAX_WINDOW = 262_144
_MAX_SCAN = 1_048_576

# DuckDB's memory limit (its default is 80% of RAM), so that it evicts cached
# column blocks instead of keeping every block that a scan loaded. On the 10M
# log, in-process, 1,600 appends after the key filter's fill left the process
# at 295 MB RSS with this limit and at 551 MB without one. Pages, GROUP BY
# queries and duplicate checks ran under it. The key filter's query gets
# more, because at a limit of 120 MB it failed.
# NOTE: a POST /query that needs more than this, such as a large ORDER BY,
# spills to DuckDB's temporary folder or fails with "Out of Memory Error".
MEMORY_LIMIT_BYTES = 100_000_000
# Memory that the key filter's query needs besides the limit, per byte of the
# filter: a bit string per thread, the result, and its BLOB copy.
_KEY_FILTER_MEMORY_PER_BYTE = 4

# Each byte value with its bits in reverse order.
_REVERSED_BITS = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))


class DuckDBStorage:
    """Events in one DuckDB database file; see `eventlog.storage.Storage`."""

    def __init__(self, path: Path | str, read_only: bool = False) -> None:
        """Open (or create) the database; `read_only` opens an existing one for reading only.

        Raises `LogUnavailable` when the file cannot be opened, such as while
        another process, a server for instance, has it open.
        """
        self.path = str(path)
        self._read_only = read_only
        self._database = self._open(read_only)
        self._local = threading.local()
        # Guards the root connection, `_connections` and `_generation`:
        # DuckDB rejects a call on a connection that another thread is using.
        self._lock = threading.Lock()
        self._connections: list[duckdb.DuckDBPyConnection] = []
        # Counts the reopens; a thread's cursor from an earlier one is closed.
        self._generation = 0
        self._reopening = False
        self._checkpoints_deferred = False
        if not read_only and self._space_shortage() is not None:
            logger.warning(
                "Automatic checkpoints of %s wait until its disk has room: %s",
                self.path,
                self._space_shortage(),
            )
            self._defer_checkpoints()

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._reopening:
            raise LogUnavailable(f"The event database {self.path!r} is being reopened; retry.")
        current: tuple[int, duckdb.DuckDBPyConnection] | None = getattr(
            self._local, "connection", None
        )
        if current is not None and current[0] == self._generation:
            return current[1]
        with self._lock:
            try:
                connection = self._database.cursor()
            except duckdb.Error as error:
                raise LogUnavailable(
                    f"Cannot connect to the event database {self.path!r}: {error}. "
                    "The store is closed; open it again."
                ) from error
            self._local.connection = (self._generation, connection)
            self._connections.append(connection)
        return connection

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        try:
            database = duckdb.connect(self.path, read_only=read_only)
            database.execute(f"SET memory_limit = '{MEMORY_LIMIT_BYTES}B'")
            if not read_only:
                database.execute(_SCHEMA)
                _drop_key_index(database)
        except duckdb.Error as error:
            raise LogUnavailable(
                f"Cannot open the event database {self.path!r}: {error}. Check that no other "
                "process has it open and that the folder is writable."
            ) from error
        return database

    def bounds(self) -> LogBounds:
        row = self._query_one(
            "SELECT min(sequence), max(sequence), max(recordedtime), "
            "(SELECT max(trimmed_through) FROM retention), "
            "(SELECT max(trimmed_recordedtime) FROM retention) FROM events"
        )
        assert row is not None  # An aggregate without GROUP BY returns one row.
        earliest, head, last_recordedtime, trimmed_through, trimmed_recordedtime = row
        if head is None:
            # Retention may have deleted every event; sequences still go on.
            head = trimmed_through or 0
            earliest = head + 1
            last_recordedtime = trimmed_recordedtime
        return LogBounds(earliest, head, last_recordedtime, trimmed_recordedtime)

    def find(self, keys: Sequence[int]) -> list[StoredKey]:
        # Without an index on `key`, the first query scans the `key` and
        # `sequence` columns only. The second reads the other columns of the
        # few rows found, which zone maps on `sequence` locate.
        if not keys:
            return []
        found = self._query("SELECT sequence FROM events WHERE key IN ?", [list(set(keys))])
        if not found:
            return []
        rows = self._query(
            "SELECT source, id, sequence, digest FROM events WHERE sequence IN ?",
            [[row[0] for row in found]],
        )
        return [StoredKey(row[0], row[1], row[2], bytes(row[3])) for row in rows]

    def key_filter(self, bits: int, hashes: int, through: int) -> bytes:
        # `bitstring_agg` keeps one bit string of `bits` per thread. A GROUP BY
        # over the 64-bit words built a hash table of every word instead. On a
        # log of 10M events that raised the process's RSS to about 1 GB, and
        # this query to about 460 MB (DuckDB 2.0.1, 2 threads). The bit string
        # is big-endian within each byte and the filter little-endian, so each
        # byte is reversed.
        sql = """
            SELECT bitstring_agg(
                ((key & 4294967295) + probe * ((key >> 32) | 1)) % $bits, 0, $bits - 1
            )::BLOB AS bitmap
            FROM events, range($hashes) AS probes(probe)
            WHERE sequence <= $through
        """

        try:
            # Listed with the others, so that `close` interrupts the query.
            with self._lock:
                connection = self._database.cursor()
                self._connections.append(connection)

            extra = bits // 8 * _KEY_FILTER_MEMORY_PER_BYTE
            connection.execute(f"SET memory_limit = '{MEMORY_LIMIT_BYTES + extra}B'")
            try:
                parameters = {"bits": bits, "hashes": hashes, "through": through}
                rows = connection.execute(sql, parameters).fetchall()
            finally:
                # Back to the limit: DuckDB evicts cached blocks down to it.
                connection.execute(f"SET memory_limit = '{MEMORY_LIMIT_BYTES}B'")
                with self._lock:
                    if connection in self._connections:
                        self._connections.remove(connection)
                connection.close()
        except duckdb.Error as error:
            raise _unavailable(f"Cannot read the keys of {self.path!r}: {error}", error) from error

        ((bitmap,),) = rows
        if bitmap is None:
            # No event up to `through`: the aggregate of no rows is NULL.
            return bytes(bits // 8)
        return bytes(bitmap).translate(_REVERSED_BITS)

    def append(self, records: Sequence[EventRecord], audit: Sequence[AuditRecord] = ()) -> None:
        if not records and not audit:
            return
        connection = self._connection()
        try:
            separate = audit
            table = None
            if records:
                table, separate = _fold_publish_audit(events_table(records), records, audit)
            if table is not None and not separate:
                # One statement is a transaction of its own: BEGIN and COMMIT
                # would cost two more, about 0.3 ms of each group.
                _insert_events(connection, table)
                return
            connection.begin()
            if table is not None:
                _insert_events(connection, table)
            self._insert_audit(connection, separate)
            connection.commit()
        # pyarrow raises OverflowError, not an ArrowException, for an
        # integer that does not fit its column.
        except (duckdb.Error, pa.ArrowException, OverflowError) as error:
            _rollback(connection)
            raise _unavailable(
                f"Cannot commit {len(records)} events to {self.path!r}: {error}",
                error,
            ) from error
        except BaseException:
            # Whatever failed, the transaction must not stay open: the next
            # append on this connection would fail to begin one.
            _rollback(connection)
            raise

    def append_table(self, table: pa.Table) -> None:
        """Append events from an Arrow table shaped as `events_table` builds it, in one transaction.

        For bulk loads that build their tables elsewhere, such as in other
        processes; the caller assigns dense sequences after the current head.
        """
        connection = self._connection()
        try:
            connection.begin()
            _insert_events(connection, table)
            connection.commit()
        except duckdb.Error as error:
            _rollback(connection)
            raise _unavailable(
                f"Cannot commit {table.num_rows} events to {self.path!r}: {error}",
                error,
            ) from error

    def read_audit(self, query: AuditQuery) -> list[StoredAudit]:
        clauses = ["id > ?"]
        parameters: list[Any] = [query.after_id]
        for column, value, operator in (
            ("principal", query.principal, "="),
            ("action", query.action, "="),
            ("time", query.since, ">="),
            ("time", query.until, "<"),
        ):
            if value is not None:
                clauses.append(f"{column} {operator} ?")
                parameters.append(value)
        parameters.append(query.limit)
        # The ids first, from the typed columns: the other columns of a
        # publish's record are parsed from JSON, so only for the page.
        ids = [
            row[0]
            for row in self._query(
                f"SELECT id FROM audit_keys WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
                parameters,
            )
        ]
        if not ids:
            return []
        rows = self._query(
            f"SELECT id, {_AUDIT_COLUMNS} FROM audit_trail "
            "WHERE id BETWEEN ? AND ? AND id IN ? ORDER BY id",
            [ids[0], ids[-1], ids],
        )
        return [_stored_audit(row) for row in rows]

    def load_tokens(self) -> list[TokenRecord]:
        rows = self._query("SELECT name, token_hash, grants, created FROM tokens ORDER BY name")
        return [TokenRecord(row[0], bytes(row[1]), tuple(row[2]), row[3]) for row in rows]

    def save_token(self, token: TokenRecord, audit: AuditRecord) -> None:
        connection = self._connection()
        try:
            connection.begin()
            connection.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?)",
                [token.name, token.token_hash, list(token.grants), token.created],
            )
            self._insert_audit(connection, [audit])
            connection.commit()
        except duckdb.ConstraintException as error:
            _rollback(connection)
            raise TokenExists(token.name) from error
        except duckdb.Error as error:
            _rollback(connection)
            raise _unavailable(f"Cannot store the token {token.name!r}: {error}", error) from error

    def delete_token(self, name: str, audit: AuditRecord) -> bool:
        connection = self._connection()
        try:
            connection.begin()
            deleted = connection.execute(
                "DELETE FROM tokens WHERE name = ? RETURNING name", [name]
            ).fetchall()
            if deleted:
                self._insert_audit(connection, [audit])
            connection.commit()
        except duckdb.Error as error:
            _rollback(connection)
            raise _unavailable(f"Cannot revoke the token {name!r}: {error}", error) from error
        return bool(deleted)

    @staticmethod
    def _insert_audit(
        connection: duckdb.DuckDBPyConnection, audit: Sequence[AuditRecord]
    ) -> None:
        appended_audit = _audit_to_arrow(audit)  # noqa: F841 - read by the statement
        connection.execute(f"INSERT INTO audit ({_AUDIT_COLUMNS}) SELECT * FROM appended_audit")

    def scan(self, after: int, last: int, filter: Matcher, limit: int) -> ScanResult:
        if last <= after or limit <= 0:
            return ScanResult([], after)
        if not filter:
            end = min(last, after + limit)
            rows = self._query(
                "SELECT sequence, event FROM events WHERE sequence BETWEEN ? AND ? "
                "ORDER BY sequence",
                [after + 1, end],
            )
            return ScanResult(_stored(rows), end)
        return self._scan_filtered(after, last, filter, limit)

    def _scan_filtered(self, after: int, last: int, filter: Matcher, limit: int) -> ScanResult:
        condition, parameters = filter.to_sql()
        sql = (
            "SELECT sequence, event FROM events WHERE sequence BETWEEN ? AND ? "
            f"AND {condition} ORDER BY sequence LIMIT ?"
        )
        found: list[StoredEvent] = []
        position = after
        window = _FIRST_WINDOW
        while position < last and position - after < _MAX_SCAN:
            end = min(last, position + window)
            wanted = limit - len(found)
            rows = self._query(sql, [position + 1, end, *parameters, wanted])
            found.extend(_stored(rows))
            if len(rows) == wanted:
                return ScanResult(found, found[-1].sequence)
            position = end
            window = min(window * 4, _MAX_WINDOW)
        return ScanResult(found, position)

    def first_recorded_at(self, since: datetime, head: int) -> int | None:
        row = self._query_one(
            "SELECT min(sequence) FROM events WHERE recordedtime >= ? AND sequence <= ?",
            [since, head],
        )
        return None if row is None else row[0]

    def read_events_arrow(self, after: int, last: int) -> pa.RecordBatchReader:
        return self._arrow_reader(
            f"SELECT {_ARCHIVE_SELECT} FROM events WHERE sequence > ? AND sequence <= ? "
            "ORDER BY sequence",
            [after, last],
            ARCHIVE_SCHEMA,
        )

    def read_audit_arrow(self) -> pa.RecordBatchReader:
        return self._arrow_reader(
            f"SELECT id, {_AUDIT_COLUMNS} FROM audit_trail ORDER BY id",
            [],
            _AUDIT_EXPORT_SCHEMA,
        )

    def _arrow_reader(
        self, sql: str, parameters: list[Any], schema: pa.Schema
    ) -> pa.RecordBatchReader:
        # A connection of its own, because the reader may be consumed on
        # another thread while this one goes on to other queries.
        try:
            with self._lock:
                connection = self._database.cursor()
            relation = connection.sql(sql, params=parameters)
            reader: pa.RecordBatchReader = relation.to_arrow_reader(_ARROW_BATCH_ROWS)
        except duckdb.Error as error:
            raise _unavailable(f"Cannot read from {self.path!r}: {error}", error) from error

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for batch in reader:
                    yield batch.cast(schema)
            except duckdb.Error as error:
                raise _unavailable(f"Cannot read from {self.path!r}: {error}", error) from error
            finally:
                connection.close()

        return pa.RecordBatchReader.from_batches(schema, batches())

    def delete_through(self, sequence: int) -> datetime | None:
        connection = self._connection()
        try:
            connection.begin()
            newest, recordedtime = connection.execute(
                "SELECT max(sequence), max(recordedtime) FROM events WHERE sequence <= ?",
                [sequence],
            ).fetchall()[0]
            if newest is None:
                connection.rollback()
                return None
            connection.execute(
                f"INSERT INTO audit (id, {_AUDIT_COLUMNS}) SELECT id, {_AUDIT_COLUMNS} "
                "FROM audit_trail WHERE id IN "
                "(SELECT audit_id FROM events WHERE audit_id IS NOT NULL AND sequence <= ?)",
                [newest],
            )
            connection.execute("DELETE FROM events WHERE sequence <= ?", [newest])
            connection.execute("DELETE FROM retention")
            connection.execute("INSERT INTO retention VALUES (?, ?)", [newest, recordedtime])
            connection.commit()
        except duckdb.Error as error:
            _rollback(connection)
            raise _unavailable(
                f"Cannot delete the events up to {sequence} from {self.path!r}: {error}",
                error,
            ) from error
        result: datetime = recordedtime
        return result

    def load_subscriptions(self) -> list[SubscriptionRecord]:
        rows = self._query(
            "SELECT name, owner, filters::VARCHAR, cursor, created, updated "
            "FROM subscriptions ORDER BY name"
        )
        return [SubscriptionRecord(*row) for row in rows]

    def save_subscription(self, record: SubscriptionRecord, audit: AuditRecord) -> None:
        self._write_with_audit(
            f"Cannot store the subscription {record.name!r}",
            "INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?, ?, ?, ?)",
            [
                record.name,
                record.owner,
                record.filters,
                record.cursor,
                record.created,
                record.updated,
            ],
            audit,
        )

    def delete_subscription(self, name: str, audit: AuditRecord) -> bool:
        rows = self._write_with_audit(
            f"Cannot delete the subscription {name!r}",
            "DELETE FROM subscriptions WHERE name = ? RETURNING name",
            [name],
            audit,
        )
        return bool(rows)

    def set_cursor(
        self, name: str, cursor: int, audit: AuditRecord | None, advance_only: bool
    ) -> int | None:
        value = "greatest(cursor, ?)" if advance_only else "?"
        rows = self._write_with_audit(
            f"Cannot store the cursor of the subscription {name!r}",
            f"UPDATE subscriptions SET cursor = {value}, updated = now() WHERE name = ? "
            "RETURNING cursor",
            [cursor, name],
            audit,
        )
        return int(rows[0][0]) if rows else None

    def _write_with_audit(
        self, failure: str, sql: str, parameters: list[Any], audit: AuditRecord | None
    ) -> list[tuple[Any, ...]]:
        """Run one write statement and, when it changed a row, add `audit`, in one transaction."""
        connection = self._connection()
        try:
            connection.begin()
            rows = connection.execute(sql, parameters).fetchall()
            if rows and audit is not None:
                self._insert_audit(connection, [audit])
            connection.commit()
        except duckdb.Error as error:
            _rollback(connection)
            raise _unavailable(f"{failure} in {self.path!r}: {error}", error) from error
        return rows

    def checkpoint(self) -> None:
        shortage = self._space_shortage()
        if shortage is not None:
            raise LogUnavailable(f"Cannot checkpoint {self.path!r}: {shortage}.")
        try:
            connection = self._connection()
            connection.execute("CHECKPOINT")
            if self._checkpoints_deferred:
                connection.execute("RESET GLOBAL checkpoint_threshold")
                self._checkpoints_deferred = False
                logger.info("Checkpointed %s; automatic checkpoints are back on", self.path)
        except duckdb.Error as error:
            raise _unavailable(f"Cannot checkpoint {self.path!r}: {error}", error) from error

    def reopen(self) -> None:
        # Closing the root connection closes every cursor made from it, and
        # only then does DuckDB drop the invalidated database instance: while
        # one is open, `connect` returns that instance again. The close fails
        # while another thread runs a query, so it is retried until the
        # queries already running end; new ones fail at once meanwhile.
        self._reopening = True
        try:
            with self._lock:
                self._close_root()
                self._database = self._open(self._read_only)
                self._connections = []
                self._generation += 1
                self._defer_checkpoints()
        finally:
            self._reopening = False
        logger.info("Reopened the event database %s", self.path)

    def _defer_checkpoints(self) -> None:
        # The fatal errors seen are failed checkpoints on a full disk. An
        # automatic one after the next commit would most likely fail the same
        # way, and each costs a reopen that replays the whole write-ahead log.
        # So checkpoints wait for `checkpoint` until one succeeds.
        try:
            self._database.execute(f"SET GLOBAL checkpoint_threshold = '{_DEFERRED_THRESHOLD}'")
        except duckdb.Error as error:
            raise _unavailable(f"Cannot configure {self.path!r}: {error}", error) from error
        self._checkpoints_deferred = True

    def _space_shortage(self) -> str | None:
        """Describe why the disk lacks room for a checkpoint now; None when it has room.

        A checkpoint that fails for want of space still grows the database
        file, which takes space that appends to the write-ahead log need.
        It needs room for the logged rows as new blocks and for metadata;
        twice the log's size is an estimate with margin.
        """
        wal = _file_size(f"{self.path}.wal")
        needed = 2 * wal + _CHECKPOINT_HEADROOM_BYTES
        free = shutil.disk_usage(Path(self.path).resolve().parent).free
        if free >= needed:
            return None
        return (
            f"{free} bytes are free on its disk, and folding its write-ahead log of {wal} "
            f"bytes in may need {needed}; free space on the disk"
        )

    def _close_root(self) -> None:
        _close_when_idle(self._database, f"Cannot reopen {self.path!r}")

    def close(self) -> None:
        # NOTE: DuckDB 2.0 checkpoints as the database closes, and no setting
        # turns that off; on a nearly full disk it fails and grows the file.
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            # A query still running on another thread, such as the fill of
            # the key filter, ends with an error instead of holding the close.
            connection.interrupt()
            _close_when_idle(connection, f"Cannot close {self.path!r}")
        _close_when_idle(self._database, f"Cannot close {self.path!r}")

    def _query(self, sql: str, parameters: list[Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, parameters).fetchall()
        except duckdb.Error as error:
            raise _unavailable(f"Cannot read from {self.path!r}: {error}", error) from error

    def _query_one(self, sql: str, parameters: list[Any] | None = None) -> tuple[Any, ...] | None:
        rows = self._query(sql, parameters)
        return rows[0] if rows else None


def _close_when_idle(connection: duckdb.DuckDBPyConnection, failure: str) -> None:
    """Close `connection`, retrying while another thread's query on it ends."""
    deadline = time.monotonic() + _REOPEN_WAIT_SECONDS
    while True:
        try:
            connection.close()
            return
        except duckdb.Error as error:
            if time.monotonic() > deadline:
                raise LogUnavailable(
                    f"{failure}: its connections stayed busy for {_REOPEN_WAIT_SECONDS} s "
                    f"({error})."
                ) from error
        time.sleep(0.001)


def _drop_key_index(database: duckdb.DuckDBPyConnection) -> None:
    """Drop the ART index `events_key` that earlier versions created, when it exists.

    DuckDB keeps an ART index's nodes in memory once inserts or lookups load
    them: 349 MB for 10M keys. The writer's Bloom filter of keys leaves
    `find` few lookups, and those scan the `key` column instead. The DROP
    runs only when the index exists, so that an open writes nothing to the
    catalog, which fails on a full disk.
    """
    # fetchall, not fetchone: a result read only in part keeps its
    # transaction open, and CHECKPOINT then fails after any later DELETE or
    # UPDATE with "there are other write transactions active".
    ((count,),) = database.execute(
        "SELECT count(*) FROM duckdb_indexes() WHERE table_name = 'events' "
        "AND index_name = 'events_key'"
    ).fetchall()
    if count:
        database.execute("DROP INDEX events_key")
        logger.info("Dropped the index events_key; duplicate checks scan the key column")


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _unavailable(message: str, error: Exception) -> LogUnavailable:
    """Translate a driver error; a fatal one invalidates the database until it is reopened."""
    if isinstance(error, duckdb.FatalException):
        return StorageInvalidated(message)
    return LogUnavailable(message)


def _stored(rows: list[tuple[Any, ...]]) -> list[StoredEvent]:
    return [StoredEvent(row[0], row[1].encode()) for row in rows]


def _insert_events(connection: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    # DuckDB finds the local Arrow table by its name through a replacement
    # scan. That costs half of what register and unregister do, about 0.5 ms
    # of each group's commit.
    appended_events = table  # noqa: F841 - read by the statement
    if table.num_columns == len(_ARROW_SCHEMA):
        connection.execute(f"INSERT INTO events ({_COLUMNS}) SELECT * FROM appended_events")
        return
    connection.execute(
        f"INSERT INTO events ({_COLUMNS}, {_FOLDED_AUDIT_COLUMNS}, audit_id) "
        "SELECT *, CASE WHEN audit_principal IS NOT NULL THEN nextval('audit_ids') END "
        "FROM appended_events"
    )


def _fold_publish_audit(
    table: pa.Table, records: Sequence[EventRecord], audit: Sequence[AuditRecord]
) -> tuple[pa.Table, list[AuditRecord]]:
    """Add the publish records of `audit` to the rows of their newest events in `table`.

    Return the table and the records that need their own rows: those that
    are not publishes, or that appended no event of `records`.
    """
    separate: list[AuditRecord] = []
    folded: dict[int, AuditRecord] = {}
    first = records[0].sequence
    for record in audit:
        index = -1 if record.last_sequence is None else record.last_sequence - first
        if (
            record.action == "publish"
            and 0 <= index < len(records)
            and records[index].sequence == record.last_sequence
        ):
            folded[index] = record
        else:
            separate.append(record)
    if not folded:
        return table, separate
    times: list[datetime | None] = [None] * len(records)
    principals: list[str | None] = [None] * len(records)
    texts: list[str | None] = [None] * len(records)
    for index, record in folded.items():
        times[index] = record.time
        principals[index] = record.principal
        texts[index] = _json_text(
            {
                "outcome": record.outcome,
                "status": record.status,
                "client": record.client,
                "count": record.count,
                "first_sequence": record.first_sequence,
                "detail": record.detail,
            }
        )
    columns = (
        pa.array(times, pa.timestamp("us", tz="UTC")),
        pa.array(principals, pa.string()),
        pa.array(texts, pa.string()),
    )
    for name, column in zip(_FOLDED_AUDIT_COLUMNS.split(", "), columns):
        table = table.append_column(name, column)
    return table, separate


def _rollback(connection: duckdb.DuckDBPyConnection) -> None:
    try:
        connection.rollback()
    except duckdb.Error as error:
        # No transaction is open when BEGIN itself failed.
        logger.debug("Rollback after a failed append: %s", error)


def events_table(records: Sequence[EventRecord]) -> pa.Table:
    """Return the records as an Arrow table in the column order of the events table."""

    def column(name: str) -> pa.Array:
        return pa.array([record.fields.get(name) for record in records], pa.string())

    return pa.Table.from_arrays(
        [
            pa.array([record.sequence for record in records], pa.int64()),
            _recorded_times(records),
            column("id"),
            column("source"),
            column("specversion"),
            column("type"),
            column("subject"),
            column("time"),
            column("datacontenttype"),
            column("dataschema"),
            _extensions(records),
            pa.array([record.key for record in records], pa.int64()),
            pa.array([record.digest for record in records], pa.binary()),
            pa.array([record.event for record in records], pa.string()),
        ],
        schema=_ARROW_SCHEMA,
    )


def _recorded_times(records: Sequence[EventRecord]) -> pa.Array:
    time_type = _ARROW_SCHEMA.field("recordedtime").type
    # The writer stamps a whole group with one time object: convert it once.
    if records and all(record.recordedtime is records[0].recordedtime for record in records):
        return pa.repeat(pa.scalar(records[0].recordedtime, time_type), len(records))
    return pa.array([record.recordedtime for record in records], time_type)


def _extensions(records: Sequence[EventRecord]) -> pa.Array:
    # Flat key and value columns with offsets convert about twice as fast as
    # a list of (key, value) lists per record (benchmarks/, 2-core machine).
    offsets = [0]
    names: list[str] = []
    values: list[str] = []
    for record in records:
        names.extend(record.extensions)
        values.extend(record.extensions.values())
        offsets.append(len(names))
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(names, pa.string()), pa.array(values, pa.string())
    )


def _audit_to_arrow(audit: Sequence[AuditRecord]) -> pa.Table:
    columns = [
        [record.time for record in audit],
        [record.principal for record in audit],
        [record.action for record in audit],
        [record.outcome for record in audit],
        [record.status for record in audit],
        [record.client for record in audit],
        [record.count for record in audit],
        [record.first_sequence for record in audit],
        [record.last_sequence for record in audit],
        [_json_text(record.detail) for record in audit],
    ]
    return pa.Table.from_arrays(
        [pa.array(values, type=field.type) for values, field in zip(columns, _AUDIT_SCHEMA)],
        schema=_AUDIT_SCHEMA,
    )


def _json_text(value: dict[str, object] | None) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        # orjson rejects integers beyond 64 bits, such as a cursor that a
        # client sent, and a detail must not fail the commit of its group.
        return json.dumps(value, default=str)


def _stored_audit(row: tuple[Any, ...]) -> StoredAudit:
    detail = None if row[10] is None else orjson.loads(row[10])
    record = AuditRecord(
        time=row[1],
        principal=row[2],
        action=row[3],
        outcome=row[4],
        status=row[5],
        client=row[6],
        count=row[7],
        first_sequence=row[8],
        last_sequence=row[9],
        detail=detail,
    )
    return StoredAudit(row[0], record)
