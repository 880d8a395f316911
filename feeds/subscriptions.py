"""`/subscriptions/{name}`: named feeds whose filter and cursor the server stores.

A subscription belongs to the principal that created it. Only that
principal and admins may use it; anyone else gets 403, and a name that no
subscription has gets 404. Every endpoint needs a read grant, and reads
through a subscription see only the events that the caller's read grants
admit.

The cursor moves only by `ack` (never backwards) and `seek` (anywhere).
Reading a page or a stream does not move it, so a consumer that fails
before its ack reads the same events again: delivery is at least once.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import ciso8601
import orjson
from starlette.requests import Request
from starlette.responses import Response

from eventlog import CursorExpired, EventLog
from eventlog.subscription_filters import SubscriptionFilter
from feeds.access import audit_record, authenticate, deny, require
from feeds.grants import Principal
from feeds.json_body import read_json_object
from feeds.pages import BATCH_MEDIA_TYPE, json_array, parse_feed_query
from feeds.problems import Problem, bad_request
from feeds.stream import open_stream, parse_last_event_id
from feeds.subscription_registry import Subscription, SubscriptionRegistry

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PAGE_PARAMETERS = ("after", "limit", "wait")
_STREAM_PARAMETERS = ("access_token",)


async def put_subscription(request: Request) -> Response:
    """Create a subscription, or replace the filter of an existing one.

    The body is `{"filters": [...], "start": ...}`; both members are
    optional. `start` is "beginning", "now" (the default for a new
    subscription), a cursor (events after that sequence come next) or an
    RFC 3339 time (events recorded at or after it come next). A replacement
    keeps its cursor unless the body gives `start`.
    """
    principal, name = _caller(request, "subscription.put")
    registry = _registry(request)
    existing = registry.get(name)
    if existing is not None:
        _check_owner(request, principal, existing, "subscription.put")

    document = await read_json_object(request, ("filters", "start"))
    filter = SubscriptionFilter.parse(document.get("filters", []))
    cursor = await _start_cursor(request, document["start"]) if "start" in document else None
    if existing is None and cursor is None:
        cursor = _log(request).head

    action = "subscription.create" if existing is None else "subscription.replace"
    audit = audit_record(
        request,
        principal.name,
        action,
        201 if existing is None else 200,
        detail={"name": name, "filters": filter.to_json(), "cursor": cursor},
    )
    owner = principal.name if existing is None else existing.owner
    subscription, created = await registry.put(name, owner, filter, cursor, audit)
    headers = {"Location": str(request.url.replace(query=""))} if created else {}
    return _json(_describe(request, subscription), 201 if created else 200, headers)


async def get_subscription(request: Request) -> Response:
    """Respond with the subscription's filter, cursor, the head, and the lag between them."""
    principal, name = _caller(request, "subscription.get")
    subscription = _owned(request, principal, name, "subscription.get")
    return _json(_describe(request, subscription))


async def read_subscription(request: Request) -> Response:
    """Respond with the next page after the stored cursor (or `after`); the cursor stays.

    The format and the `Link: rel="next"` header are those of GET /events.
    The link's `after` is the position to acknowledge once the page is
    processed: past the last event, or past events the filter skipped.
    """
    principal, name = _caller(request, "subscription.read")
    subscription = _owned(request, principal, name, "subscription.read")
    items = request.query_params.multi_items()
    _check_parameters(items, _PAGE_PARAMETERS, "GET /subscriptions/{name}/events")
    query = parse_feed_query(items, _PAGE_PARAMETERS)
    after = query.after if "after" in request.query_params else subscription.cursor

    log = _log(request)
    page = await log.read(
        after=after,
        filter=principal.selection(subscription.filter),
        limit=query.limit,
        wait=query.wait,
    )
    request.app.state.metrics.feed_reads.inc()
    log.record(
        audit_record(
            request,
            principal.name,
            "read",
            200,
            count=len(page.events),
            first_sequence=page.events[0].sequence if page.events else None,
            last_sequence=page.events[-1].sequence if page.events else None,
            detail={"subscription": name, "next_after": page.next_after},
        )
    )
    parameters = [
        (key, value) for key, value in request.query_params.multi_items() if key != "after"
    ]
    parameters.append(("after", str(page.next_after)))
    link = str(request.url.replace(query=urlencode(parameters)))
    body = json_array([event.event for event in page.events])
    return Response(
        body, 200, headers={"Link": f'<{link}>; rel="next"'}, media_type=BATCH_MEDIA_TYPE
    )


async def stream_subscription(request: Request) -> Response:
    """Stream the subscription as SSE from `Last-Event-ID`, else from the stored cursor.

    The stream does not move the cursor, and it ends when the subscription
    is deleted or replaced.
    """
    principal, name = _caller(request, "subscription.stream", allow_query_token=True)
    subscription = _owned(request, principal, name, "subscription.stream")
    _check_parameters(
        request.query_params.multi_items(),
        _STREAM_PARAMETERS,
        "GET /subscriptions/{name}/stream",
    )
    last_event_id = parse_last_event_id(request.headers)
    after = subscription.cursor if last_event_id is None else last_event_id
    return await open_stream(
        request,
        principal,
        principal.selection(subscription.filter),
        after,
        detail={"subscription": name},
        stop=subscription.ended,
    )


async def acknowledge(request: Request) -> Response:
    """Move the cursor to max(cursor, `sequence`); a sequence past the head gets 400."""
    principal, name = _caller(request, "subscription.ack")
    _owned(request, principal, name, "subscription.ack")
    document = await read_json_object(request, ("sequence",))
    if "sequence" not in document:
        raise bad_request(
            'The body needs "sequence", the sequence consumed up to, such as {"sequence": 42}.',
            member="sequence",
        )
    sequence = _sequence(request, document["sequence"])
    moved = await _registry(request).move_cursor(name, sequence, None, advance_only=True)
    return _json(_describe(request, _found(moved, name)))


async def seek(request: Request) -> Response:
    """Move the cursor anywhere, for replay: `{"sequence": N}` or `{"time": "…"}`.

    A time moves it to just before the first event recorded at or after it.
    A position older than the retention horizon gets 410.
    """
    principal, name = _caller(request, "subscription.seek")
    _owned(request, principal, name, "subscription.seek")
    document = await read_json_object(request, ("sequence", "time"))
    if len(document) != 1:
        raise bad_request(
            'Give the new position as either {"sequence": N} or {"time": "<RFC 3339>"}.'
        )
    log = _log(request)
    if "sequence" in document:
        cursor = _sequence(request, document["sequence"])
        if cursor < log.earliest - 1:
            raise CursorExpired(cursor, log.earliest)
    else:
        cursor = await log.cursor_at(_time(document["time"], "time"))

    audit = audit_record(
        request, principal.name, "subscription.seek", 200, detail={"name": name, "cursor": cursor}
    )
    moved = await _registry(request).move_cursor(name, cursor, audit, advance_only=False)
    return _json(_describe(request, _found(moved, name)))


async def delete_subscription(request: Request) -> Response:
    """Delete the subscription; its open streams end."""
    principal, name = _caller(request, "subscription.delete")
    _owned(request, principal, name, "subscription.delete")
    audit = audit_record(
        request, principal.name, "subscription.delete", 204, detail={"name": name}
    )
    if not await _registry(request).delete(name, audit):
        raise _not_found(name)
    return Response(status_code=204)


def _caller(
    request: Request, action: str, *, allow_query_token: bool = False
) -> tuple[Principal, str]:
    principal = authenticate(request, action, allow_query_token=allow_query_token)
    require(request, principal, "read", action)
    name = request.path_params["name"]
    if not _NAME.fullmatch(name):
        raise bad_request(
            f"{name!r} is not a valid subscription name: use 1 to 64 letters, digits, '.', "
            "'_' or '-', starting with a letter or digit.",
            parameter="name",
        )
    return principal, name


def _owned(request: Request, principal: Principal, name: str, action: str) -> Subscription:
    subscription = _registry(request).get(name)
    if subscription is None:
        raise _not_found(name)
    _check_owner(request, principal, subscription, action)
    return subscription


def _check_owner(
    request: Request, principal: Principal, subscription: Subscription, action: str
) -> None:
    if principal.is_admin or principal.name == subscription.owner:
        return
    deny(
        request,
        principal,
        action,
        f"The subscription {subscription.name!r} belongs to another principal; only it "
        "and admins may use it. Create one of your own under another name.",
    )


def _found(subscription: Subscription | None, name: str) -> Subscription:
    # Deleted by a concurrent request after the ownership check.
    if subscription is None:
        raise _not_found(name)
    return subscription


def _not_found(name: str) -> Problem:
    return Problem(
        404,
        "not-found",
        "Not found",
        f"No subscription is named {name!r}; create it with PUT /subscriptions/{name}.",
    )


async def _start_cursor(request: Request, start: object) -> int:
    log = _log(request)
    if start == "beginning":
        return log.earliest - 1
    if start == "now":
        return log.head
    if isinstance(start, str):
        return await log.cursor_at(_time(start, "start"))
    cursor = _sequence(request, start, "start")
    if cursor < log.earliest - 1:
        raise CursorExpired(cursor, log.earliest)
    return cursor


def _sequence(request: Request, value: object, member: str = "sequence") -> int:
    """Return a sequence from 0 to the head; raise a 400 problem for anything else."""
    head = _log(request).head
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_request(
            f"{member!r} must be a sequence, a whole number from 0 to the head ({head}), "
            f"not {orjson.dumps(value).decode()}.",
            member=member,
        )
    if value > head:
        raise bad_request(
            f"{member!r} is {value}, past the head of the log ({head}); no such event exists "
            "yet. Give a sequence that was delivered.",
            member=member,
            head=head,
        )
    return value


def _time(value: object, member: str) -> datetime:
    if isinstance(value, str):
        try:
            return ciso8601.parse_rfc3339(value)
        except ValueError:
            pass
    choices = '"beginning", "now", a sequence, or ' if member == "start" else ""
    raise bad_request(
        f"{member!r} must be {choices}an RFC 3339 time with an offset, such as "
        f"\"2024-05-01T12:00:00Z\", not {orjson.dumps(value).decode()}.",
        member=member,
    )


def _check_parameters(items: list[tuple[str, str]], allowed: tuple[str, ...], route: str) -> None:
    for key, _ in items:
        if key not in allowed:
            takes = ", ".join(allowed) if allowed else "no parameters"
            raise bad_request(
                f"Unknown parameter {key!r}; {route} takes {takes}. The filter is the "
                "subscription's own: change it with PUT.",
                parameter=key,
            )


def _describe(request: Request, subscription: Subscription) -> dict[str, Any]:
    log = _log(request)
    record = subscription.record
    return {
        "name": record.name,
        "owner": record.owner,
        "filters": subscription.filter.to_json(),
        "cursor": record.cursor,
        "head": log.head,
        "lag": max(0, log.head - record.cursor),
        "earliest": log.earliest,
        "expired": record.cursor < log.earliest - 1,
        "created": _utc(record.created),
        "updated": _utc(record.updated),
    }


def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(document), status, headers, media_type="application/json")


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _log(request: Request) -> EventLog:
    log: EventLog = request.app.state.log
    return log


def _registry(request: Request) -> SubscriptionRegistry:
    registry: SubscriptionRegistry = request.app.state.subscriptions
    return registry
