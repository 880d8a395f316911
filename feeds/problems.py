"""Problem responses (RFC 9457) for every error the HTTP API returns.

Handlers raise `Problem`, or let an `eventlog` exception through; the
exception handlers installed by `install_handlers` turn both into an
`application/problem+json` response in one place. Problem types are URNs
under `urn:eventlog:problem:`, documented in docs/api.md.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from eventlog import (
    CursorExpired,
    DuplicateConflict,
    EventTooLarge,
    InvalidEvent,
    InvalidFilter,
    LogUnavailable,
)
from eventlog.errors import InvalidFilterExpression, QueryRejected, QueryTimedOut

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:eventlog:problem:"


class Problem(Exception):
    """An error returned as a problem response, with `extra` members added to the body."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        document: dict[str, Any] = {
            "type": _TYPE_PREFIX + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            document["instance"] = instance
        document.update(self.extra)
        return document


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    """Render a problem as an `application/problem+json` response."""
    return Response(
        orjson.dumps(problem.body(instance)),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=problem.headers,
    )


def shown(value: str, limit: int = 60) -> str:
    """Quote a client's value for a message, cut to `limit` characters.

    No message then echoes a huge value back or into the server's log.

    >>> shown("9" * 100, limit=5)
    "'99999'… (100 characters)"
    """
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


def bad_request(detail: str, **extra: Any) -> Problem:
    return Problem(400, "bad-request", "Bad request", detail, **extra)


def header_too_large(limit: int, *, url_too_long: bool) -> Problem:
    """Build the problem for a head over `limit` bytes: 414 for a request line that long, else 431."""
    fix = (
        "the server's operator can raise the limit with `eventlog serve --max-header-bytes` "
        "or EVENTLOG_MAX_HEADER_BYTES."
    )
    if url_too_long:
        detail = (
            f"The request line is longer than the limit of {limit} bytes for the request "
            f"line and headers. Shorten the URL, for example with fewer filter values, or {fix}"
        )
        return Problem(414, "uri-too-long", "URI too long", detail, limit=limit)
    detail = (
        f"The request line and headers are larger than the limit of {limit} bytes. "
        f"Send fewer or shorter headers, or {fix}"
    )
    return Problem(431, "header-too-large", "Request header fields too large", detail, limit=limit)


def too_many_header_fields(limit: int) -> Problem:
    """Build the 431 problem for a request with more than `limit` header fields."""
    detail = (
        f"The request has more than {limit} header fields, the server's limit. Send fewer "
        "headers, for example by combining repeated ones into one comma-separated field."
    )
    return Problem(431, "header-too-large", "Request header fields too large", detail, limit=limit)


def header_timeout(seconds: float) -> Problem:
    """Build the 408 problem for a request line and headers not complete within `seconds`."""
    detail = (
        f"The request line and headers were not complete within {seconds:g} s of the "
        "connection opening or of the request's first byte. Send the whole head at once; "
        "the server's operator can raise the limit with `eventlog serve --header-timeout` "
        "or EVENTLOG_HEADER_TIMEOUT_SECONDS."
    )
    return Problem(408, "request-timeout", "Request timeout", detail, seconds=seconds)


def body_timeout(seconds: float) -> Problem:
    """Build the 408 problem for a request body that paused for `seconds`."""
    detail = (
        f"The request body stopped arriving for {seconds:g} s. Send the body without "
        "pauses; the server's operator can raise the limit with `eventlog serve "
        "--body-timeout` or EVENTLOG_BODY_TIMEOUT_SECONDS."
    )
    return Problem(408, "request-timeout", "Request timeout", detail, seconds=seconds)


def to_problem(error: Exception) -> Problem:
    """Translate an exception of the log into the problem the client receives."""
    if isinstance(error, Problem):
        return error
    if isinstance(error, InvalidEvent):
        return Problem(
            400,
            "invalid-event",
            "Invalid CloudEvent",
            str(error),
            errors=[problem.as_dict() for problem in error.errors],
        )
    if isinstance(error, EventTooLarge):
        return Problem(
            413,
            "event-too-large",
            "Event too large",
            str(error),
            errors=[{"index": error.index, "attribute": "", "message": str(error)}],
            limit=error.limit,
        )
    if isinstance(error, DuplicateConflict):
        return Problem(
            409,
            "duplicate-conflict",
            "Conflicting duplicate event",
            str(error),
            errors=[{"index": error.index, "attribute": "id", "message": str(error)}],
            sequence=error.sequence,
        )
    if isinstance(error, LogUnavailable):
        outcome = (
            "Retry with the same events: those already written get their original sequences."
            if error.maybe_written
            else "Nothing from this request was written; retry later."
        )
        return Problem(
            503,
            "log-unavailable",
            "Log unavailable",
            f"{error} {outcome}",
            headers={"Retry-After": str(error.retry_after)},
        )
    if isinstance(error, CursorExpired):
        return Problem(410, "cursor-expired", "Cursor expired", str(error), earliest=error.earliest)
    if isinstance(error, QueryRejected):
        return Problem(400, "query-rejected", "Query rejected", str(error))
    if isinstance(error, QueryTimedOut):
        # 408 here means that the query ran too long, not that the request arrived slowly.
        return Problem(408, "query-timeout", "Query timed out", str(error), seconds=error.seconds)
    if isinstance(error, InvalidFilterExpression):
        return bad_request(str(error), path=error.path)
    if isinstance(error, InvalidFilter):
        return bad_request(str(error), parameter=error.attribute)
    raise TypeError(f"No problem mapping for {type(error).__name__}") from error


def _respond(request: Request, problem: Problem) -> Response:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(str(problem.status)).inc()
    return problem_response(problem, request.url.path)


async def _handle_known(request: Request, error: Exception) -> Response:
    problem = to_problem(error)
    if problem.status >= 500:
        logger.warning(
            "%s %s failed with %d: %s",
            request.method,
            request.url.path,
            problem.status,
            problem.detail,
        )
    return _respond(request, problem)


async def _handle_http(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    title = titles.get(error.status_code, "HTTP error")
    headers = dict(error.headers or {})
    if error.status_code == 404:
        detail = f"No resource at {request.url.path!r}; see /openapi.json for the endpoints."
    elif error.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
        detail = (
            f"{request.method} is not allowed on {request.url.path!r}; "
            f"use {headers['Allow']}."
        )
    else:
        detail = str(error.detail)
    problem = Problem(error.status_code, title.lower().replace(" ", "-"), title, detail, headers)
    return _respond(request, problem)


def _allowed_methods(request: Request) -> str:
    """List the methods of every route on the request's path, for a 405's Allow header.

    Starlette answers 405 from the first route whose path matches, with that
    route's methods only, but a path such as /events has one route per method.
    """
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _handle_disconnect(request: Request, error: Exception) -> Response:
    # The client closed the connection, or sent a body that the HTTP parser
    # rejected, before the body was complete. Nothing was appended, and the
    # response goes nowhere, but it keeps the error out of the 500 handler.
    client = request.client.host if request.client else "unknown"
    logger.info(
        "%s %s from %s ended before its body was complete", request.method, request.url.path, client
    )
    problem = bad_request("The connection ended before the request body was complete.")
    return _respond(request, problem)


async def _handle_unexpected(request: Request, error: Exception) -> Response:
    logger.exception("Unhandled error in %s %s", request.method, request.url.path)
    problem = Problem(
        500,
        "internal-error",
        "Internal server error",
        "The server failed to handle this request; the error is in its log.",
    )
    return _respond(request, problem)


def install_handlers(app: Starlette) -> None:
    for kind in (
        Problem,
        InvalidEvent,
        EventTooLarge,
        DuplicateConflict,
        LogUnavailable,
        CursorExpired,
        InvalidFilter,
        QueryRejected,
        QueryTimedOut,
    ):
        app.add_exception_handler(kind, _handle_known)
    app.add_exception_handler(HTTPException, _handle_http)
    app.add_exception_handler(ClientDisconnect, _handle_disconnect)
    app.add_exception_handler(Exception, _handle_unexpected)
