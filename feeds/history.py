"""`POST /query` and `GET /export`: history for analysts, over archived and live events (admin).

`POST /query` runs one read-only SQL statement over the views `events` and
`audit` and responds with JSON, CSV or Parquet by `Accept`. `GET /export` streams
a range of events as an Arrow IPC stream, in the columns of the archive, for
`eventlog export`; reading long ranges in parts keeps every read short.
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import ciso8601
import pyarrow as pa
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from eventlog import EventLog, EventLogError
from eventlog.archive import ARCHIVE_SCHEMA
from feeds.access import audit_record, authenticate, require
from feeds.json_body import read_json_object
from feeds.pages import MAX_SEQUENCE, parse_whole_number
from feeds.problems import Problem, bad_request, shown
from feeds.query_format import (
    CSV_MEDIA_TYPE,
    JSON_MEDIA_TYPE,
    PARQUET_MEDIA_TYPE,
    UnrenderableResult,
    render,
)

logger = logging.getLogger(__name__)

ARROW_STREAM_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
_QUERY_MEDIA_TYPES = (JSON_MEDIA_TYPE, CSV_MEDIA_TYPE, PARQUET_MEDIA_TYPE)

# Response headers of a query: whether rows were cut off, and the cap.
TRUNCATED_HEADER = "Eventlog-Truncated"
MAX_ROWS_HEADER = "Eventlog-Max-Rows"
# Response headers of an export: the range of sequences it contains.
FIRST_SEQUENCE_HEADER = "Eventlog-First-Sequence"
LAST_SEQUENCE_HEADER = "Eventlog-Last-Sequence"

# Events per read of an export; each read is one short transaction.
EXPORT_STEP_EVENTS = 10_000
# The audit record of a query keeps at most this many characters of its SQL.
_AUDITED_SQL_CHARACTERS = 2_000
_EXPORT_PARAMETERS = ("after", "until_sequence", "since", "until")


async def run_query(request: Request) -> Response:
    """Respond with the rows of one read-only SQL query, at most the row cap, as JSON, CSV or Parquet."""
    principal = authenticate(request, "query")
    require(request, principal, "admin", "query")
    media_type = _negotiate(request.headers.get("accept"))
    document = await read_json_object(request, ("sql",))
    sql = document.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise bad_request(
            'The body needs "sql", one SELECT statement such as '
            '{"sql": "SELECT type, count(*) FROM events GROUP BY type"}.',
            member="sql",
        )

    log: EventLog = request.app.state.log
    settings = request.app.state.settings
    detail: dict[str, object] = {"sql": sql[:_AUDITED_SQL_CHARACTERS]}
    try:
        result = await log.query(sql, seconds=settings.query_seconds)
    except EventLogError as error:
        logger.info("Rejected a query of %s: %s", principal.name, error)
        log.record(audit_record(request, principal.name, "query", 400, detail=detail))
        raise
    detail["truncated"] = result.truncated
    log.record(
        audit_record(
            request, principal.name, "query", 200, count=result.table.num_rows, detail=detail
        )
    )

    headers = {
        TRUNCATED_HEADER: "true" if result.truncated else "false",
        MAX_ROWS_HEADER: str(result.max_rows),
        "Vary": "Accept",
    }
    try:
        body = render(result, media_type)
    except UnrenderableResult as error:
        raise bad_request(str(error)) from error
    return Response(body, headers=headers, media_type=media_type)


async def export_events(request: Request) -> Response:
    """Stream the events of a sequence or time range, archived or live, as Arrow IPC."""
    principal = authenticate(request, "export")
    require(request, principal, "admin", "export")
    log: EventLog = request.app.state.log
    after, last = await _export_range(request, log)
    log.record(
        audit_record(
            request,
            principal.name,
            "export",
            200,
            count=max(0, last - after),
            first_sequence=after + 1 if last > after else None,
            last_sequence=last if last > after else None,
        )
    )
    headers = {FIRST_SEQUENCE_HEADER: str(after + 1), LAST_SEQUENCE_HEADER: str(last)}
    return StreamingResponse(
        _arrow_stream(log, after, last), headers=headers, media_type=ARROW_STREAM_MEDIA_TYPE
    )


async def _export_range(request: Request, log: EventLog) -> tuple[int, int]:
    """Return the export's range as (after, last): sequences after `after` up to `last`."""
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in _EXPORT_PARAMETERS:
            raise bad_request(
                f"Unknown parameter {name!r}; GET /export takes {', '.join(_EXPORT_PARAMETERS)}.",
                parameter=name,
            )
        if name in values:
            raise bad_request(f"The parameter {name!r} is given more than once.", parameter=name)
        values[name] = value
    for first, second in (("after", "since"), ("until_sequence", "until")):
        if first in values and second in values:
            raise bad_request(f"Give {first!r} or {second!r}, not both.", parameter=second)

    after = _whole_number(values, "after", 0)
    last = _whole_number(values, "until_sequence", log.head)
    if "since" in values:
        first_sequence = await log.first_recorded_at(_time(values, "since"))
        after = log.head if first_sequence is None else first_sequence - 1
    if "until" in values:
        first_sequence = await log.first_recorded_at(_time(values, "until"))
        last = log.head if first_sequence is None else first_sequence - 1
    return after, max(after, min(last, log.head))


async def _arrow_stream(log: EventLog, after: int, last: int) -> AsyncIterator[bytes]:
    sink = _Chunks()
    writer = pa.ipc.new_stream(sink, ARCHIVE_SCHEMA)
    yield sink.take()
    position = after
    try:
        while position < last:
            end = min(last, position + EXPORT_STEP_EVENTS)
            table = await log.read_range(position, end)
            writer.write_table(table)
            yield sink.take()
            position = end
        writer.close()
        yield sink.take()
    except EventLogError as error:
        # The status line is sent already. Raising again aborts the response
        # before its last chunk, so that the client sees an incomplete transfer.
        logger.warning("Ended an export of %d to %d at %d: %s", after + 1, last, position, error)
        raise


class _Chunks(io.RawIOBase):
    """A write-only file that collects what pyarrow writes, handed out with `take`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        chunk = b"".join(self._parts)
        self._parts.clear()
        return chunk


def _negotiate(accept: str | None) -> str:
    """Return the supported media type that `Accept` prefers; JSON for none or `*/*`."""
    if accept is None or not accept.strip():
        return JSON_MEDIA_TYPE
    best, best_quality = None, 0.0
    for entry in accept.split(","):
        media_range, *parameters = [part.strip() for part in entry.split(";")]
        quality = _quality(parameters)
        for candidate in _QUERY_MEDIA_TYPES:
            if _covers(media_range.lower(), candidate) and quality > best_quality:
                best, best_quality = candidate, quality
    if best is None:
        raise Problem(
            406,
            "not-acceptable",
            "Not acceptable",
            f"The Accept header {accept!r} admits none of the formats of a query result; "
            f"send one of {', '.join(_QUERY_MEDIA_TYPES)}.",
        )
    return best


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def _covers(media_range: str, media_type: str) -> bool:
    if media_range in ("*/*", media_type):
        return True
    kind, _, subtype = media_range.partition("/")
    return subtype == "*" and media_type.startswith(kind + "/")


def _whole_number(values: dict[str, str], name: str, default: int) -> int:
    text = values.get(name)
    if text is None:
        return default
    number = parse_whole_number(text)
    if number is None:
        raise bad_request(
            f"The parameter {name!r} must be a sequence (a whole number from 0 to "
            f"{MAX_SEQUENCE}), not {shown(text)}.",
            parameter=name,
        )
    return number


def _time(values: dict[str, str], name: str) -> datetime:
    try:
        return ciso8601.parse_rfc3339(values[name])
    except ValueError:
        raise bad_request(
            f"The parameter {name!r} must be an RFC 3339 time with an offset, such as "
            f"'2024-05-01T12:00:00Z', not {values[name]!r}.",
            parameter=name,
        ) from None
