"""The single writer: one thread that owns appends, with group commit.

Requests wait on a queue. The writer takes everything queued (up to a
bound), checks each event's (source, id) against the log and the group,
assigns the next dense sequences, appends the whole group in one transaction
and only then hands the outcomes back. Because this thread is the only one
that appends, sequences are committed in order and a reader paging with
`after` can never skip an event that commits late.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from eventlog.errors import (
    AttributeProblem,
    DuplicateConflict,
    EventLogError,
    InvalidEvent,
    LogUnavailable,
)
from eventlog.event import CORE_ATTRIBUTES, Event, event_key
from eventlog.storage import AuditRecord, EventRecord, Storage

# `event_key` moved to eventlog.event and stays importable from here.
__all__ = ["AppendRequest", "Appended", "CommitCallback", "Writer", "event_key", "format_time"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_GROUP_EVENTS = 10_000
IDLE_CHECKPOINT_SECONDS = 5.0

# An audit record of a publish names at most this many distinct sources.
_AUDITED_SOURCES = 20


@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome for one event: its sequence, and whether it was already in the log."""

    sequence: int
    duplicate: bool


@dataclass(slots=True)
class AppendRequest:
    """Events that are appended together or not at all, and where the outcome goes.

    `audit` is the audit record of the request without its outcome; the
    writer completes it with the count and sequence range and commits it in
    the same transaction as the events.
    """

    events: Sequence[Event]
    reply: Any  # Opaque to the writer; handed back with the outcome.
    audit: AuditRecord | None = None
    outcome: list[Appended] | EventLogError | None = None
    new_records: list[EventRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WriterJob:
    """A storage change other than an append, run on the writer thread between groups.

    Retention's deletes run here, so that they never race an append.
    """

    function: Callable[[], Any]
    result: Future[Any]


QueueItem = AppendRequest | AuditRecord | WriterJob


# Called in the writer thread after each group, with the records now durable
# (in sequence order), every request of the group with its outcome set, and
# the seconds the group took to commit.
CommitCallback = Callable[[list[EventRecord], list[AppendRequest], float], None]


def format_time(moment: datetime) -> str:
    """Format a UTC time as RFC 3339 with microseconds and a `Z` offset."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Writer:
    """The thread that appends to a `Storage`; see the module docstring."""

    def __init__(
        self,
        storage: Storage,
        head: int,
        last_recordedtime: datetime | None,
        on_commit: CommitCallback,
        max_group_events: int = DEFAULT_MAX_GROUP_EVENTS,
    ) -> None:
        self._storage = storage
        self._head = head
        self._last_recordedtime = last_recordedtime or datetime.fromtimestamp(0, UTC)
        self._on_commit = on_commit
        self._max_group_events = max_group_events
        self._queue: queue.SimpleQueue[QueueItem | None] = queue.SimpleQueue()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="eventlog-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, request: AppendRequest) -> None:
        """Queue a request; its outcome arrives through the commit callback."""
        if self._closing:
            raise LogUnavailable("The log is shutting down and accepts no more events.")
        self._queue.put(request)

    def record(self, audit: AuditRecord) -> None:
        """Queue an audit record; it is committed with the next group, or alone when idle."""
        if self._closing:
            logger.warning("Dropped an audit record of %s after close", audit.action)
            return
        self._queue.put(audit)

    def run(self, function: Callable[[], Any]) -> Future[Any]:
        """Queue `function` to run on the writer thread after the groups queued before it.

        The returned future holds its result or exception. Raises
        `LogUnavailable` once the writer is closing.
        """
        if self._closing:
            raise LogUnavailable("The log is shutting down and accepts no more changes.")
        job = WriterJob(function, Future())
        self._queue.put(job)
        return job.result

    def close(self, timeout: float | None = None) -> None:
        """Finish every queued request, checkpoint, and stop the thread."""
        if self._closing:
            return
        self._closing = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        dirty = False
        while True:
            try:
                first = self._queue.get(timeout=IDLE_CHECKPOINT_SECONDS if dirty else None)
            except queue.Empty:
                self._storage.checkpoint()
                dirty = False
                continue
            if first is None:
                break
            dirty = True
            if isinstance(first, WriterJob):
                _run_job(first)
                continue
            group, stop, job = self._drain(first)
            self._commit_group(group)
            if job is not None:
                _run_job(job)
            if stop:
                break
        self._storage.checkpoint()
        self._cancel_queued_jobs()

    def _cancel_queued_jobs(self) -> None:
        # A job queued while `close` ran, after the stop marker, never runs.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, WriterJob) and item.result.set_running_or_notify_cancel():
                item.result.set_exception(LogUnavailable("The log closed before the change ran."))

    def _drain(
        self, first: AppendRequest | AuditRecord
    ) -> tuple[list[AppendRequest | AuditRecord], bool, WriterJob | None]:
        """Take queued appends and audit records up to the bound, and stop at a job or close."""
        group = [first]
        count = 0
        while count < self._max_group_events:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return group, True, None
            if isinstance(item, WriterJob):
                return group, False, item
            group.append(item)
            count += len(item.events) if isinstance(item, AppendRequest) else 1
        return group, False, None

    def _commit_group(self, items: list[AppendRequest | AuditRecord]) -> None:
        started = time.perf_counter()
        previous_head = self._head
        previous_time = self._last_recordedtime
        group = [item for item in items if isinstance(item, AppendRequest)]
        audit = [item for item in items if isinstance(item, AuditRecord)]
        try:
            records = self._assign(group)
            audit.extend(_publish_audit(group))
            self._storage.append(records, audit)
        except Exception as error:  # The thread must outlive any failure.
            if not isinstance(error, EventLogError):
                logger.exception("Unexpected failure while appending a group")
            self._head = previous_head
            self._last_recordedtime = previous_time
            self._fail_group(group, previous_head, error)
            self._on_commit([], group, 0.0)
            return
        seconds = time.perf_counter() - started
        logger.debug(
            "Committed %d events in %d requests in %.1f ms", len(records), len(group), seconds * 1000
        )
        self._on_commit(records, group, seconds)

    def _assign(self, group: list[AppendRequest]) -> list[EventRecord]:
        keys = [event.key for request in group for event in request.events]
        stored = {
            (found.source, found.id): (found.sequence, found.digest)
            for found in self._storage.find(keys)
        }
        now = datetime.now(UTC)
        recordedtime = max(now, self._last_recordedtime)
        stamp = format_time(recordedtime)

        records: list[EventRecord] = []
        for request in group:
            outcome = self._assign_request(request, stored, recordedtime, stamp)
            request.outcome = outcome
            if isinstance(outcome, list):
                records.extend(request.new_records)
        self._last_recordedtime = recordedtime
        return records

    def _assign_request(
        self,
        request: AppendRequest,
        stored: dict[tuple[str, str], tuple[int, bytes]],
        recordedtime: datetime,
        stamp: str,
    ) -> list[Appended] | EventLogError:
        outcomes: list[Appended] = []
        pending: dict[tuple[str, str], tuple[int, bytes]] = {}
        new_records: list[EventRecord] = []
        next_sequence = self._head + 1
        for index, event in enumerate(request.events):
            identity = (event.source, event.id)
            digest = event.digest
            existing = pending.get(identity) or stored.get(identity)
            if existing is not None:
                sequence, stored_digest = existing
                if stored_digest != digest and identity in pending:
                    # No event with this identity is stored, so there is no
                    # sequence to name in a conflict: the request is invalid.
                    return _conflict_within(request.events, index)
                if stored_digest != digest:
                    return DuplicateConflict(index, event.source, event.id, sequence)
                outcomes.append(Appended(sequence, True))
                continue
            record = _record(event, next_sequence, recordedtime, stamp, digest)
            pending[identity] = (next_sequence, digest)
            new_records.append(record)
            outcomes.append(Appended(next_sequence, False))
            next_sequence += 1

        # The request is accepted: its new events become visible to later
        # requests of the same group as stored events.
        stored.update(pending)
        request.new_records = new_records
        self._head = next_sequence - 1
        return outcomes

    def _fail_group(
        self, group: list[AppendRequest], previous_head: int, error: Exception
    ) -> None:
        logger.error("Append of a group of %d requests failed: %s", len(group), error)
        unavailable = (
            error if isinstance(error, LogUnavailable) else LogUnavailable(str(error))
        )
        for request in group:
            request.new_records = []
            outcome = request.outcome
            if isinstance(outcome, list) and all(
                appended.duplicate and appended.sequence <= previous_head for appended in outcome
            ):
                continue  # Only duplicates of events already on disk: still true.
            if isinstance(outcome, InvalidEvent):
                continue
            if isinstance(outcome, DuplicateConflict) and outcome.sequence <= previous_head:
                continue  # The conflicting event is on disk, so the 409 is still true.
            request.outcome = unavailable


def _run_job(job: WriterJob) -> None:
    if not job.result.set_running_or_notify_cancel():
        return
    try:
        job.result.set_result(job.function())
    except Exception as error:  # noqa: BLE001 - the caller receives it through the future.
        job.result.set_exception(error)


def _conflict_within(events: Sequence[Event], index: int) -> InvalidEvent:
    """Describe event `index` reusing the (source, id) of an earlier, different event of its request."""
    event = events[index]
    earlier = next(
        position
        for position, other in enumerate(events)
        if (other.source, other.id) == (event.source, event.id)
    )
    message = (
        f"Events {earlier} and {index} of the request have source {event.source!r} and id "
        f"{event.id!r} but different content; give each event its own id."
    )
    return InvalidEvent([AttributeProblem(index, "id", message)])


def _publish_audit(group: list[AppendRequest]) -> list[AuditRecord]:
    """Complete the audit records of the accepted requests of a group."""
    completed: list[AuditRecord] = []
    for request in group:
        if request.audit is None or not isinstance(request.outcome, list):
            continue
        new = [appended.sequence for appended in request.outcome if not appended.duplicate]
        sources = sorted({event.source for event in request.events})
        detail: dict[str, object] = {
            "sources": sources[:_AUDITED_SOURCES],
            "duplicates": len(request.outcome) - len(new),
        }
        if len(sources) > _AUDITED_SOURCES:
            detail["more_sources"] = len(sources) - _AUDITED_SOURCES
        completed.append(
            replace(
                request.audit,
                count=len(new),
                first_sequence=new[0] if new else None,
                last_sequence=new[-1] if new else None,
                detail=detail,
            )
        )
    return completed


def _record(
    event: Event, sequence: int, recordedtime: datetime, stamp: str, digest: bytes
) -> EventRecord:
    # The delivered JSON is the canonical encoding with the log's two
    # attributes spliced in before its closing brace: the event is not
    # encoded again. Sequence and time need no JSON escaping.
    delivered = b'%s,"sequence":"%d","recordedtime":"%s"}' % (
        event.canonical[:-1],
        sequence,
        stamp.encode(),
    )
    attributes = event.attributes()
    return EventRecord(
        sequence=sequence,
        recordedtime=recordedtime,
        fields=event.fields,
        extensions={
            name: value for name, value in attributes.items() if name not in CORE_ATTRIBUTES
        },
        key=event.key,
        digest=digest,
        event=delivered,
        attributes=attributes,
    )
