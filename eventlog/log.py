"""`EventLog`: the durable, totally ordered log of CloudEvents, as an asyncio library.

>>> log = await EventLog.open("events.duckdb")
>>> [appended] = await log.append([parse_event({...})])
>>> page = await log.read(after=0, filter=Filter.parse({"type": ["order.*"]}))
>>> await log.close()

Appends go through the single writer and return only after the commit.
Reads near the head come from the in-memory tail; older history comes from
storage in short reads on a small thread pool. The log serves as soon as the
storage is open. The tail starts empty at the head and fills with the
retained events before it in the background, and until then reads of those
events go to storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pyarrow as pa

from eventlog.archive import Archive
from eventlog.duckdb_storage import DuckDBStorage
from eventlog.errors import CursorExpired, EventLogError, LogUnavailable
from eventlog.event import DEFAULT_MAX_EVENT_BYTES, Event, attribute_strings
from eventlog.filters import Filter, Matcher
from eventlog.history import (
    DEFAULT_QUERY_SECONDS,
    MAX_QUERY_ROWS,
    HorizonGate,
    QueryResult,
    check_statement,
    first_recorded_at,
    read_range,
    run_query,
)
from eventlog.retention import RetentionPolicy, run_retention
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

# The empty filter, which selects every event.
EVERY_EVENT = Filter()

DEFAULT_TAIL_CAPACITY = 50_000
# The tail's bound on the encoded events' bytes: 50,000 events of up to 671
# bytes, or about 24,000 of the 1.4 KB events of benchmarks/workload.py.
DEFAULT_TAIL_BYTES = 32 * 1024 * 1024
# Events that one step of the tail's background fill reads and decodes on a
# reader thread, about 0.3 s of work for events of 1.4 KB.
TAIL_FILL_EVENTS = 10_000
MAX_PAGE_LIMIT = 1000
READER_THREADS = 4
# Audit records wait this long on the event loop and then go to the writer
# together, so a stream of reads costs one commit per interval instead of a
# commit at every writer wake-up.
AUDIT_BATCH_SECONDS = 0.1
# Threads for history queries and range reads, apart from the page readers so
# that a long query never delays a feed.
HISTORY_THREADS = 2
# The folder of the Parquet archive, next to the database file.
ARCHIVE_FOLDER = "archive"
# Retention archives at most this many events per step (one file per day
# each), and deletes them in writer transactions of at most the second number.
# Measured with DuckDB 2.0.1 on a 2-core machine and a 300,000-event table, a
# delete of 2,000 events commits in about the time of a one-event append
# (8 to 14 ms on that disk), and one of 10,000 in twice that.
TRIM_STEP_EVENTS = 10_000
DELETE_STEP_EVENTS = 2_000
# Waits with `coalesced=True` (live streams) end at most once per this
# interval, all together, so that commits closer together than this wake each
# stream once and it sends their events in one write. Shutdown ends them at once.
COALESCED_WAKE_SECONDS = 0.005


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
    # Scans of reads, counted by where they were served from.
    tail_scans: int = 0
    storage_scans: int = 0


class EventLog:
    """A log on one storage backend, owned by one asyncio event loop."""

    def __init__(
        self,
        storage: Storage,
        loop: asyncio.AbstractEventLoop,
        *,
        tail_capacity: int = DEFAULT_TAIL_CAPACITY,
        tail_bytes: int | None = DEFAULT_TAIL_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_group_events: int = DEFAULT_MAX_GROUP_EVENTS,
        archive: Archive | None = None,
        retention: RetentionPolicy | None = None,
        coalesced_wake_seconds: float = COALESCED_WAKE_SECONDS,
    ) -> None:
        if retention and archive is None:
            raise ValueError("Retention needs an archive to write the events it removes to.")
        self.storage = storage
        self.archive = archive
        self.max_event_bytes = max_event_bytes
        self.stats = LogStats()
        self._loop = loop
        self._tail = Tail(tail_capacity, tail_bytes)
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="eventlog-reader")
        bounds = storage.bounds()
        self._head = bounds.head
        self._earliest = bounds.earliest
        self._trimmed_recordedtime = bounds.trimmed_recordedtime
        self._archived_through = self._earliest - 1
        if archive is not None:
            archive.remove_partial_files()
            self._archived_through = max(self._archived_through, archive.archived_through())
        self._history = ThreadPoolExecutor(HISTORY_THREADS, thread_name_prefix="eventlog-history")
        self._gate = HorizonGate()
        self._trimming = asyncio.Lock()
        self._retention: asyncio.Task[None] | None = None
        self._head_changed = asyncio.Event()
        self._head_coalesced = asyncio.Event()
        self._coalesced_wake_seconds = coalesced_wake_seconds
        self._coalesced_wake: asyncio.TimerHandle | None = None
        self._coalesced_woken_at = 0.0
        self._healthy = True
        self._closed = False
        self._stopping = False
        self._pending_audit: list[AuditRecord] = []
        self._audit_flush: asyncio.TimerHandle | None = None
        self._tail.reset(self._head)
        self._filling: asyncio.Task[None] | None = None
        self._writer = Writer(
            storage,
            bounds.head,
            bounds.last_recordedtime,
            self._on_commit,
            max_group_events=max_group_events,
        )
        self._writer.start()
        # The constructor may run on another thread, so the loop's thread creates the tasks.
        loop.call_soon_threadsafe(self._start_fill, self._head)
        if retention:
            loop.call_soon_threadsafe(self._start_retention, retention)
        logger.info(
            "Opened the event log with head %d and earliest sequence %d", self._head, self._earliest
        )

    @classmethod
    async def open(cls, path: Path | str, **options: Any) -> EventLog:
        """Open (or create) the log in a DuckDB file, in the running event loop.

        The archive defaults to the folder `archive` next to the file. With
        `retention`, a background task trims the log by that policy.
        """
        loop = asyncio.get_running_loop()
        options.setdefault("archive", Archive(Path(path).parent / ARCHIVE_FOLDER))
        storage = await asyncio.to_thread(DuckDBStorage, path)
        return await asyncio.to_thread(cls, storage, loop, **options)

    @property
    def head(self) -> int:
        """The highest committed and readable sequence; 0 for an empty log."""
        return self._head

    @property
    def earliest(self) -> int:
        """The lowest sequence still retained; `head + 1` when retention removed every event."""
        return self._earliest

    @property
    def closed(self) -> bool:
        """True once `close` has begun; `wait_for_head` then returns False without waiting."""
        return self._closed

    @property
    def healthy(self) -> bool:
        """False after a commit failed, until the next commit succeeds."""
        return self._healthy and not self._closed

    @property
    def tail_size(self) -> int:
        """The number of newest events held in memory."""
        return self._tail.size

    @property
    def tail_filling(self) -> bool:
        """True while the tail is being filled with the events stored before the log opened."""
        return self._filling is not None and not self._filling.done()

    async def wait_for_tail(self) -> None:
        """Wait until the tail contains the events stored before the log opened, as many as fit.

        Returns at once when the fill is over. Raises CancelledError when
        `close` stopped the fill first.
        """
        if self._filling is not None:
            await asyncio.shield(self._filling)

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
        """Add a record to the audit trail; it is committed within about AUDIT_BATCH_SECONDS.

        Call it from the event loop's thread. Records still waiting when the
        process dies are lost, as are records queued for the writer.
        """
        if self._closed:
            return
        self._pending_audit.append(audit)
        if self._audit_flush is None:
            self._audit_flush = self._loop.call_later(AUDIT_BATCH_SECONDS, self._flush_audit)

    def _flush_audit(self) -> None:
        if self._audit_flush is not None:
            self._audit_flush.cancel()
            self._audit_flush = None
        pending, self._pending_audit = self._pending_audit, []
        for audit in pending:
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
        filter: Matcher = EVERY_EVENT,
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
            after = await self.cursor_at(since)
        self._check_cursor(after)
        limit = max(1, min(limit, MAX_PAGE_LIMIT))
        deadline = time.monotonic() + wait
        while True:
            head = self._head
            result = await self._scan(after, head, filter, limit)
            # Retention may have deleted events while a storage read ran, and
            # the read would then have skipped them.
            self._check_cursor(after)
            after = max(after, result.scanned_to)
            remaining = deadline - time.monotonic()
            if result.events or remaining <= 0 or self._stopping:
                return Page(result.events, after, head)
            if after >= self._head:
                await self.wait_for_head(after, remaining)

    async def wait_for_head(
        self, beyond: int, timeout: float | None = None, *, coalesced: bool = False
    ) -> bool:
        """Wait until the head passes `beyond`; return False if the time ran out first.

        With `coalesced`, the wait ends together with every other coalesced
        wait, at most once per `coalesced_wake_seconds` (given to the
        constructor): the first commit after a quiet interval ends it at
        once, and later ones at the end of the interval. Shutdown ends it
        at once.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._head <= beyond:
            if self._stopping:
                return False
            changed = self._head_coalesced if coalesced else self._head_changed
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def begin_shutdown(self) -> None:
        """Answer held reads and end waits now; appends go on until `close`.

        A server calls this when it starts a graceful shutdown, so that
        long-polls and streams end instead of holding the shutdown up.
        """
        if not self._stopping:
            self._stopping = True
            self._announce()

    @property
    def stopping(self) -> bool:
        """True once `begin_shutdown` or `close` was called."""
        return self._stopping

    async def cursor_at(self, since: datetime) -> int:
        """Return the cursor before the first event recorded at or after `since`.

        That is the head when no event is that recent. Raises `CursorExpired`
        when retention removed events recorded at or after `since`.
        """
        after = await self._cursor_at(since)
        trimmed = self._trimmed_recordedtime
        if trimmed is not None and trimmed >= since:
            raise CursorExpired(after, self._earliest, since=since)
        return after

    async def position_at(self, moment: datetime) -> int:
        """Return the last retained sequence recorded before `moment`; `earliest - 1` if none."""
        return max(self._earliest - 1, await self._cursor_at(moment))

    async def trim(self, through: int) -> int:
        """Remove the events up to `through` from the log, archiving them first; return how many.

        Each step of at most TRIM_STEP_EVENTS events writes them to the
        archive and syncs the files, then moves `earliest` past them (older
        cursors get `CursorExpired` from then on), then deletes them on the
        writer thread in transactions of at most DELETE_STEP_EVENTS. Raises
        `LogUnavailable` when a step fails; its events stay in the archive,
        and the next call goes on from there.
        """
        if self.archive is None:
            raise ValueError("This log has no archive, so it cannot trim events.")
        removed = 0
        async with self._trimming:
            through = min(through, self._head)
            while self._earliest <= through and not self._closed:
                first = self._earliest
                last = min(through, first + TRIM_STEP_EVENTS - 1)
                recordedtime = await self._in_history(self._archive_step, first, last)
                async with self._gate.deleting():
                    self._move_horizon(last, recordedtime)
                    await self._delete_through(first, last)
                removed += last - first + 1
                logger.info("Trimmed events %d to %d into the archive", first, last)
        return removed

    async def query(
        self,
        sql: str,
        seconds: float = DEFAULT_QUERY_SECONDS,
        max_rows: int = MAX_QUERY_ROWS,
    ) -> QueryResult:
        """Run one read-only SQL query over the archived and live events; see `eventlog.history`."""
        check_statement(sql)
        run = functools.partial(
            run_query,
            self.storage,
            self.archive,
            sql,
            head=self._head,
            archived_through=self._archived_through,
            seconds=seconds,
            max_rows=max_rows,
        )
        async with self._gate.reading():
            result: QueryResult = await self._in_history(run)
        return result

    async def read_range(self, after: int, last: int) -> pa.Table:
        """Return the events with `after < sequence <= last`, archived or live, as Arrow.

        The table has the columns of `eventlog.archive.ARCHIVE_SCHEMA`. Read
        long ranges in parts of some thousand events, as each is one read.
        """
        last = min(last, self._head)
        async with self._gate.reading():
            table: pa.Table = await self._in_history(
                read_range, self.storage, self.archive, after, last, self._archived_through
            )
        return table

    async def first_recorded_at(self, moment: datetime) -> int | None:
        """Return the first sequence, archived or live, recorded at or after `moment`; None if none."""
        async with self._gate.reading():
            sequence: int | None = await self._in_history(
                first_recorded_at, self.storage, self.archive, moment, self._head
            )
        return sequence

    async def close(self) -> None:
        """Stop retention, finish queued appends, checkpoint, and release the storage."""
        if self._closed:
            return
        self._closed = True
        if self._filling is not None:
            self._filling.cancel()
            # asyncio.wait does not raise, so a fill that failed does not stop the close.
            await asyncio.wait([self._filling])
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        self._stopping = True
        self._flush_audit()
        await asyncio.to_thread(self._writer.close)
        # Let the last commit callbacks run before waking the waiters.
        await asyncio.sleep(0)
        self._announce()
        self._readers.shutdown(wait=True)
        self._history.shutdown(wait=True)
        await asyncio.to_thread(self.storage.close)
        logger.info("Closed the event log at head %d", self._head)

    async def _cursor_at(self, since: datetime) -> int:
        tail = self._tail
        # Events of one commit share their recordedtime. So the tail is searched
        # only when its first event is older than `since`, because then no
        # earlier event can be recorded at or after `since`.
        if tail.first <= tail.last and _recorded(tail.get(tail.first).event) < since:
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

    def _start_fill(self, last: int) -> None:
        after = max(self._earliest - 1, last - self._tail.capacity)
        if not self._closed and after < last:
            self._filling = self._loop.create_task(self._fill_tail(after, last))

    async def _fill_tail(self, after: int, last: int) -> None:
        """Put the events after..last, which precede everything appended since, into the tail.

        The events are read and decoded on a reader thread in steps, and
        added to the tail at once on the event loop's thread, where every
        read of the tail runs. So a read finds either none or all of them in
        the tail, and reads before that go to storage.

        NOTE: a filtered storage scan examines at most about a million
        sequences, so with a larger tail capacity a filtered read during the
        fill can return an earlier cursor than the same read afterwards.
        """
        started = time.perf_counter()
        entries: list[TailEntry] = []
        position = after
        try:
            while position < last:
                chunk, position = await self._in_reader(
                    _decode_tail_events, self.storage, position, last
                )
                entries.extend(chunk)
                entries = _newest_within(entries, self._tail.max_bytes)
        except EventLogError as error:
            logger.error(
                "Cannot fill the tail with events %d to %d, so reads of them go to storage: %s",
                after + 1,
                last,
                error,
            )
            return

        # Retention may have removed the oldest of them meanwhile. It moves
        # `earliest` before it deletes, so the events at or above it are dense.
        retained = [entry for entry in entries if entry.sequence >= self._earliest]
        added = self._tail.prepend(retained)
        logger.info(
            "Filled the tail with %d events before sequence %d in %.2f s",
            added,
            last + 1,
            time.perf_counter() - started,
        )

    def _start_retention(self, policy: RetentionPolicy) -> None:
        if not self._closed:
            self._retention = self._loop.create_task(run_retention(self, policy))

    def _archive_step(self, first: int, last: int) -> datetime:
        """Archive events first..last unless they are already, and return when `last` was recorded.

        Runs on a history thread; events below the head never change, so
        reading them needs no lock.
        """
        assert self.archive is not None
        # A step that failed halfway may have completed some files.
        self._archived_through = max(self._archived_through, self.archive.archived_through())
        if last > self._archived_through:
            start = max(first - 1, self._archived_through)
            self.archive.write(self.storage.read_events_arrow(start, last))
            self._archived_through = last
        newest = self.storage.read_events_arrow(last - 1, last).read_all()
        if newest.num_rows != 1:
            raise LogUnavailable(f"The event {last} to trim is missing from the log.")
        recordedtime: datetime = newest.column("recordedtime")[0].as_py()
        return recordedtime

    def _move_horizon(self, last: int, recordedtime: datetime) -> None:
        # Before the delete: from here on no read may start below the horizon.
        self._earliest = last + 1
        self._trimmed_recordedtime = recordedtime
        self._tail.discard_through(last)

    async def _delete_through(self, first: int, last: int) -> None:
        # One writer job per part, so that appends queued meanwhile go between them.
        for end in range(first, last + 1, DELETE_STEP_EVENTS):
            part_last = min(end + DELETE_STEP_EVENTS - 1, last)
            job = functools.partial(self.storage.delete_through, part_last)
            await asyncio.wrap_future(self._writer.run(job))

    async def _in_history(self, function: Any, *arguments: Any) -> Any:
        return await self._loop.run_in_executor(self._history, function, *arguments)

    def _check_cursor(self, after: int) -> None:
        if after < 0:
            raise ValueError(f"A cursor is a sequence of 0 or more, not {after}.")
        if after < self._earliest - 1:
            raise CursorExpired(after, self._earliest)

    async def _scan(self, after: int, last: int, filter: Matcher, limit: int) -> ScanResult:
        if after >= last:
            return ScanResult([], after)
        if self._tail.covers(after):
            self.stats.tail_scans += 1
            return self._tail.scan(after, last, filter, limit)
        self.stats.storage_scans += 1
        result: ScanResult = await self._in_reader(self.storage.scan, after, last, filter, limit)
        return result

    async def _in_reader(self, function: Any, *arguments: Any) -> Any:
        return await self._loop.run_in_executor(self._readers, function, *arguments)

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
                attributes = record.attributes or attribute_strings(record.fields)
                self._tail.append(TailEntry.of(record.sequence, attributes, record.event))
            self._head = records[-1].sequence
            self._healthy = True
            stats.appended_events += len(records)
            stats.commits += 1

        self._reply(group)
        # After the replies, so that the publishers' tasks run before the
        # readers' tasks that the announcement wakes, and an acknowledgement
        # does not wait for the writes to every stream.
        if records:
            self._announce()

    def _reply(self, group: list[AppendRequest]) -> None:
        stats = self.stats
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
        self._schedule_coalesced_wake()

    def _schedule_coalesced_wake(self) -> None:
        if self._coalesced_wake is not None and not self._stopping:
            return
        due = self._coalesced_woken_at + self._coalesced_wake_seconds
        if self._stopping or self._loop.time() >= due:
            self._wake_coalesced()
        else:
            self._coalesced_wake = self._loop.call_at(due, self._wake_coalesced)

    def _wake_coalesced(self) -> None:
        if self._coalesced_wake is not None:
            self._coalesced_wake.cancel()
            self._coalesced_wake = None
        self._coalesced_woken_at = self._loop.time()
        changed, self._head_coalesced = self._head_coalesced, asyncio.Event()
        changed.set()


def _decode_tail_events(storage: Storage, after: int, last: int) -> tuple[list[TailEntry], int]:
    """Read up to TAIL_FILL_EVENTS events after `after` up to `last` as tail entries.

    Return them and the cursor to go on from.
    """
    result = storage.scan(after, last, EVERY_EVENT, TAIL_FILL_EVENTS)
    entries = [
        TailEntry.of(stored.sequence, attribute_strings(orjson.loads(stored.event)), stored.event)
        for stored in result.events
    ]
    return entries, result.scanned_to


def _newest_within(entries: list[TailEntry], max_bytes: int | None) -> list[TailEntry]:
    """Return the newest of `entries` whose events fit in `max_bytes` together."""
    if max_bytes is None:
        return entries
    total = 0
    for index in range(len(entries) - 1, -1, -1):
        total += len(entries[index].event)
        if total > max_bytes:
            return entries[index + 1 :]
    return entries


def _recorded(event: bytes) -> datetime:
    return datetime.fromisoformat(orjson.loads(event)["recordedtime"])
