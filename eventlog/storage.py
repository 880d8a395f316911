"""The storage interface that every backend implements, and its records.

The log calls a backend from two kinds of threads: the single writer thread
calls `find` and `append`, and reader threads call the read methods. A
backend gives each thread its own connection. Backends raise only the
exceptions in `eventlog.errors`: `LogUnavailable` when an operation fails,
and its subclass `StorageInvalidated` when the store needs `reopen` first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pyarrow as pa

from eventlog.filters import Matcher


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One event as the writer appends it.

    `event` is the JSON the readers receive, `sequence` and `recordedtime`
    included. `key` is a 63-bit hash of (source, id) for the duplicate check,
    and `digest` a hash of the canonical event that tells identical from
    conflicting duplicates. `attributes` holds the context attributes as
    canonical strings, for filters; empty means "derive them from `fields`".
    """

    sequence: int
    recordedtime: datetime
    fields: dict[str, object]
    extensions: dict[str, str]
    key: int
    digest: bytes
    event: bytes
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """The facts about a stored event that the duplicate check compares."""

    source: str
    id: str
    sequence: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class LogBounds:
    """The range of sequences a backend holds; `head` is 0 for an empty log.

    After retention removed every event, `earliest` is `head + 1`.
    `trimmed_recordedtime` is when the newest removed event was recorded,
    None while retention has removed nothing.
    """

    earliest: int
    head: int
    last_recordedtime: datetime | None
    trimmed_recordedtime: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as readers get it: its sequence and its JSON bytes."""

    sequence: int
    event: bytes


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Matching events from a bounded scan, and how far the scan reached.

    `scanned_to` is the highest sequence examined: the next scan starts after
    it, so a sparse filter never examines the same events twice.
    """

    events: list[StoredEvent]
    scanned_to: int


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry of the audit trail: who did what, when, from where, and with what outcome.

    `first_sequence` and `last_sequence` give the range of events appended or
    delivered; `detail` holds action-specific facts such as the filter. No
    record ever holds a token.
    """

    time: datetime
    principal: str
    action: str
    outcome: str
    status: int
    client: str | None = None
    count: int | None = None
    first_sequence: int | None = None
    last_sequence: int | None = None
    detail: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A selection of audit records, oldest first, where None matches any value."""

    principal: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_id: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class StoredAudit:
    """An audit record with the id the store gave it."""

    id: int
    record: AuditRecord


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A named token: the SHA-256 hash of its secret, never the secret itself."""

    name: str
    token_hash: bytes
    grants: tuple[str, ...]
    created: datetime


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """A subscription as stored: who owns it, its filter, and its cursor.

    `filters` is the JSON text of the subscription's filter expressions;
    `cursor` is the sequence its reader has consumed up to.
    """

    name: str
    owner: str
    filters: str
    cursor: int
    created: datetime
    updated: datetime


class Storage(Protocol):
    """A durable, append-only store of events ordered by sequence."""

    def bounds(self) -> LogBounds:
        """Return the earliest and highest stored sequences."""
        ...

    def find(self, keys: Sequence[int]) -> list[StoredKey]:
        """Return the stored events whose (source, id) hash is one of `keys`."""
        ...

    def key_filter(self, bits: int, hashes: int, through: int) -> bytes:
        """Return a Bloom filter of the keys of the events up to sequence `through`.

        The filter has `bits` bits, a multiple of 64, as little-endian 64-bit
        words: probe `i` of a key sets bit `(low + i * step) % bits`, where
        `low` is the key's lower 32 bits and `step` its upper bits with the
        lowest bit set, as `eventlog.keyfilter` does. May take seconds for a
        long log; the writer runs it on a thread of its own.
        """
        ...

    def append(self, records: Sequence[EventRecord], audit: Sequence[AuditRecord] = ()) -> None:
        """Append events and audit records in one transaction, durable when this returns.

        Raises `LogUnavailable` when the transaction cannot commit; then none
        of the records is stored.
        """
        ...

    def read_audit(self, query: AuditQuery) -> list[StoredAudit]:
        """Return the audit records that match `query`, oldest first."""
        ...

    def load_tokens(self) -> list[TokenRecord]:
        """Return every token record."""
        ...

    def save_token(self, token: TokenRecord, audit: AuditRecord) -> None:
        """Store a new token with its audit record; raises `TokenExists` for a taken name."""
        ...

    def delete_token(self, name: str, audit: AuditRecord) -> bool:
        """Delete a token with its audit record; return False when no token has the name."""
        ...

    def scan(self, after: int, last: int, filter: Matcher, limit: int) -> ScanResult:
        """Return up to `limit` events with `after < sequence <= last` that match `filter`."""
        ...

    def first_recorded_at(self, since: datetime, head: int) -> int | None:
        """Return the first sequence up to `head` recorded at or after `since`, if any."""
        ...

    def read_events_arrow(self, after: int, last: int) -> pa.RecordBatchReader:
        """Return the events with `after < sequence <= last` in sequence order, as Arrow batches.

        The batches have the columns of `eventlog.archive.ARCHIVE_SCHEMA`.
        Any thread may call this; the reader uses its own connection until
        it is exhausted or closed.
        """
        ...

    def read_audit_arrow(self) -> pa.RecordBatchReader:
        """Return every audit record, oldest first, as Arrow batches with `detail` as JSON text."""
        ...

    def delete_through(self, sequence: int) -> datetime | None:
        """Delete every event up to `sequence`, and store that retention removed them.

        Returns when the newest deleted event was recorded, None when no
        event was deleted. Only the writer thread calls this, so that no
        delete races an append. Raises `LogUnavailable` when the transaction
        cannot commit; then nothing is deleted.
        """
        ...

    def load_subscriptions(self) -> list[SubscriptionRecord]:
        """Return every subscription."""
        ...

    def save_subscription(self, record: SubscriptionRecord, audit: AuditRecord) -> None:
        """Create or replace a subscription, with its audit record, in one transaction."""
        ...

    def delete_subscription(self, name: str, audit: AuditRecord) -> bool:
        """Delete a subscription with its audit record; return False when none has the name."""
        ...

    def set_cursor(
        self, name: str, cursor: int, audit: AuditRecord | None, advance_only: bool
    ) -> int | None:
        """Store a subscription's cursor and return it; None when no subscription has the name.

        With `advance_only`, the stored cursor becomes max(stored, `cursor`),
        so an acknowledgement never moves it back.
        """
        ...

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the main file; called by the writer when idle.

        Raises `LogUnavailable` when the checkpoint fails, and its subclass
        `StorageInvalidated` when the store must be reopened before its next use.
        """
        ...

    def reopen(self) -> None:
        """Close every connection and open the store again, after `StorageInvalidated`.

        Only the writer thread calls this. Reads on other threads that run
        meanwhile fail with `LogUnavailable`. Raises `LogUnavailable` when
        the store cannot be opened.
        """
        ...

    def close(self) -> None:
        """Release every connection; further calls are errors."""
        ...
