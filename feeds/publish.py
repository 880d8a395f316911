"""`POST /events`: decode a request in structured, batched or binary mode and append it.

The mode follows `Content-Type` as the CloudEvents HTTP binding says:
`application/cloudevents+json` is one event, `application/cloudevents-batch+json`
an array, any request with a `ce-specversion` header is binary mode, and
plain `application/json` takes an object as one event and an array as a
batch. Every mode produces JSON event objects that `eventlog.parse_event`
validates, so all modes follow one set of rules.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from starlette.requests import Request
from starlette.responses import Response

from eventlog import Event, EventLog, parse_batch, parse_event
from eventlog.errors import AttributeProblem, InvalidEvent
from feeds.access import audit_record, authenticate, deny, require
from feeds.grants import Principal
from feeds.problems import Problem, bad_request

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
BATCH_MEDIA_TYPE = BATCH

_JSON_MEDIA_TYPE = re.compile(r"(application|text)/([a-z0-9.+-]+\+)?json")
_TEXT_MEDIA_TYPE = re.compile(r"text/.*|application/([a-z0-9.+-]+\+)?xml")
# A JSON escape of a UTF-16 surrogate code unit, \uD800 to \uDFFF.
# Twenty digits in a row: the shortest text that may be an integer beyond 64 bits.
_LONG_DIGITS = re.compile(rb"\d{20,}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


async def publish(request: Request) -> Response:
    """Validate and append the request's events, and respond once they are on disk."""
    log: EventLog = request.app.state.log
    settings = request.app.state.settings
    principal = authenticate(request, "publish")
    require(request, principal, "publish", "publish")
    body = await read_body(request, settings.max_request_bytes)
    media_type = _media_type(request.headers.get("content-type"))

    if media_type == STRUCTURED:
        events = [parse_event(_object(_decode_json(body)), 0, settings.max_event_bytes)]
        batch = False
    elif media_type == BATCH:
        events = parse_batch(_array(_decode_json(body)), settings.max_event_bytes)
        batch = True
    elif "ce-specversion" in request.headers:
        events = [parse_event(binary_event(request, body), 0, settings.max_event_bytes)]
        batch = False
    elif media_type == JSON:
        value = _decode_json(body)
        batch = isinstance(value, list)
        if batch:
            events = parse_batch(value, settings.max_event_bytes)
        else:
            events = [parse_event(_object(value), 0, settings.max_event_bytes)]
    else:
        raise _unsupported(request.headers.get("content-type"))

    _check_grants(request, principal, events)
    appended = await log.append(events, audit_record(request, principal.name, "publish", 201))
    if batch:
        duplicates = sum(1 for a in appended if a.duplicate)
        status = 200 if duplicates == len(appended) else 201
        document: dict[str, Any] = {
            "sequences": [a.sequence for a in appended],
            "duplicates": duplicates,
        }
        return Response(orjson.dumps(document), status, media_type=JSON)

    [single] = appended
    status = 200 if single.duplicate else 201
    return Response(orjson.dumps({"sequence": single.sequence}), status, media_type=JSON)


def _check_grants(request: Request, principal: Principal, events: list[Event]) -> None:
    """Raise 403 naming every event that none of the caller's publish grants covers."""
    denied = [i for i, event in enumerate(events) if not principal.may_publish(event.attributes())]
    if not denied:
        return
    shown = ", ".join(str(i) for i in denied[:20]) + (", …" if len(denied) > 20 else "")
    publish_grants = (
        ", ".join(repr(grant.text) for grant in principal.grants if grant.action == "publish")
        or "none"
    )
    deny(
        request,
        principal,
        "publish",
        f"The token {principal.name!r} may not publish event {shown}: no publish grant "
        "matches its attributes. Nothing was appended.",
        errors=[
            {
                "index": i,
                "attribute": "source",
                "message": (
                    f"No publish grant of this token matches the event, whose source is "
                    f"{events[i].source!r}; its publish grants are {publish_grants}."
                ),
            }
            for i in denied
        ],
    )


async def read_body(request: Request, limit: int) -> bytes:
    """Read the request body, rejecting it with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def binary_event(request: Request, body: bytes) -> dict[str, Any]:
    """Build the JSON event object of a binary-mode request from its headers and body."""
    event: dict[str, Any] = {}
    problems: list[AttributeProblem] = []
    for raw_name, raw_value in request.headers.raw:
        name = raw_name.decode("latin-1").lower()
        if not name.startswith("ce-"):
            continue
        attribute = name[3:]
        if attribute in ("data", "data_base64"):
            problems.append(
                AttributeProblem(
                    0, attribute, f"In binary mode the data is the body, not a {name!r} header."
                )
            )
            continue
        if attribute in event:
            problems.append(
                AttributeProblem(0, attribute, f"The header {name!r} appears more than once.")
            )
            continue
        try:
            event[attribute] = decode_header_value(raw_value)
        except UnicodeDecodeError:
            problems.append(
                AttributeProblem(
                    0,
                    attribute,
                    f"The header {name!r} is not valid UTF-8 after percent-decoding; "
                    "percent-encode the UTF-8 bytes of the value.",
                )
            )
    if "datacontenttype" in event:
        problems.append(
            AttributeProblem(
                0,
                "datacontenttype",
                "In binary mode the data content type is the Content-Type header, "
                "not a 'ce-datacontenttype' header.",
            )
        )
    if problems:
        raise InvalidEvent(problems)

    content_type = request.headers.get("content-type")
    if content_type is not None:
        event["datacontenttype"] = content_type
    event.update(_binary_data(body, _media_type(content_type)))
    return event


def decode_header_value(raw: bytes) -> str:
    """Decode a `ce-` header value: unquote a quoted string, then percent-decode once as UTF-8."""
    value = raw.strip()
    if len(value) >= 2 and value.startswith(b'"') and value.endswith(b'"'):
        value = re.sub(rb"\\(.)", rb"\1", value[1:-1])
    return unquote_to_bytes(value).decode("utf-8")


def _binary_data(body: bytes, media_type: str | None) -> dict[str, Any]:
    if not body:
        return {}
    if media_type is None or _JSON_MEDIA_TYPE.fullmatch(media_type):
        try:
            data = orjson.loads(body)
            if _LONG_DIGITS.search(body) is not None:
                _check_integers(body)
            return {"data": data}
        except orjson.JSONDecodeError as error:
            if media_type is not None:
                raise InvalidEvent(
                    [AttributeProblem(0, "data", f"The body is not valid JSON: {error}.")]
                ) from error
            # No Content-Type and not JSON: UTF-8 text is a string, as the
            # CloudEvents SDKs send a string's data and read such a body back.
    if media_type is None or _TEXT_MEDIA_TYPE.fullmatch(media_type):
        try:
            return {"data": body.decode("utf-8")}
        except UnicodeDecodeError:
            pass  # Text in another encoding is kept as bytes.
    return {"data_base64": base64.b64encode(body).decode("ascii")}


def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def _decode_json(body: bytes) -> Any:
    """Decode a JSON request body, or raise a 400 problem.

    orjson rejects an unpaired surrogate escape such as `\\ud800`, which RFC
    8259 allows. Such a body is decoded again with the standard library,
    so that validation can name the event and attribute that hold it.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if _SURROGATE_ESCAPE.search(body) is None:
            raise _not_json(error) from error
        try:
            return json.loads(
                body.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite
            )
        except (ValueError, RecursionError):
            raise _not_json(error) from error
    if _LONG_DIGITS.search(body) is not None:
        _check_integers(body)
    return value


def _check_integers(body: bytes) -> None:
    """Raise 400 for an integer outside the 64-bit range, which orjson turns into a float.

    Storing the float would change the publisher's number silently, and JSON
    parsers disagree on such integers anyway, so the publisher is asked to
    send it as a string.
    """
    try:
        json.loads(body.decode("utf-8"), parse_int=_int64)
    except _IntegerOutOfRange as error:
        raise bad_request(
            f"The body holds the integer {error.text[:40]}, outside the 64-bit range "
            "that this log stores exactly; send it as a string."
        ) from None
    except (ValueError, RecursionError):
        return  # orjson parsed it, so the difference is elsewhere and harmless.


class _IntegerOutOfRange(ValueError):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _int64(text: str) -> int:
    number = int(text)
    if not -(2**63) <= number < 2**64:
        raise _IntegerOutOfRange(text)
    return number


def _not_json(error: Exception) -> Problem:
    return bad_request(f"The body is not valid JSON (UTF-8, no unpaired surrogates): {error}.")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is too large for a JSON number")
    return number


def _object(value: Any) -> Any:
    if not isinstance(value, dict):
        raise InvalidEvent(
            [
                AttributeProblem(
                    0,
                    "",
                    "The body must be one event as a JSON object; send an array with "
                    f"Content-Type {BATCH!r}.",
                )
            ]
        )
    return value


def _array(value: Any) -> Any:
    if not isinstance(value, list):
        raise InvalidEvent(
            [
                AttributeProblem(
                    -1,
                    "",
                    "A batch must be a JSON array of events; send one event with "
                    f"Content-Type {STRUCTURED!r}.",
                )
            ]
        )
    return value


def _too_large(size: int, limit: int) -> Problem:
    return Problem(
        413,
        "request-too-large",
        "Request too large",
        f"The request body is {size} bytes or more, over the limit of {limit} bytes; "
        "split the batch into smaller requests.",
        limit=limit,
    )


def _unsupported(content_type: str | None) -> Problem:
    shown = "no Content-Type" if content_type is None else f"Content-Type {content_type!r}"
    return Problem(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        f"Cannot publish a body with {shown}. Use {STRUCTURED!r}, {BATCH!r} or "
        f"{JSON!r}, or binary mode with 'ce-' headers including 'ce-specversion'.",
        headers={"Accept-Post": f"{STRUCTURED}, {BATCH}, {JSON}"},
    )
