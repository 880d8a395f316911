"""Follow a feed's SSE stream from Python, resuming by itself after disconnects.

>>> for event in follow("http://127.0.0.1:8000", {"type": ["order.*"]}, after=0):
...     print(event["sequence"], event["type"])

The stream reports a cursor with every message, including a first message
without data that carries the start cursor. After a dropped connection, a
timeout or a 5xx response, `follow` reconnects with that cursor in
`Last-Event-ID`, so no event is lost or delivered twice, and it waits longer
after each failed attempt. A 4xx response is not retried: it raises
`StreamRejected` with the problem details.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx
import orjson
from httpx_sse import SSEError, connect_sse

logger = logging.getLogger(__name__)

STREAM_PATH = "/events/stream"
# The server sends a heartbeat at least every 15 seconds, so a connection
# silent for three intervals is treated as dead.
READ_TIMEOUT_SECONDS = 45.0
CONNECT_TIMEOUT_SECONDS = 10.0
# Used until the server's first `retry:` field arrives.
INITIAL_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0


class StreamRejected(Exception):
    """The server rejected the stream request with a 4xx problem, which retrying cannot fix."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        detail = problem.get("detail") or problem.get("title") or "no details"
        super().__init__(f"The server rejected the stream with {status}: {detail}")


def follow(
    url: str,
    filters: Mapping[str, Sequence[str]] | None = None,
    after: int | None = None,
    token: str | None = None,
    *,
    since: str | None = None,
    max_retry_seconds: float = MAX_RETRY_SECONDS,
    retry_first_connect: bool = True,
    on_reconnect: Callable[[int | None, float, str], None] | None = None,
    on_connect: Callable[[int | None], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the events of the feed at server `url` in sequence order, without end.

    `filters` maps attribute names to patterns, as in the page API
    (`{"type": ["order.*"]}`). `after` is the cursor to start from; None
    starts at the head, with only new events. `token` is sent as a bearer
    token. Reconnects wait from the server's `retry:` time, doubling up to
    `max_retry_seconds`. Raises `StreamRejected` on a 4xx response.

    `since`, an RFC 3339 time, starts at the first event recorded at or after
    it instead of `after`. With `retry_first_connect` False, a first
    connection that fails raises `StreamUnavailable` instead of retrying,
    since a server that never answered is more likely a wrong URL.
    `on_reconnect(cursor, delay_seconds, reason)` is called before each wait,
    and `on_connect(cursor)` after each connection the server accepted.
    """
    parameters = [
        (name, pattern) for name, patterns in (filters or {}).items() for pattern in patterns
    ]
    headers = {"Accept": "text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    timeout = httpx.Timeout(CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS)
    cursor = after
    if since is not None and after is None:
        parameters.append(("since", since))
    retry_seconds = INITIAL_RETRY_SECONDS
    delay = retry_seconds
    connected = False

    with httpx.Client(base_url=url, headers=headers, timeout=timeout) as client:
        while True:
            request_headers = {} if cursor is None else {"Last-Event-ID": str(cursor)}
            try:
                with connect_sse(
                    client, "GET", STREAM_PATH, params=parameters, headers=request_headers
                ) as source:
                    _check_response(source.response)
                    connected = True
                    if on_connect is not None:
                        on_connect(cursor)
                    for message in source.iter_sse():
                        if message.retry is not None:
                            retry_seconds = message.retry / 1000
                        delay = retry_seconds
                        if message.id:
                            cursor = int(message.id)
                            # The cursor replaces the start time on reconnects.
                            parameters = [p for p in parameters if p[0] != "since"]
                        if message.data:
                            yield orjson.loads(message.data)
                reason = "the server ended the stream"
            except (httpx.TransportError, SSEError, _ServerError) as error:
                reason = str(error) or type(error).__name__
                if not connected and not retry_first_connect:
                    raise StreamUnavailable(f"Cannot open the stream at {url}: {reason}") from error

            wait = delay * random.uniform(0.8, 1.2)
            logger.info(
                "Reconnecting to %s after cursor %s in %.1f s: %s", url, cursor, wait, reason
            )
            if on_reconnect is not None:
                on_reconnect(cursor, wait, reason)
            time.sleep(wait)
            delay = min(2 * delay, max_retry_seconds)


class StreamUnavailable(Exception):
    """The first connection to the stream failed, and retrying it was not requested."""


class _ServerError(Exception):
    """A 5xx response: the server may recover, so the request is retried."""


def _check_response(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    response.read()
    try:
        problem = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        problem = {"detail": response.text[:200]}
    if not isinstance(problem, dict):
        problem = {"detail": str(problem)[:200]}
    if response.status_code >= 500:
        raise _ServerError(f"{response.status_code}: {problem.get('detail', 'no details')}")
    raise StreamRejected(response.status_code, problem)
