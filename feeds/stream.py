"""`GET /events/stream`: a feed as Server-Sent Events, history first and then live events.

One cursor drives the whole stream. Each step reads the next page after the
cursor with `EventLog.read`, sends its events, and moves the cursor to the
page's `next_after`. When the cursor reaches the head, the stream waits with
`EventLog.wait_for_head`. History and live events are therefore the same
loop, because the log serves old cursors from storage in short reads and
recent ones from its in-memory tail. There is no separate live subscription
whose start could race with publishers, so nothing is skipped or sent twice
at the switch.

The wire format, one message per event:

    id: 42
    data: {"specversion":"1.0","id":"…","sequence":"42",…}

Streams share the encoding: `Frames` encodes each recent event's message
once, and streams that send the same events (typically every stream at the
head, woken together) share one joined chunk for them. A stream writes each
page of up to STREAM_PAGE_EVENTS events as one chunk, so a stream at the
head makes one transport write per wake-up for the events of several
commits.

The first message carries only `retry:` and the start cursor as `id:`. It
dispatches no event, but an `EventSource` remembers the id, so a reconnect
that happens before the first event resumes where the stream began.

`open_stream` is the stream itself, for any filter and start; the
subscription stream uses it too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from eventlog import EventLog, EventLogError, LogUnavailable, Page
from eventlog.filters import Matcher
from eventlog.storage import StoredEvent
from feeds.access import audit_record, authenticate, require
from feeds.grants import Principal
from feeds.metrics import Metrics
from feeds.pages import MAX_SEQUENCE, parse_feed_query, parse_whole_number
from feeds.problems import bad_request, shown

logger = logging.getLogger(__name__)

# Query parameters of the stream that are not attribute filters. `limit` and
# `wait` belong to pages, and are reserved here so that they are rejected
# instead of read as filters on extension attributes of those names.
# `access_token` carries a bearer token for browsers, which cannot send headers.
STREAM_PARAMETERS = ("after", "since", "limit", "wait", "access_token")

# Events per read. A stream keeps at most one such page in memory, besides the
# transport's write buffer.
STREAM_PAGE_EVENTS = 100

# How long a client waits before reconnecting, sent in the `retry:` field.
RETRY_MILLISECONDS = 2000

DEFAULT_HEARTBEAT_SECONDS = 15.0

# Frames kept for sharing: the messages of the newest events, about 6 MB for
# events of 1.4 KB. Older events, read by streams still sending history, are
# encoded per stream and not kept.
SHARED_FRAME_EVENTS = 4096
# Joined chunks kept for sharing, one per (selection, first, last) sent.
SHARED_CHUNKS = 16


class Frames:
    """SSE messages of recent events, each encoded once and shared by every stream that sends it.

    Events never change once committed, so a message cached for a sequence
    stays valid. Streams with the same selection that send the same run of
    events also share the joined chunk: its first and last sequence and the
    selection determine which events lie between.
    Used from the event loop's thread only.
    """

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._frames: dict[int, bytes] = {}
        # Keys hold the selection, a frozen dataclass compared by value.
        self._chunks: dict[tuple[object, int, int], bytes] = {}

    def encode(self, selection: Matcher, events: list[StoredEvent]) -> bytes:
        """Return the messages of `events`, read with `selection`, as one chunk."""
        key = (selection, events[0].sequence, events[-1].sequence)
        chunk = self._chunks.get(key)
        if chunk is not None:
            return chunk

        chunk = b"".join([self._frame(event) for event in events])
        if events[-1].sequence > self._log.head - SHARED_FRAME_EVENTS:
            if len(self._chunks) >= SHARED_CHUNKS:
                del self._chunks[next(iter(self._chunks))]
            self._chunks[key] = chunk
        return chunk

    def _frame(self, event: StoredEvent) -> bytes:
        frame = self._frames.get(event.sequence)
        if frame is not None:
            return frame

        # Stored events are one line of JSON already, so each is one `data:` line.
        frame = b"id: %d\ndata: %s\n\n" % (event.sequence, event.event)
        if event.sequence > self._log.head - SHARED_FRAME_EVENTS:
            # Insertion order is close to sequence order, so the first key is
            # about the oldest.
            if len(self._frames) >= SHARED_FRAME_EVENTS:
                del self._frames[next(iter(self._frames))]
            self._frames[event.sequence] = frame
        return frame


def shared_frames(request: Request) -> Frames:
    """Return the application's `Frames`, made at the first stream."""
    state = request.app.state
    frames: Frames | None = getattr(state, "stream_frames", None)
    if frames is None:
        frames = Frames(state.log)
        state.stream_frames = frames
    return frames


@dataclass(slots=True)
class Delivery:
    """The progress of one stream: its cursors and the events sent, for its audit record."""

    start: int
    cursor: int
    count: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None


async def stream_events(request: Request) -> Response:
    """Stream the feed as SSE, from `Last-Event-ID`, else `after` or `since`, else the head.

    The caller needs a read grant, and receives only the events that its read
    grants admit. A missing token, a missing grant, bad parameters, a bad
    `Last-Event-ID` and an expired cursor get a problem response before the
    stream starts.
    """
    log: EventLog = request.app.state.log
    # NOTE: the token is checked when the stream opens; revoking it does not end
    # a stream that is already open.
    principal = authenticate(request, "stream", allow_query_token=True)
    require(request, principal, "read", "stream")
    query = parse_feed_query(request.query_params.multi_items(), STREAM_PARAMETERS)
    if query.limit_given or query.wait_given:
        name = "limit" if query.limit_given else "wait"
        raise bad_request(
            f"The parameter {name!r} applies to pages of GET /events, not to streams; "
            "leave it out.",
            parameter=name,
        )
    if log.closed:
        raise LogUnavailable("The server is shutting down; reconnect to another server or later.")

    last_event_id = parse_last_event_id(request.headers)
    since = query.since
    if last_event_id is not None:
        after, since = last_event_id, None
    elif since is None and "after" not in request.query_params:
        after = log.head
    else:
        after = query.after

    return await open_stream(
        request,
        principal,
        principal.selection(query.filter),
        after,
        since=since,
        detail={"filter": query.filter.to_query()},
    )


async def open_stream(
    request: Request,
    principal: Principal,
    selection: Matcher,
    after: int,
    *,
    since: datetime | None = None,
    detail: dict[str, object],
    stop: asyncio.Event | None = None,
) -> Response:
    """Answer an SSE stream of the events that `selection` admits, after `after` or from `since`.

    The stream's audit records carry `detail` (such as the filter) and the
    cursors. Setting `stop` ends the stream at once, as when its
    subscription is deleted. Raises `CursorExpired` for an expired start,
    so that the client gets a problem response instead of a stream.
    """
    log: EventLog = request.app.state.log
    # The first read also checks the cursor (410 when it is expired) and
    # resolves `since`, so that these errors arrive as problem responses.
    first = await log.read(after=after, filter=selection, limit=STREAM_PAGE_EVENTS, since=since)
    start = first.events[0].sequence - 1 if first.events else first.next_after

    log.record(
        audit_record(
            request, principal.name, "stream.open", 200, detail={**detail, "start": start}
        )
    )

    def record_delivery(delivery: Delivery) -> None:
        _audit(request, principal.name, detail, delivery)

    settings = request.app.state.settings
    messages = _messages(
        log,
        shared_frames(request),
        request.app.state.metrics,
        selection,
        first,
        start,
        record_delivery,
        stop,
    )
    return EventSourceResponse(
        messages,
        headers={"Cache-Control": "no-cache"},
        ping=settings.heartbeat_seconds,
        sep="\n",
    )


def parse_last_event_id(headers: Mapping[str, str]) -> int | None:
    """Return the cursor in the `Last-Event-ID` header, None without one; raise 400 if invalid.

    >>> parse_last_event_id({"last-event-id": "42"})
    42
    """
    text = headers.get("last-event-id")
    if text is None:
        return None
    cursor = parse_whole_number(text)
    if cursor is None:
        raise bad_request(
            f"The Last-Event-ID header must be a sequence (a whole number from 0 to "
            f"{MAX_SEQUENCE}), not {shown(text)}. Send the id of the last event received, "
            "or leave the header out.",
            header="Last-Event-ID",
        )
    return cursor


async def _messages(
    log: EventLog,
    frames: Frames,
    metrics: Metrics,
    filter: Matcher,
    page: Page,
    start: int,
    on_close: Callable[[Delivery], None],
    stop: asyncio.Event | None,
) -> AsyncIterator[bytes]:
    """Yield SSE messages from `page` on, one page per chunk, until the log closes or `stop` is set.

    The response pulls the next chunk only after the previous one was handed
    to the transport, and uvicorn's send (0.55, httptools and h11) waits while
    the transport's buffer is above its high-water mark. A stalled client
    therefore stops the loop, and its cursor falls back to storage reads when
    the tail moves on. `on_close` receives what was sent when the stream ends.

    On SIGTERM, sse-starlette (3.7) notices uvicorn's exit flag within half a
    second and cancels this generator.
    NOTE: uvicorn then still waits for a stalled client's unsent bytes, so
    servers need `timeout_graceful_shutdown` to bound the shutdown.
    """
    metrics.open_streams.inc()
    delivery = Delivery(start=start, cursor=start)
    logger.debug("Opened a stream at cursor %d", start)
    try:
        yield b"retry: %d\nid: %d\n\n" % (RETRY_MILLISECONDS, start)
        while True:
            if page.events:
                yield frames.encode(filter, page.events)
                _count(delivery, page)
            delivery.cursor = page.next_after
            if delivery.cursor >= log.head and not await _wait(log, delivery.cursor, stop):
                break
            if log.stopping or (stop is not None and stop.is_set()):
                break
            page = await log.read(after=delivery.cursor, filter=filter, limit=STREAM_PAGE_EVENTS)
    except EventLogError as error:
        # Ending the stream lets the client reconnect with Last-Event-ID and
        # receive the error as a problem response, such as 410 for a cursor
        # that retention removed meanwhile.
        logger.warning("Ended a stream at cursor %d: %s", delivery.cursor, error)
    finally:
        metrics.open_streams.dec()
        logger.debug("Closed a stream at cursor %d", delivery.cursor)
        on_close(delivery)


async def _wait(log: EventLog, cursor: int, stop: asyncio.Event | None) -> bool:
    """Wait until the head passes `cursor`; return False when the log or `stop` ends the wait."""
    if stop is None:
        return await log.wait_for_head(cursor, coalesced=True)
    head_moved = asyncio.ensure_future(log.wait_for_head(cursor, coalesced=True))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((head_moved, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        head_moved.cancel()
        stopped.cancel()
    return not stop.is_set() and head_moved.done() and not head_moved.cancelled() and head_moved.result()


def _count(delivery: Delivery, page: Page) -> None:
    if delivery.first_sequence is None:
        delivery.first_sequence = page.events[0].sequence
    delivery.last_sequence = page.events[-1].sequence
    delivery.count += len(page.events)


def _audit(
    request: Request, principal: str, detail: dict[str, object], delivery: Delivery
) -> None:
    log: EventLog = request.app.state.log
    record = audit_record(
        request,
        principal,
        "stream.close",
        200,
        count=delivery.count,
        first_sequence=delivery.first_sequence,
        last_sequence=delivery.last_sequence,
        detail={**detail, "start": delivery.start, "cursor": delivery.cursor},
    )
    log.record(record)
