"""History for analysts: read-only SQL over archived and live events, and range reads.

A query runs in a DuckDB database of its own, in memory, which sees two
views and nothing else:

- `events`: one row per event, archived or live, with `sequence`,
  `recordedtime`, every core attribute, `extensions` (a MAP of canonical
  strings), `data` (JSON), `data_base64` and `event` (the event as
  delivered, JSON);
- `audit`: the audit trail.

The views read Arrow data that this process hands to DuckDB: the archive's
Parquet files through pyarrow datasets, the live events and the audit trail
through short reads of the log's database. The query database then disables
external access and locks its configuration, so the SQL itself can open no
file, reach no network, and load no extension. It also runs under a time
limit and returns at most a capped number of rows.

The archive is not a view over `read_parquet`: with DuckDB 2.0.1 such a view
fails once external access is off, and `allowed_directories`, which would
let it work, would let the user's SQL read that folder too.

>>> result = run_query(storage, archive, "SELECT count(*) AS n FROM events", head=42)
>>> result.table.to_pylist()
[{'n': 42}]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from eventlog.archive import ARCHIVE_SCHEMA, Archive
from eventlog.errors import LogUnavailable, QueryRejected, QueryTimedOut
from eventlog.storage import Storage

if TYPE_CHECKING:
    # Imported by `Archive.dataset` when a query needs it; see eventlog.archive.
    import pyarrow.dataset as ds

logger = logging.getLogger(__name__)

DEFAULT_QUERY_SECONDS = 30.0
MAX_QUERY_ROWS = 10_000
# Per query: DuckDB threads and memory. Queries share the machine with the
# writer and the readers, so they get a bounded part of it.
QUERY_THREADS = 2
QUERY_MEMORY_LIMIT = "1GB"

_EVENTS_VIEW = """
CREATE VIEW events AS
SELECT sequence, recordedtime, specversion, id, source, type, subject, time,
    datacontenttype, dataschema, extensions,
    json_extract(event, '$.data') AS data,
    json_extract_string(event, '$.data_base64') AS data_base64,
    event::JSON AS event
FROM (SELECT * FROM archived_events UNION ALL SELECT * FROM live_events)
"""
_AUDIT_VIEW = """
CREATE VIEW audit AS
SELECT id, time, principal, action, outcome, status, client, count,
    first_sequence, last_sequence, detail::JSON AS detail
FROM audit_records
"""
_READ_ONLY_STATEMENTS = (duckdb.StatementType.SELECT,)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The first rows of a query's result.

    `types` are DuckDB's names of the column types. `truncated` is True when
    the query returned more than `max_rows` rows and only the first
    `max_rows` are in `table`.
    """

    table: pa.Table
    types: tuple[str, ...]
    truncated: bool
    max_rows: int


def check_statement(sql: str) -> None:
    """Raise `QueryRejected` unless `sql` is exactly one SELECT statement, by DuckDB's parser.

    DESCRIBE, SHOW, SUMMARIZE, FROM-first queries and VALUES parse as
    SELECT statements and pass.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryRejected(f"The SQL cannot be parsed: {error}") from error
    if len(statements) != 1:
        raise QueryRejected(
            f"Send exactly one SQL statement, not {len(statements)}; run several queries "
            "one at a time."
        )
    kind = statements[0].type
    if kind not in _READ_ONLY_STATEMENTS:
        raise QueryRejected(
            f"Only read-only SELECT queries may run here; this statement is of type "
            f"{kind.name}. The views 'events' and 'audit' can be read, not changed."
        )


def run_query(
    storage: Storage,
    archive: Archive | None,
    sql: str,
    *,
    head: int,
    archived_through: int | None = None,
    seconds: float = DEFAULT_QUERY_SECONDS,
    max_rows: int = MAX_QUERY_ROWS,
) -> QueryResult:
    """Run one read-only query over the archive and the live events up to `head`.

    Events up to `archived_through` (default: the archive's highest
    sequence) come from the archive, later ones from the log. Without an
    archive, only the log's events are there. Raises
    `QueryRejected` for SQL that is not a single SELECT or that DuckDB
    cannot run, `QueryTimedOut` after `seconds`, and `LogUnavailable` when
    the log or the archive cannot be read.
    """
    check_statement(sql)
    if archived_through is None:
        archived_through = 0 if archive is None else archive.archived_through()
    started = time.monotonic()
    connection = _sandbox(storage, archive, archived_through, head)
    timer = threading.Timer(seconds, connection.interrupt)
    timer.start()
    try:
        return _fetch(connection, sql, max_rows)
    except duckdb.InterruptException as error:
        logger.info("Stopped a query after %.1f s: %s", time.monotonic() - started, sql)
        raise QueryTimedOut(seconds) from error
    except duckdb.Error as error:
        raise QueryRejected(f"The query failed: {error}") from error
    finally:
        timer.cancel()
        connection.close()


def read_range(
    storage: Storage, archive: Archive | None, after: int, last: int, archived_through: int
) -> pa.Table:
    """Return the events with `after < sequence <= last`, archived or live, in sequence order.

    The table has the columns of `ARCHIVE_SCHEMA`. Keep the range short:
    the live part is one read transaction.
    """
    parts: list[pa.Table] = []
    if archive is not None and after < archived_through:
        parts.append(archive.read(after, min(last, archived_through)))
    if last > archived_through:
        live = storage.read_events_arrow(max(after, archived_through), last)
        parts.append(live.read_all())
    if not parts:
        return ARCHIVE_SCHEMA.empty_table()
    return pa.concat_tables(parts)


def first_recorded_at(
    storage: Storage, archive: Archive | None, moment: datetime, head: int
) -> int | None:
    """Return the first sequence, archived or live, recorded at or after `moment`; None if none."""
    archived = None if archive is None else archive.first_recorded_at(moment)
    if archived is not None:
        return archived
    return storage.first_recorded_at(moment, head)


class HorizonGate:
    """Keeps retention from deleting events while a history read may still need them.

    Many reads may hold the gate together, and a delete holds it alone. A
    waiting delete goes first: new reads wait for it, so a steady flow of
    queries cannot hold retention back for longer than one query runs.
    """

    def __init__(self) -> None:
        self._reads = 0
        self._deleting = False
        self._waiting_deletes = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(
                lambda: not self._deleting and self._waiting_deletes == 0
            )
            self._reads += 1
        try:
            yield
        finally:
            async with self._changed:
                self._reads -= 1
                self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def deleting(self) -> AsyncIterator[None]:
        async with self._changed:
            self._waiting_deletes += 1
            try:
                await self._changed.wait_for(lambda: not self._deleting and self._reads == 0)
            finally:
                self._waiting_deletes -= 1
            self._deleting = True
        try:
            yield
        finally:
            async with self._changed:
                self._deleting = False
                self._changed.notify_all()


class _ArrowSource:
    """An Arrow stream that DuckDB may scan several times; each scan opens a fresh reader.

    DuckDB asks for a stream once to learn the schema and once per scan,
    possibly from its own threads, through the Arrow PyCapsule interface.
    """

    def __init__(self, open_reader: Callable[[], pa.RecordBatchReader]) -> None:
        self._open_reader = open_reader

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        return self._open_reader().__arrow_c_stream__(requested_schema)


def _sandbox(
    storage: Storage, archive: Archive | None, archived_through: int, head: int
) -> duckdb.DuckDBPyConnection:
    """Open the in-memory query database with its views, then lock it down."""
    archived: ds.Dataset | pa.Table = ARCHIVE_SCHEMA.empty_table()
    if archive is not None:
        files = [file for file in archive.files() if file.first <= archived_through]
        archived = archive.dataset(files)
    # NOTE: DuckDB pushes no filter or projection into this stream, so every scan
    # reads all live events; only retention bounds what a query costs.
    live = _ArrowSource(lambda: storage.read_events_arrow(archived_through, head))
    audit = _ArrowSource(storage.read_audit_arrow)

    connection = duckdb.connect(
        ":memory:",
        config={
            "threads": QUERY_THREADS,
            "memory_limit": QUERY_MEMORY_LIMIT,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        },
    )
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("archived_events", archived)
        connection.register("live_events", live)
        connection.register("audit_records", audit)
        connection.execute(_EVENTS_VIEW)
        connection.execute(_AUDIT_VIEW)
        # From here on no statement can read or write a file, attach a
        # database, load an extension, or change a setting.
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")
    except duckdb.Error as error:
        connection.close()
        raise LogUnavailable(f"Cannot prepare the query database: {error}") from error
    return connection


def _fetch(connection: duckdb.DuckDBPyConnection, sql: str, max_rows: int) -> QueryResult:
    relation = connection.sql(sql)
    if relation is None:
        # check_statement lets only SELECT through, and a SELECT has a result.
        raise QueryRejected("The statement returned no result; send a SELECT query.")
    types = tuple(str(column_type) for column_type in relation.types)
    reader = relation.to_arrow_reader(max_rows + 1)
    batches: list[pa.RecordBatch] = []
    rows = 0
    for batch in reader:
        batches.append(batch)
        rows += batch.num_rows
        if rows > max_rows:
            break
    reader.close()
    table = pa.Table.from_batches(batches, schema=reader.schema)
    truncated = table.num_rows > max_rows
    return QueryResult(table.slice(0, max_rows), types, truncated, max_rows)

