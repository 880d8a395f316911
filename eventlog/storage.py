"""The storage interface that every backend implements, and its records.

The log calls a backend from two kinds of threads: the single writer thread
calls `find` and `append`, and reader threads call the read methods. A
backend gives each thread its own connection. Backends raise only the
exceptions in `eventlog.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from eventlog.filters import Filter


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One event as the writer appends it.

    `event` is the JSON the readers receive, `sequence` and `recordedtime`
    included. `key` is a 63-bit hash of (source, id) for the duplicate check,
    and `digest` a hash of the canonical event that tells identical from
    conflicting duplicates.
    """

    sequence: int
    recordedtime: datetime
    fields: dict[str, object]
    extensions: dict[str, str]
    key: int
    digest: bytes
    event: bytes


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What the duplicate check needs to know about a stored event."""

    source: str
    id: str
    sequence: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class LogBounds:
    """The range of sequences a backend holds; `head` is 0 for an empty log."""

    earliest: int
    head: int
    last_recordedtime: datetime | None


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


class Storage(Protocol):
    """A durable, append-only store of events ordered by sequence."""

    def bounds(self) -> LogBounds:
        """Return the earliest and highest stored sequences."""
        ...

    def find(self, keys: Sequence[int]) -> list[StoredKey]:
        """Return the stored events whose (source, id) hash is one of `keys`."""
        ...

    def append(self, records: Sequence[EventRecord]) -> None:
        """Append records in one transaction, durable on disk when this returns.

        Raises `LogUnavailable` when the transaction cannot commit; then none
        of the records is stored.
        """
        ...

    def scan(self, after: int, last: int, filter: Filter, limit: int) -> ScanResult:
        """Return up to `limit` events with `after < sequence <= last` that match `filter`."""
        ...

    def first_recorded_at(self, since: datetime, head: int) -> int | None:
        """Return the first sequence up to `head` recorded at or after `since`, if any."""
        ...

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the main file; called by the writer when idle."""
        ...

    def close(self) -> None:
        """Release every connection; further calls are errors."""
        ...
