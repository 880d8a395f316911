"""uvicorn's httptools protocol with a size limit on request heads and timeouts on slow requests.

uvicorn with httptools bounds neither the request line and headers nor the
time a client takes to send them. One client could make the server buffer
a header of any size, or hold a connection open forever by sending nothing
or a byte at a time. `BoundedHttpToolsProtocol` adds three limits:

- a request line plus headers over `max_header_bytes` gets 431 (or 414 when
  the request line alone is that long), and no more than the limit is held;
- a request head not complete within `header_timeout` seconds gets 408;
- a request body that pauses longer than `body_timeout` seconds gets 408.

The timeouts stop at the last byte of a request, so they do not cut a
long-poll or a stream that the server keeps open, unless the client starts
another request on that connection and leaves it incomplete.

`eventlog serve` passes `bounded_protocol(...)` to uvicorn. With uvicorn's
own command, use `--http feeds.server:EnvironmentProtocol`, which reads the
limits from `EVENTLOG_MAX_HEADER_BYTES`, `EVENTLOG_HEADER_TIMEOUT_SECONDS`
and `EVENTLOG_BODY_TIMEOUT_SECONDS`.

This subclass relies on the internals of uvicorn 0.55.0's
`uvicorn.protocols.http.httptools_impl`: the parser callbacks, `cycle`,
`flow`, `server_state` and `STATUS_LINE`. Check them before upgrading.
Where httptools is missing, this module cannot be imported, and
`eventlog serve` falls back to uvicorn's h11 protocol, which enforces the
size limit with a 400 and neither timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from feeds.problems import (
    PROBLEM_MEDIA_TYPE,
    Problem,
    body_timeout,
    header_timeout,
    header_too_large,
    too_many_header_fields,
)
from feeds.settings import (
    BODY_TIMEOUT_VARIABLE,
    DEFAULT_BODY_TIMEOUT_SECONDS,
    DEFAULT_HEADER_TIMEOUT_SECONDS,
    DEFAULT_MAX_HEADER_BYTES,
    HEADER_TIMEOUT_VARIABLE,
    MAX_HEADER_BYTES_VARIABLE,
    MAX_HEADER_FIELDS,
)

logger = logging.getLogger(__name__)

# After a problem response, the server reads and discards what the client
# still sends for up to this many seconds before it closes the connection.
# Closing a socket with unread data sends a TCP reset, which can destroy the
# response before the client reads it. nginx's lingering close does the same.
LINGER_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Bounds on the size of a request head and on how slowly a request may arrive."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    # Header fields of one request, as Apache's LimitRequestFields defaults
    # to. Without it, 64 KiB of empty headers became about 13,000 header
    # tuples, which took 1.5 MiB per held long-poll.
    max_header_fields: int = MAX_HEADER_FIELDS
    # Seconds from the connection's start, or from the first byte of a later
    # request, until the request line and headers are complete.
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    # Seconds a request body may pause between two reads.
    body_timeout: float = DEFAULT_BODY_TIMEOUT_SECONDS


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """An `HttpToolsProtocol` that enforces `limits` on every request it reads."""

    limits: ClassVar[RequestLimits] = RequestLimits()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # True from the connection's start and from the end of each request
        # until the next request's headers are complete.
        self._reading_head = True
        # Bytes received of the head being read, and of its URL.
        self._head_bytes = 0
        self._url_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        limit = self.limits.max_header_bytes
        while self._reading_head and self._head_bytes + len(data) > limit:
            # Feed only the bytes that fit, because the head must end within them.
            room = limit - self._head_bytes
            self._head_bytes = limit
            super().data_received(data[:room])
            if self._stopped_reading():
                return
            # on_headers_complete resets the count, so a full count means no end yet.
            if self._head_bytes == limit:
                self._reject_head()
                return
            data = data[room:]

        # NOTE: A head that begins in the same read as the end of the previous
        # request is counted from the next read on, so it can exceed the
        # limit by up to one read of the socket.
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if not self._stopped_reading():
            self._restart_timers()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._url_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._lingering:
            return
        if len(self.headers) >= self.limits.max_header_fields:
            self._reject_fields()
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        # After a rejection the parser goes on through the rest of the read,
        # which must reach neither the application nor uvicorn's own checks.
        if self._lingering:
            return
        self._reading_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._lingering:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._lingering:
            return
        super().on_message_complete()
        self._reading_head = True
        self._cancel_body_timer()

    def handle_websocket_upgrade(self) -> None:
        # The connection belongs to the WebSocket protocol from here on.
        self._cancel_timers()
        super().handle_websocket_upgrade()

    def shutdown(self) -> None:
        if self._lingering:
            self.transport.close()
        else:
            super().shutdown()

    def _restart_timers(self) -> None:
        """Start the timer that fits what is still missing after a read.

        Besides the head timer of a new connection, only a request that
        arrives in pieces starts a timer. The head timer of a later request
        starts at its first byte, because uvicorn's keep-alive timeout covers
        the idle time before it.
        """
        if self._reading_head:
            if self._head_bytes and self._head_timer is None:
                self._head_timer = self.loop.call_later(
                    self.limits.header_timeout, self._head_timed_out
                )
        else:
            self._cancel_body_timer()
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._stopped_reading():
            return
        seconds = self.limits.header_timeout
        logger.info(
            "Closing the connection from %s: its request head timed out after %s s",
            self._client_address(),
            seconds,
        )
        self._close_with(header_timeout(seconds))

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self._stopped_reading():
            return
        if self.flow.read_paused:
            # The server stopped reading until the application takes the
            # body so far, so the client is not the one that is slow.
            self._restart_timers()
            return
        seconds = self.limits.body_timeout
        logger.info(
            "Closing the connection from %s: its request body timed out after a pause of %s s",
            self._client_address(),
            seconds,
        )
        self._close_with(body_timeout(seconds))

    def _reject_head(self) -> None:
        limit = self.limits.max_header_bytes
        url_too_long = self._request_line_unfinished()
        logger.info(
            "Closing the connection from %s: its request %s exceeds %d bytes",
            self._client_address(),
            "line" if url_too_long else "head",
            limit,
        )
        self._close_with(header_too_large(limit, url_too_long=url_too_long))

    def _reject_fields(self) -> None:
        limit = self.limits.max_header_fields
        logger.info(
            "Closing the connection from %s: its request has more than %d header fields",
            self._client_address(),
            limit,
        )
        self._close_with(too_many_header_fields(limit))

    def _request_line_unfinished(self) -> bool:
        """Return True if the head being read has not reached the end of its request line.

        Every byte of a head is part of the URL but the method, the spaces,
        the version and the line endings. Empty lines before a request line
        count as well, so a few of them make this return False.
        """
        if not self._url_bytes:
            return False
        other_bytes = self._head_bytes - self._url_bytes
        return other_bytes < len(self.parser.get_method()) + len(b"  HTTP/1.1\r\n")

    def _close_with(self, problem: Problem) -> None:
        """Send `problem` if no other response is under way, then close the connection.

        A problem with a head is sent unless the response to an earlier
        request is still under way. A problem with a body is sent only if the
        response to that request has not started. Otherwise the connection
        just closes.
        """
        self._cancel_timers()
        cycle = self.cycle
        if self._reading_head:
            can_respond = cycle is None or cycle.response_complete
        else:
            can_respond = not cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The application's receive() returns a disconnect, and its send() does nothing.
            cycle.disconnected = True
            cycle.message_event.set()
        if not can_respond:
            self.transport.close()
            return

        self.transport.write(self._problem_response(problem))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._lingering = True
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _problem_response(self, problem: Problem) -> bytes:
        body = orjson.dumps(problem.body())
        lines = [STATUS_LINE[problem.status]]
        headers = [
            *self.server_state.default_headers,
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
        return b"".join([*lines, b"\r\n", body])

    def _stopped_reading(self) -> bool:
        """Return True once the connection is closing or belongs to another protocol."""
        return (
            self._lingering
            or self.transport.is_closing()
            or self.transport.get_protocol() is not self
        )

    def _client_address(self) -> str:
        if self.client is None:
            return "an unknown address"
        host, port = self.client
        return f"{host}:{port}"

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()


def bounded_protocol(limits: RequestLimits) -> type[BoundedHttpToolsProtocol]:
    """Return a subclass of `BoundedHttpToolsProtocol` with `limits`, for uvicorn's `http=`."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})


def limits_from_environment(environment: Mapping[str, str] | None = None) -> RequestLimits:
    """Read the request limits from `EVENTLOG_*` variables; an unset one keeps its default.

    Raises RuntimeError for a value that is not a positive number.

    >>> limits_from_environment({"EVENTLOG_MAX_HEADER_BYTES": "8192"}).max_header_bytes
    8192
    """
    if environment is None:
        environment = os.environ
    return RequestLimits(
        max_header_bytes=int(
            _positive(environment, MAX_HEADER_BYTES_VARIABLE, int, DEFAULT_MAX_HEADER_BYTES)
        ),
        header_timeout=_positive(
            environment, HEADER_TIMEOUT_VARIABLE, float, DEFAULT_HEADER_TIMEOUT_SECONDS
        ),
        body_timeout=_positive(
            environment, BODY_TIMEOUT_VARIABLE, float, DEFAULT_BODY_TIMEOUT_SECONDS
        ),
    )


def _positive(
    environment: Mapping[str, str], variable: str, kind: type[int | float], default: float
) -> float:
    text = environment.get(variable)
    if text is None:
        return default
    try:
        value: float = kind(text)
    except ValueError:
        value = 0
    if not 0 < value < float("inf"):
        unit = "whole number" if kind is int else "number"
        raise RuntimeError(f"Set {variable} to a positive {unit}, not {text!r}.")
    return value


def __getattr__(name: str) -> type[BoundedHttpToolsProtocol]:
    """Build `EnvironmentProtocol`, for `uvicorn --http feeds.server:EnvironmentProtocol`.

    The environment is read when uvicorn looks the name up at startup, so an
    invalid value stops uvicorn at once, and `eventlog serve`, which imports
    this module too, reads no variable.
    """
    if name == "EnvironmentProtocol":
        return bounded_protocol(limits_from_environment())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
