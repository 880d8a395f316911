"""`EventLog`: the durable, totally ordered log of CloudEvents, as an asyncio library.

>>> log = await EventLog.open("events.duckdb")
>>> [appended] = await log.append([parse_event({...})])
>>> page = await log.read(after=0, filter=Filter.parse({"type": ["order.*"]}))
>>> await log.close()

Appends go through the single writer and return only after the commit.
Reads near the head come from the in-memory tail; older history comes from
storage in short reads on a small thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from eventlog.duckdb_storage import DuckDBStorage
from eventlog.errors import CursorExpired, EventLogError, LogUnavailable
from eventlog.event import DEFAULT_MAX_EVENT_BYTES, Event, attribute_strings
from eventlog.filters import Filter, Matcher
from eventlog.storage import (
    AuditQuery,
    AuditRecord,
    EventRecord,
    ScanResult,
    Storage,
    StoredAudit,
    StoredEvent,
)
from eventlog.tail import Tail, TailEntry
from eventlog.writer import DEFAULT_MAX_GROUP_EVENTS, Appended, AppendRequest, Writer

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TAIL_CAPACITY = 50_000
MAX_PAGE_LIMIT = 1000
READER_THREADS = 4


@dataclass(frozen=True, slots=True)
class Page:
    """Events of one read, and the cursor to continue from.

    `next_after` is the last delivered sequence, or further when the read
    examined events past it that did not match; it never goes backwards.
    """

    events: list[StoredEvent]
    next_after: int
    head: int


# Upper bounds of the buckets of the commit-size histogram, in events.
GROUP_SIZE_BUCKETS = (1, 10, 100, 1000, 10_000)


@dataclass(slots=True)
class LogStats:
    """Counters since the log was opened, for metrics."""

    appended_events: int = 0
    duplicate_events: int = 0
    rejected_requests: int = 0
    failed_commits: int = 0
    commits: int = 0
    commit_seconds: float = 0.0
    # Commits with at most GROUP_SIZE_BUCKETS[i] events, cumulative as in Prometheus.
    group_size_counts: list[int] = field(default_factory=lambda: [0] * len(GROUP_SIZE_BUCKETS))
    group_size_sum: int = 0


class EventLog:
    """A log on one storage backend, owned by one asyncio event loop."""

    def __init__(
        self,
        storage: Storage,
        loop: asyncio.AbstractEventLoop,
        *,
        tail_capacity: int = DEFAULT_TAIL_CAPACITY,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_group_events: int = DEFAULT_MAX_GROUP_EVENTS,
    ) -> None:
        self.storage = storage
        self.max_event_bytes = max_event_bytes
        self.stats = LogStats()
        self._loop = loop
        self._tail = Tail(tail_capacity)
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="eventlog-reader")
        bounds = storage.bounds()
        self._head = bounds.head
        self._earliest = bounds.earliest
        self._head_changed = asyncio.Event()
        self._healthy = True
        self._closed = False
        self._load_tail()
        self._writer = Writer(
            storage,
            bounds.head,
            bounds.last_recordedtime,
            self._on_commit,
            max_group_events=max_group_events,
        )
        self._writer.start()
        logger.info(
            "Opened the event log with head %d and earliest sequence %d", self._head, self._earliest
        )

    @classmethod
    async def open(cls, path: Path | str, **options: Any) -> EventLog:
        """Open (or create) the log in a DuckDB file, in the running event loop."""
        loop = asyncio.get_running_loop()
        storage = await asyncio.to_thread(DuckDBStorage, path)
        return await asyncio.to_thread(cls, storage, loop, **options)

    @property
    def head(self) -> int:
        """The highest committed and readable sequence; 0 for an empty log."""
        return self._head

    @property
    def earliest(self) -> int:
        """The lowest sequence still retained."""
        return self._earliest

    @property
    def closed(self) -> bool:
        """True once `close` has begun; `wait_for_head` then returns False without waiting."""
        return self._closed

    @property
    def healthy(self) -> bool:
        """False after a commit failed, until the next commit succeeds."""
        return self._healthy and not self._closed

    async def append(
        self, events: Sequence[Event], audit: AuditRecord | None = None
    ) -> list[Appended]:
        """Append events all or nothing, and return each one's sequence once durable.

        `audit`, when given, is committed in the same transaction, completed
        with the count and sequence range. Raises `DuplicateConflict` when an
        event reuses a stored (source, id) with different content,
        `InvalidEvent` when two events of `events` share a (source, id) but
        differ, and `LogUnavailable` when the commit fails; in each case
        nothing of `events` is appended.
        """
        if not events:
            return []
        if self._closed:
            raise LogUnavailable("The log is closed and accepts no more events.")
        reply: asyncio.Future[list[Appended]] = self._loop.create_future()
        # Mark the outcome retrieved, so a caller that stops waiting leaves no warning.
        reply.add_done_callback(lambda future: future.cancelled() or future.exception())
        self._writer.submit(AppendRequest(events=events, reply=reply, audit=audit))
        # The commit goes ahead even if the caller stops waiting.
        return await asyncio.shield(reply)

    def record(self, audit: AuditRecord) -> None:
        """Add a record to the audit trail; it is committed shortly, with the next group."""
        if not self._closed:
            self._writer.record(audit)

    async def read_audit(self, query: AuditQuery) -> list[StoredAudit]:
        """Return audit records matching `query`, oldest first."""
        result: list[StoredAudit] = await self._in_reader(self.storage.read_audit, query)
        return result

    async def run_in_reader(self, function: Callable[..., T], *arguments: Any) -> T:
        """Run a blocking storage call on the reader threads, for callers outside the log."""
        result: T = await self._in_reader(function, *arguments)
        return result

    async def read(
        self,
        after: int = 0,
        filter: Matcher = Filter(),
        limit: int = 100,
        wait: float = 0.0,
        since: datetime | None = None,
    ) -> Page:
        """Return the next events after the cursor that match the filter.

        With `since`, the read starts at the first event recorded at or after
        that time instead. With `wait`, a read that finds nothing waits up to
        that many seconds for a matching event to be committed. Raises
        `CursorExpired` for a cursor before the retention horizon.
        """
        if since is not None:
            after = await self._cursor_at(since)
        self._check_cursor(after)
        limit = max(1, min(limit, MAX_PAGE_LIMIT))
        deadline = time.monotonic() + wait
        while True:
            head = self._head
            result = await self._scan(after, head, filter, limit)
            after = max(after, result.scanned_to)
            remaining = deadline - time.monotonic()
            if result.events or remaining <= 0:
                return Page(result.events, after, head)
            if after >= self._head:
                await self.wait_for_head(after, remaining)

    async def wait_for_head(self, beyond: int, timeout: float | None = None) -> bool:
        """Wait until the head passes `beyond`; return False if the time ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._head <= beyond:
            if self._closed:
                return False
            changed = self._head_changed
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def close(self) -> None:
        """Finish queued appends, checkpoint, and release the storage."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._writer.close)
        # Let the last commit callbacks run before waking the waiters.
        await asyncio.sleep(0)
        self._announce()
        self._readers.shutdown(wait=True)
        await asyncio.to_thread(self.storage.close)
        logger.info("Closed the event log at head %d", self._head)

    async def _cursor_at(self, since: datetime) -> int:
        tail = self._tail
        if tail.first <= tail.last and _recorded(tail.get(tail.first).event) <= since:
            low, high = tail.first, tail.last + 1
            while low < high:
                middle = (low + high) // 2
                if _recorded(tail.get(middle).event) < since:
                    low = middle + 1
                else:
                    high = middle
            return low - 1
        head = self._head
        sequence = await self._in_reader(self.storage.first_recorded_at, since, head)
        return head if sequence is None else sequence - 1

    def _check_cursor(self, after: int) -> None:
        if after < 0:
            raise ValueError(f"A cursor is a sequence of 0 or more, not {after}.")
        if after < self._earliest - 1:
            raise CursorExpired(after, self._earliest)

    async def _scan(self, after: int, last: int, filter: Matcher, limit: int) -> ScanResult:
        if after >= last:
            return ScanResult([], after)
        if self._tail.covers(after):
            return self._tail.scan(after, last, filter, limit)
        result: ScanResult = await self._in_reader(self.storage.scan, after, last, filter, limit)
        return result

    async def _in_reader(self, function: Any, *arguments: Any) -> Any:
        return await self._loop.run_in_executor(self._readers, function, *arguments)

    def _load_tail(self) -> None:
        start = max(self._earliest - 1, self._head - self._tail.capacity)
        self._tail.reset(start)
        position = start
        while position < self._head:
            result = self.storage.scan(position, self._head, Filter(), 10_000)
            for stored in result.events:
                attributes = attribute_strings(orjson.loads(stored.event))
                self._tail.append(TailEntry(stored.sequence, attributes, stored.event))
            position = result.scanned_to

    def _on_commit(
        self, records: list[EventRecord], group: list[AppendRequest], seconds: float
    ) -> None:
        # Runs in the writer thread: hand everything to the event loop, in order.
        self._loop.call_soon_threadsafe(self._deliver, records, group, seconds)

    def _deliver(
        self, records: list[EventRecord], group: list[AppendRequest], seconds: float
    ) -> None:
        stats = self.stats
        if records:
            stats.commit_seconds += seconds
            stats.group_size_sum += len(records)
            for index, bound in enumerate(GROUP_SIZE_BUCKETS):
                if len(records) <= bound:
                    stats.group_size_counts[index] += 1
            for record in records:
                attributes = attribute_strings(record.fields)
                self._tail.append(TailEntry(record.sequence, attributes, record.event))
            self._head = records[-1].sequence
            self._healthy = True
            stats.appended_events += len(records)
            stats.commits += 1
            self._announce()

        for request in group:
            reply: asyncio.Future[list[Appended]] = request.reply
            outcome = request.outcome
            if reply.done():
                continue
            if isinstance(outcome, list):
                stats.duplicate_events += sum(1 for a in outcome if a.duplicate)
                reply.set_result(outcome)
            elif isinstance(outcome, EventLogError):
                if isinstance(outcome, LogUnavailable):
                    self._healthy = False
                    stats.failed_commits += 1
                else:
                    stats.rejected_requests += 1
                reply.set_exception(outcome)
            else:
                reply.set_exception(LogUnavailable("The writer returned no outcome."))

    def _announce(self) -> None:
        changed, self._head_changed = self._head_changed, asyncio.Event()
        changed.set()


def _recorded(event: bytes) -> datetime:
    return datetime.fromisoformat(orjson.loads(event)["recordedtime"])
