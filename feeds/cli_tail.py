"""`eventlog tail`: print a feed page by page, and with `--follow` follow it live over SSE.

Pages come from `GET /events`; each response's `Link: <…>; rel="next"`
header is the next request, so the cursor is always the server's. Without
`--follow` the command stops at a page that is empty and does not move the
cursor: an empty page that moves it means the server skipped events that
do not match the filter, and more may follow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import ciso8601
import click
import httpx
import orjson
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from feeds.cli_client import (
    RequestFailed,
    Server,
    ServerUnavailable,
    rejection,
    send,
    server_options,
    unexpected,
)
from feeds.stream_client import StreamRejected, StreamUnavailable, follow

# The page API's maximum of events per page.
MAX_PAGE_LIMIT = 1000
# How much longer than the server's wait the client waits for the response.
RESPONSE_GRACE_SECONDS = 30.0
# Reconnects of `--follow` wait at most this long.
MAX_RETRY_SECONDS = 30.0

# Query parameters of the page API that are not attribute filters.
PAGE_PARAMETERS = ("after", "since", "limit", "wait")
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")

TABLE_COLUMNS = ("sequence", "recordedtime", "type", "source", "subject")


class EventOutput(Protocol):
    """A destination for the events of each page that `tail` reads."""

    def write(self, events: Sequence[dict[str, Any]]) -> None: ...


class JsonLinesOutput:
    """Each event as one line of JSON on standard output, flushed at once for pipes."""

    def write(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            click.echo(orjson.dumps(event).decode())


class TableOutput:
    """The events as table rows; the header comes once, before the first page.

    Every page is its own table with the same fixed column widths, so rows
    appear as pages arrive and still line up.
    """

    def __init__(self) -> None:
        self._console = Console()
        self._header_printed = False

    def write(self, events: Sequence[dict[str, Any]]) -> None:
        if not events and self._header_printed:
            return
        table = Table(
            box=box.SIMPLE_HEAD,
            show_header=not self._header_printed,
            show_edge=False,
            pad_edge=False,
            expand=True,
        )
        table.add_column("sequence", justify="right", width=10, no_wrap=True)
        table.add_column("recordedtime", width=27, no_wrap=True)
        for name in ("type", "source", "subject"):
            table.add_column(name, ratio=1, overflow="fold")
        for event in events:
            table.add_row(*(_cell(event.get(name)) for name in TABLE_COLUMNS))
        self._console.print(table)
        self._header_printed = True


def _cell(value: Any) -> Text:
    # Text, unlike str, shows brackets in event data as they are instead of as Rich markup.
    return Text("" if value is None else str(value))


@dataclass(frozen=True, slots=True)
class Page:
    """The events of one response, and the URL of the next page."""

    events: list[dict[str, Any]]
    next_url: httpx.URL


def first_page_url(
    server: Server,
    after: int | None,
    since: str | None,
    limit: int | None,
    filters: list[tuple[str, str]],
    wait: int | None,
) -> httpx.URL:
    """Return the URL of the first page: the start, the page size, the filters and the wait."""
    parameters: list[tuple[str, str]] = list(filters)
    if since is not None:
        parameters.append(("since", since))
    else:
        parameters.append(("after", str(after or 0)))
    if limit is not None:
        parameters.append(("limit", str(limit)))
    if wait is not None:
        parameters.append(("wait", str(wait)))
    return server.endpoint("/events").copy_with(params=parameters)


def cursor_of(url: httpx.URL) -> int | None:
    """Return the `after` cursor of a page URL, or None when it starts at a time."""
    after = url.params.get("after")
    return int(after) if after is not None and after.isdigit() else None


def read_page(client: httpx.Client, server: Server, url: httpx.URL) -> Page:
    """Request one page and return its events and next URL.

    Raises `ServerUnavailable` when the server cannot be reached or
    responds with a 5xx status, and `RequestFailed` for any other error
    response, for a body that is not an array of events, and for a missing
    or foreign `Link` header.
    """
    response = send(client, client.build_request("GET", url))
    if not response.is_success:
        raise rejection(response, f"GET {response.url.path}?{response.url.query.decode()}")

    try:
        events = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        events = None
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        raise unexpected(response, "a JSON array of events")

    link = response.links.get("next", {}).get("url")
    if link is None:
        raise unexpected(response, 'a Link header with rel="next"')
    next_url = response.url.join(link)
    if not server.has_origin_of(next_url):
        # Following it would send the token to another server.
        raise RequestFailed(
            f"The server's next page link {str(next_url)!r} leads to another server than "
            f"{server.url}; stopping. Check the server's proxy configuration."
        )
    return Page(events, next_url)


def read_feed(server: Server, url: httpx.URL, output: EventOutput, max_events: int | None) -> int:
    """Print pages from `url` on until the feed has no more events; return how many were printed."""
    printed = 0
    with server.client(RESPONSE_GRACE_SECONDS) as client:
        while True:
            page = read_page(client, server, url)
            events = _take(page.events, max_events, printed)
            output.write(events)
            printed += len(events)

            if max_events is not None and printed >= max_events:
                return printed
            if not page.events and cursor_of(page.next_url) == cursor_of(url):
                return printed
            url = page.next_url


def follow_feed(server: Server, url: httpx.URL, output: EventOutput, max_events: int | None) -> int:
    """Print the feed's events from `url`'s start on, then new ones live, until `max_events`.

    The events come from the server's SSE stream, history first. After a
    lost connection or a 5xx response, a notice goes to standard error and
    the stream resumes from the last cursor with `Last-Event-ID`, so no event
    is skipped or repeated. Returns how many events were printed.
    KeyboardInterrupt passes through to the caller.
    """
    parameters = url.params
    filters = {
        name: parameters.get_list(name) for name in parameters if name not in PAGE_PARAMETERS
    }

    reconnecting = False

    def notify(cursor: int | None, delay: float, reason: str) -> None:
        nonlocal reconnecting
        reconnecting = True
        position = "the start" if cursor is None else f"after sequence {cursor}"
        click.echo(
            f"The stream from {server.url} ended ({reason}). Reconnecting in {delay:.1f} s "
            f"from {position}.",
            err=True,
        )

    def connected(cursor: int | None) -> None:
        nonlocal reconnecting
        if reconnecting:
            position = "the start" if cursor is None else f"after sequence {cursor}"
            click.echo(f"Reconnected to {server.url}; continuing from {position}.", err=True)
        reconnecting = False

    printed = 0
    events = follow(
        str(server.url),
        filters,
        after=cursor_of(url),
        token=server.token,
        since=parameters.get("since"),
        max_retry_seconds=MAX_RETRY_SECONDS,
        retry_first_connect=False,
        on_reconnect=notify,
        on_connect=connected,
    )
    try:
        for event in events:
            if max_events is not None and printed >= max_events:
                break
            output.write([event])
            printed += 1
            if max_events is not None and printed >= max_events:
                break
    except StreamUnavailable as error:
        raise ServerUnavailable(
            f"{error}. Start a server with 'eventlog serve', or give the address of a running "
            "one with --url."
        ) from error
    except StreamRejected as error:
        raise RequestFailed(str(error)) from error
    return printed


def _take(
    events: list[dict[str, Any]], max_events: int | None, printed: int
) -> list[dict[str, Any]]:
    if max_events is None:
        return events
    return events[: max_events - printed]


def _position(url: httpx.URL) -> str:
    cursor = cursor_of(url)
    if cursor is None:
        return f"the time {url.params.get('since')}"
    return f"after sequence {cursor}"


def _check_since(
    context: click.Context, parameter: click.Parameter, value: str | None
) -> str | None:
    if value is None:
        return None
    try:
        ciso8601.parse_rfc3339(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an RFC 3339 time with an offset, such as 2024-05-01T12:00:00Z."
        ) from None
    return value


def _check_values(
    context: click.Context, parameter: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    for value in values:
        if value == "":
            raise click.BadParameter("An empty value matches nothing; give a value, or 'prefix*'.")
    return values


def _parse_filters(
    context: click.Context, parameter: click.Parameter, values: tuple[str, ...]
) -> list[tuple[str, str]]:
    filters: list[tuple[str, str]] = []
    for text in values:
        name, equals, value = text.partition("=")
        if not equals or not value:
            raise click.BadParameter(f"{text!r} is not NAME=VALUE, such as resource=urn:altinn:*.")
        if name in PAGE_PARAMETERS:
            raise click.BadParameter(
                f"{name!r} is not an attribute; use --{name} instead of --filter."
            )
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise click.BadParameter(
                f"{name!r} is not a CloudEvents attribute name, which has only the lowercase "
                "letters a-z and the digits 0-9."
            )
        filters.append((name, value))
    return filters


@click.command()
@click.option(
    "--after", type=click.IntRange(min=0), help="Start after this sequence [default: 0, the start]."
)
@click.option(
    "--since",
    callback=_check_since,
    help="Start at the first event recorded at or after this RFC 3339 time.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_PAGE_LIMIT),
    help=f"Events per request, 1 to {MAX_PAGE_LIMIT} [default: the server's, 100].",
)
@click.option(
    "--type",
    "types",
    multiple=True,
    callback=_check_values,
    help="Only events of this type; 'v*' matches a prefix.",
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    callback=_check_values,
    help="Only events from this source; 'v*' matches a prefix.",
)
@click.option(
    "--subject",
    "subjects",
    multiple=True,
    callback=_check_values,
    help="Only events about this subject; 'v*' matches a prefix.",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="NAME=VALUE",
    callback=_parse_filters,
    help="Only events whose attribute NAME is VALUE; 'v*' matches a prefix.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each event as one line of JSON.")
@click.option(
    "--max-events", type=click.IntRange(min=1), help="Stop after printing this many events."
)
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new events until interrupted.")
@server_options
def tail(
    server: Server,
    after: int | None,
    since: str | None,
    limit: int | None,
    types: tuple[str, ...],
    sources: tuple[str, ...],
    subjects: tuple[str, ...],
    filters: list[tuple[str, str]],
    as_json: bool,
    max_events: int | None,
    follow: bool,
) -> None:
    """Print the events of the log that match the filters, from the start or a cursor.

    Repeating an option matches any of its values; different options must
    all match. Without --follow, the command stops when no more events
    match; with --follow, it waits for new events until Ctrl-C.

    \b
    Example:
      eventlog tail --type 'order.*' --after 1200 --follow --json
    """
    if after is not None and since is not None:
        raise click.UsageError("Give --after or --since, not both.")

    attribute_filters = (
        [("type", value) for value in types]
        + [("source", value) for value in sources]
        + [("subject", value) for value in subjects]
        + filters
    )
    url = first_page_url(server, after, since, limit, attribute_filters, None)
    output: EventOutput = JsonLinesOutput() if as_json else TableOutput()

    try:
        if follow:
            follow_feed(server, url, output, max_events)
        else:
            read_feed(server, url, output, max_events)
    except KeyboardInterrupt:
        # Ctrl-C is the usual way to stop reading; it is not a failure.
        return
