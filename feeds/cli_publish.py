"""`eventlog publish`: publish the events of a JSON or JSON Lines file in batches.

The whole input is read and decoded before the first request, so input
that is not JSON stops the command with exit code 2 and nothing published.
Events go to `POST /events` as `application/cloudevents-batch+json`, in
batches that the server appends all or nothing. When the server rejects a
batch, the message maps each event index of the batch back to the input:
a line number for JSON Lines, an array index for a JSON array.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from feeds.cli_client import (
    InputError,
    Problem,
    RequestFailed,
    Server,
    rejection,
    send,
    server_options,
    unexpected,
)

JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
BATCH_MEDIA_TYPE = "application/cloudevents-batch+json"

# A batch stays below both limits, which keeps each commit short and each
# body far below the server's default request limit of 16 MiB.
BATCH_EVENT_LIMIT = 500
BATCH_BYTE_LIMIT = 4 * 1024 * 1024

# Inputs with more events than this show a progress bar on a terminal.
PROGRESS_THRESHOLD = 1000
# A batch is committed to disk before the server responds, so allow for a slow disk.
PUBLISH_TIMEOUT_SECONDS = 120.0
# A rejection lists at most this many of the problems the server found.
MAX_LISTED_PROBLEMS = 10


@dataclass(frozen=True, slots=True)
class InputEvent:
    """One event of the input, encoded as JSON, and where it is in the input."""

    encoded: bytes
    # "line 7" for JSON Lines, "index 3" for a JSON array, "" for a single JSON object.
    position: str


@dataclass(frozen=True, slots=True)
class EventInput:
    """The events of one input file, in input order."""

    name: str
    events: list[InputEvent]

    def locate(self, event: InputEvent) -> str:
        """Return where an event is, such as "events.jsonl line 7"."""
        return f"{self.name} {event.position}".rstrip()


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive events of the input sent in one request; `start` is the first one's index."""

    start: int
    events: list[InputEvent]


@dataclass(slots=True)
class PublishSummary:
    """The server's responses for the whole input, added up."""

    events: int = 0
    duplicates: int = 0
    sequences: list[int] = field(default_factory=list)

    @property
    def published(self) -> int:
        """The number of events that the log appended, not counting duplicates."""
        return self.events - self.duplicates

    def as_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "published": self.published,
            "duplicates": self.duplicates,
            "first_sequence": min(self.sequences, default=None),
            "last_sequence": max(self.sequences, default=None),
        }


def read_input(path: str) -> EventInput:
    """Read and decode the events of a file, or of standard input for "-".

    Raises `InputError` when the input cannot be read, is empty, or is not
    JSON: a document with one event object or an array of events, or JSON
    Lines with one event per line.
    """
    if path == "-":
        name, suffix = "standard input", ""
        if sys.stdin.isatty():
            click.echo("Reading events from standard input; end with Ctrl-D.", err=True)
        data = sys.stdin.buffer.read()
    else:
        name, suffix = path, Path(path).suffix.lower()
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise InputError(
                f"Cannot read {path!r}: {error.strerror or error}. Give the path of a JSON "
                "or JSON Lines file, or '-' for standard input."
            ) from error
    return EventInput(name, parse_input(name, data, suffix))


def parse_input(name: str, data: bytes, suffix: str) -> list[InputEvent]:
    """Decode input as JSON Lines or as one JSON document, by file suffix or else by content.

    Without a telling suffix, input that is not one JSON document but whose
    first line is JSON on its own is JSON Lines.
    """
    # orjson rejects a byte order mark, which some editors write.
    data = data.removeprefix(b"\xef\xbb\xbf")
    if not data.strip():
        raise InputError(
            f"{name} is empty; give one event object, an array of events, or one event per line."
        )

    if suffix in JSON_LINES_SUFFIXES:
        return parse_json_lines(name, data)
    if suffix == ".json":
        return parse_json_document(name, data)
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        if _first_line_is_json(data):
            return parse_json_lines(name, data)
        raise _not_json(name, error) from error
    return _document_events(name, document)


def parse_json_lines(name: str, data: bytes) -> list[InputEvent]:
    """Decode one JSON value per line; blank lines are skipped.

    Raises `InputError` listing every line that is not valid JSON.
    """
    events: list[InputEvent] = []
    bad_lines: list[str] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            bad_lines.append(f"line {number}: {error.msg} at column {error.colno}")
            continue
        events.append(InputEvent(orjson.dumps(value), f"line {number}"))

    if bad_lines:
        listed = "; ".join(bad_lines[:MAX_LISTED_PROBLEMS])
        more = len(bad_lines) - MAX_LISTED_PROBLEMS
        if more > 0:
            listed += f"; and {more} more"
        raise InputError(
            f"{name} is JSON Lines, but {len(bad_lines)} of its lines are not valid JSON "
            f"({listed}). Fix them and publish again; nothing was published."
        )
    return events


def parse_json_document(name: str, data: bytes) -> list[InputEvent]:
    """Decode one JSON document: an event object, or an array of events."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise _not_json(name, error) from error
    return _document_events(name, document)


def _document_events(name: str, document: Any) -> list[InputEvent]:
    if isinstance(document, dict):
        return [InputEvent(orjson.dumps(document), "")]
    if isinstance(document, list):
        return [
            InputEvent(orjson.dumps(value), f"index {index}")
            for index, value in enumerate(document)
        ]
    raise InputError(
        f"{name} contains a JSON {type(document).__name__}; give one event object, an array of "
        "events, or JSON Lines with one event per line."
    )


def _first_line_is_json(data: bytes) -> bool:
    first = next(line for line in data.split(b"\n") if line.strip())
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    return True


def _not_json(name: str, error: orjson.JSONDecodeError) -> InputError:
    return InputError(
        f"{name} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}. "
        "Give one event object, an array of events, or JSON Lines with one event per line."
    )


def split_batches(events: list[InputEvent]) -> Iterator[Batch]:
    """Split events into consecutive batches below `BATCH_EVENT_LIMIT` and `BATCH_BYTE_LIMIT`.

    An event larger than the byte limit on its own goes in a batch by itself.
    """
    start = 0
    size = 2  # The brackets of the JSON array.
    for index, event in enumerate(events):
        cost = len(event.encoded) + 1  # The event and its comma.
        full = index - start + 1 >= BATCH_EVENT_LIMIT or size + cost >= BATCH_BYTE_LIMIT
        if index > start and full:
            yield Batch(start, events[start:index])
            start, size = index, 2
        size += cost
    if start < len(events):
        yield Batch(start, events[start:])


def publish_input(
    server: Server, source: EventInput, on_batch: Callable[[int], None]
) -> PublishSummary:
    """Publish every event of the input, batch by batch, and sum up the server's responses.

    `on_batch` receives the number of events of each accepted batch. Raises
    `RequestFailed` at the first batch that fails; the batches before it
    stay published.
    """
    summary = PublishSummary()
    url = server.endpoint("/events")
    with server.client(PUBLISH_TIMEOUT_SECONDS) as client:
        for batch in split_batches(source.events):
            try:
                sequences, duplicates = _post_batch(client, url, source, batch)
            except RequestFailed as error:
                raise type(error)(error.message + _published_before(summary)) from error
            summary.events += len(batch.events)
            summary.duplicates += duplicates
            summary.sequences.extend(sequences)
            on_batch(len(batch.events))
    return summary


def _post_batch(
    client: httpx.Client, url: httpx.URL, source: EventInput, batch: Batch
) -> tuple[list[int], int]:
    body = b"[" + b",".join(event.encoded for event in batch.events) + b"]"
    request = client.build_request(
        "POST", url, content=body, headers={"Content-Type": BATCH_MEDIA_TYPE}
    )
    response = send(client, request)
    if not response.is_success:
        raise _batch_rejection(response, source, batch)

    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        document = None
    sequences = document.get("sequences") if isinstance(document, dict) else None
    duplicates = document.get("duplicates") if isinstance(document, dict) else None
    if (
        not isinstance(sequences, list)
        or len(sequences) != len(batch.events)
        or not all(isinstance(sequence, int) for sequence in sequences)
        or not isinstance(duplicates, int)
    ):
        raise unexpected(
            response, f'{{"sequences": [...], "duplicates": K}} for {len(batch.events)} events'
        )
    return sequences, duplicates


def _batch_rejection(response: httpx.Response, source: EventInput, batch: Batch) -> RequestFailed:
    problem = Problem.from_response(response)
    if not problem.errors:
        return rejection(response, _describe_batch(source, batch))

    lines = [f"The server rejected {_describe_batch(source, batch)} with {problem.summary()}:"]
    for error in problem.errors[:MAX_LISTED_PROBLEMS]:
        lines.append(
            "  " + _describe_problem(source, batch, error.index, error.attribute, error.message)
        )
    more = len(problem.errors) - MAX_LISTED_PROBLEMS
    if more > 0:
        lines.append(f"  and {more} more problems.")
    lines.append("No event of this batch was published; fix these events and publish again.")
    return RequestFailed("\n".join(lines))


def _describe_batch(source: EventInput, batch: Batch) -> str:
    first, last = batch.events[0], batch.events[-1]
    if len(batch.events) == 1:
        return f"the event at {source.locate(first)}"
    return (
        f"a batch of {len(batch.events)} events ({first.position} to {last.position}) "
        f"from {source.name}"
    )


def _describe_problem(
    source: EventInput, batch: Batch, index: int, attribute: str, message: str
) -> str:
    # The server counts from the start of the batch; a negative index means the whole batch.
    if 0 <= index < len(batch.events):
        event = batch.events[index]
        where = source.locate(event)
        # The server's messages may name the event by its index in the batch.
        if len(batch.events) > 1 and event.position != f"index {index}":
            where += f" (index {index} in its batch)"
    else:
        where = "the batch"
    if attribute:
        where += f", attribute {attribute!r}"
    return f"{where}: {message}"


def _published_before(summary: PublishSummary) -> str:
    if summary.events == 0:
        return ""
    return (
        f"\nThe {summary.events} events before this batch were published. Publishing the "
        "same input again is safe, because the server recognizes events it already has "
        "as duplicates."
    )


def print_summary(summary: PublishSummary, as_json: bool) -> None:
    """Print what was published: one JSON object, or a table for people."""
    if as_json:
        click.echo(orjson.dumps(summary.as_json()).decode())
        return

    numbers = summary.as_json()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("Events published", str(summary.published))
    table.add_row("Duplicates", str(summary.duplicates))
    table.add_row("First sequence", _optional(numbers["first_sequence"]))
    table.add_row("Last sequence", _optional(numbers["last_sequence"]))
    Console().print(table)


def _optional(value: int | None) -> str:
    return "-" if value is None else str(value)


@click.command()
@click.argument("file", default="-", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help=f"Show a progress bar on standard error [default: for more than "
    f"{PROGRESS_THRESHOLD} events on a terminal].",
)
@server_options
def publish(server: Server, file: str, as_json: bool, progress: bool | None) -> None:
    """Publish the CloudEvents in FILE, or in standard input when FILE is absent or "-".

    FILE is JSON (one event object, or an array of events) or JSON Lines
    (one event per line, with the suffix .jsonl or .ndjson, or recognized by
    its content). Events go to the server in batches; each batch is appended
    all or nothing, and events the server already has count as duplicates.

    \b
    Example:
      eventlog publish orders.jsonl --url http://127.0.0.1:8000
    """
    source = read_input(file)
    total = len(source.events)
    if progress is None:
        progress = total > PROGRESS_THRESHOLD and sys.stderr.isatty()

    if not progress:
        summary = publish_input(server, source, lambda count: None)
    else:
        columns = (
            TextColumn("Publishing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("events"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task("publish", total=total)
            summary = publish_input(server, source, lambda count: bar.advance(task, count))
    print_summary(summary, as_json)
