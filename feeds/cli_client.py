"""What the client commands share: the server's address, sending requests, and their failures.

Every failure becomes a `click.ClickException` here, so that a command
prints one clean message and never a traceback:

- `InputError` (exit code 2): input that the user can fix, such as a file
  that cannot be read or is not JSON.
- `RequestFailed` (exit code 1): a server that rejects a request or sends a
  response that the client cannot use.
- `ServerUnavailable` (exit code 1): a server that cannot be reached, drops
  the connection, or responds with a 5xx status, so that retrying later may work.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click
import httpx
import orjson

from feeds.settings import (
    ADMIN_TOKEN_FILE,
    DATA_DIR_VARIABLE,
    DEFAULT_URL,
    TOKEN_VARIABLE,
    URL_VARIABLE,
    default_data_dir,
    read_admin_token,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
CONNECT_TIMEOUT_SECONDS = 10.0
# A response body that is not a problem document is quoted up to this many characters.
MAX_QUOTED_BODY = 300


class InputError(click.ClickException):
    """Input that the user can fix. The exit code is 2, as for a usage error."""

    exit_code = 2


class RequestFailed(click.ClickException):
    """A request that the server rejected, or whose response the client cannot use."""

    exit_code = 1


class ServerUnavailable(RequestFailed):
    """A server that cannot be reached or is unavailable right now, so a retry may succeed."""


def _package_version() -> str:
    try:
        return version("eventlog")
    except PackageNotFoundError:
        return "unknown"


USER_AGENT = f"eventlog-cli/{_package_version()}"


@dataclass(frozen=True, slots=True)
class Server:
    """The event log server that a client command talks to, and the token it sends."""

    url: httpx.URL
    token: str | None = field(default=None, repr=False)

    def endpoint(self, path: str) -> httpx.URL:
        """Return the URL of an API path below the server's base URL.

        >>> Server(httpx.URL("http://127.0.0.1:8000/log/")).endpoint("/events")
        URL('http://127.0.0.1:8000/log/events')
        """
        return self.url.copy_with(path=self.url.path.rstrip("/") + path)

    def client(self, read_timeout: float) -> httpx.Client:
        """Open an HTTP client that sends the token, if any, as a bearer token."""
        headers = {"User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        timeout = httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT_SECONDS)
        return httpx.Client(headers=headers, timeout=timeout)

    def has_origin_of(self, url: httpx.URL) -> bool:
        """Return whether `url` has the same scheme, host and port as the server."""
        return (url.scheme, url.host, url.port) == (self.url.scheme, self.url.host, self.url.port)


def _parse_url(context: click.Context, parameter: click.Parameter, value: str) -> httpx.URL:
    example = "such as http://127.0.0.1:8000"
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as error:
        raise click.BadParameter(
            f"{value!r} is not a valid URL ({error}); give one {example}."
        ) from error
    if url.scheme not in ("http", "https") or not url.host:
        raise click.BadParameter(
            f"{value!r} is not an http or https URL with a host; give one {example}."
        )
    if url.query or url.fragment:
        raise click.BadParameter(
            f"{value!r} has a query or fragment; give the server's base URL, {example}."
        )
    return url


def _check_token(
    context: click.Context, parameter: click.Parameter, value: str | None
) -> str | None:
    if not value:
        return None
    # The message never quotes the token, which is a secret.
    if not _is_header_safe(value):
        raise click.BadParameter(
            "The token contains a space, a control character or a non-ASCII character, "
            f"which an HTTP header cannot carry; check --token or {TOKEN_VARIABLE}."
        )
    return value


def server_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--url` and `--token` to a command, which receives them as `server: Server`."""

    @functools.wraps(command)
    def with_server(*args: Any, url: httpx.URL, token: str | None, **kwargs: Any) -> Any:
        # The admin token of a local server goes only to a loopback address,
        # so that a --url of another machine never receives it.
        if token is None and is_loopback(url.host):
            token = _local_admin_token()
        return command(*args, server=Server(url, token), **kwargs)

    add_token = click.option(
        "--token",
        envvar=TOKEN_VARIABLE,
        show_envvar=True,
        callback=_check_token,
        help=f"Bearer token to send in the Authorization header [default: for a loopback --url, "
        f"the {ADMIN_TOKEN_FILE} file in the data folder (${DATA_DIR_VARIABLE}), if there is one].",
    )
    add_url = click.option(
        "--url",
        envvar=URL_VARIABLE,
        show_envvar=True,
        default=DEFAULT_URL,
        show_default=True,
        callback=_parse_url,
        help="Base URL of the event log server.",
    )
    return add_url(add_token(with_server))


def _local_admin_token() -> str | None:
    data_dir = default_data_dir()
    token = read_admin_token(data_dir)
    if token is not None and not _is_header_safe(token):
        raise InputError(
            f"The file {str(data_dir / ADMIN_TOKEN_FILE)!r} does not contain a valid token; "
            f"give one with --token or {TOKEN_VARIABLE}."
        )
    return token


def _is_header_safe(token: str) -> bool:
    # A bearer token is printable ASCII without spaces (RFC 6750, section 2.1).
    return all("!" <= character <= "~" for character in token)


def is_loopback(host: str) -> bool:
    """Return whether a host name or IP address is on this machine's loopback interface."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def send(client: httpx.Client, request: httpx.Request) -> httpx.Response:
    """Send a request and return its response, whatever its status.

    Raises `ServerUnavailable` when the request fails in transport: the
    connection is refused or dropped, or the server does not respond in time.
    """
    try:
        return client.send(request)
    except httpx.ConnectError as error:
        raise ServerUnavailable(
            f"Cannot connect to the event log server at {_origin(request.url)} ({_reason(error)}). "
            f"Start one with 'eventlog serve', or give the address of a running one with "
            f"--url or {URL_VARIABLE}."
        ) from error
    except httpx.TimeoutException as error:
        raise ServerUnavailable(
            f"The request {request.method} {request.url} timed out ({_reason(error)}); "
            "the server may be overloaded, so try again later."
        ) from error
    except httpx.TransportError as error:
        raise ServerUnavailable(
            f"The request {request.method} {request.url} failed before a complete response "
            f"arrived ({_reason(error)})."
        ) from error


@dataclass(frozen=True, slots=True)
class ProblemError:
    """One entry of a problem's `errors` list: which event and attribute, and what is wrong."""

    index: int
    attribute: str
    message: str


@dataclass(frozen=True, slots=True)
class Problem:
    """The error of a response, from its RFC 9457 problem document when it has one."""

    status: int
    title: str
    detail: str
    errors: tuple[ProblemError, ...] = ()

    @classmethod
    def from_response(cls, response: httpx.Response) -> Problem:
        """Read a problem document, or describe a response that is not one."""
        document = _json_object(response)
        title = response.reason_phrase or "HTTP error"
        if document is None:
            return cls(response.status_code, title, _quote_body(response))

        title = str(document.get("title") or title)
        detail = str(document.get("detail") or "")
        errors: list[ProblemError] = []
        for entry in document.get("errors") or []:
            if isinstance(entry, dict) and isinstance(entry.get("index"), int):
                errors.append(
                    ProblemError(
                        entry["index"],
                        str(entry.get("attribute", "")),
                        str(entry.get("message", "")),
                    )
                )
        return cls(response.status_code, title, detail, tuple(errors))

    def summary(self) -> str:
        """Return the status and title, such as "400 Invalid CloudEvent"."""
        return f"{self.status} {self.title}"


def rejection(response: httpx.Response, description: str) -> RequestFailed:
    """Return the exception for an error response to the request that `description` names.

    The message reads like "The server rejected GET /events with 400 Bad
    request: The parameter 'limit' must be ...". A 5xx status, such as
    that of a server that is shutting down, gives `ServerUnavailable`.
    """
    problem = Problem.from_response(response)
    if response.is_server_error:
        message = f"The server failed to handle {description} with {problem.summary()}"
    else:
        message = f"The server rejected {description} with {problem.summary()}"
    if problem.detail:
        message += f": {problem.detail}"
    if response.status_code == 401:
        message += (
            f" Give a token with --token or {TOKEN_VARIABLE}, or, for a server on this "
            f"machine, set {DATA_DIR_VARIABLE} to its data folder, where it wrote "
            f"{ADMIN_TOKEN_FILE} (looked in {str(default_data_dir())!r})."
        )
    if response.is_server_error:
        return ServerUnavailable(message)
    return RequestFailed(message)


def unexpected(response: httpx.Response, expected: str) -> RequestFailed:
    """Return the exception for a success response whose body is not what the API defines."""
    return RequestFailed(
        f"The server at {_origin(response.url)} answered {response.request.method} "
        f"{response.url.path} with {response.status_code} but not with {expected}: "
        f"{_quote_body(response)} Check that --url points to an event log server."
    )


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (PROBLEM_MEDIA_TYPE, "application/json"):
        return None
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _quote_body(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    if not text:
        return "(empty body)"
    if len(text) > MAX_QUOTED_BODY:
        text = text[:MAX_QUOTED_BODY] + "…"
    return repr(text)


def _origin(url: httpx.URL) -> str:
    return str(url.copy_with(path="/", query=None, fragment=None)).rstrip("/")


def _reason(error: Exception) -> str:
    return str(error) or type(error).__name__
