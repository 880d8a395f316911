"""`eventlog query` and `eventlog export`: history for analysts, from a server or the file.

Both commands go through the server's HTTP API when a server answers
`GET /health` at `--url`, because a running server keeps its database file
open and no other process may open it then. When none answers, they open
the database file in `--data-dir` read-only and do the same work in this
process, with the same SQL sandbox and the same output.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ciso8601
import click
import httpx
import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from feeds.cli_client import (
    InputError,
    RequestFailed,
    Server,
    ServerUnavailable,
    is_loopback,
    rejection,
    send,
    server_options,
    unexpected,
)
from feeds.settings import DATA_DIR_VARIABLE, default_data_dir, read_admin_token

if TYPE_CHECKING:
    import pyarrow as pa

    from eventlog.archive import Archive
    from eventlog.duckdb_storage import DuckDBStorage
    from eventlog.history import QueryResult
    from eventlog.storage import LogBounds

    WriteBatch = Callable[[pa.RecordBatch], None]

DATABASE_FILE = "events.duckdb"
ARCHIVE_FOLDER = "archive"
# How long `GET /health` may take before the commands decide that no server runs.
HEALTH_TIMEOUT_SECONDS = 2.0
# A query may run for the server's time limit (30 s by default); the client waits longer.
QUERY_READ_TIMEOUT_SECONDS = 120.0
EXPORT_READ_TIMEOUT_SECONDS = 300.0
# Events per read when exporting from the file; each read is one short transaction.
EXPORT_STEP_EVENTS = 10_000
FORMATS = ("parquet", "jsonl", "csv")

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Data folder of the log, read directly when no server runs [default: "
    f"${DATA_DIR_VARIABLE}, else $XDG_DATA_HOME/eventlog, else ~/.local/share/eventlog].",
)


@click.command()
@click.argument("sql")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the result as CSV with a header row.")
@data_dir_option
@server_options
def query(server: Server, sql: str, as_json: bool, as_csv: bool, data_dir: Path | None) -> None:
    """Run one read-only SQL query over the views 'events' and 'audit', archive included.

    'events' has one row per event: sequence, recordedtime, the attributes,
    extensions (a MAP), data (JSON), data_base64 and event (JSON). At most
    10,000 rows come back.

    \b
    Example:
      eventlog query "SELECT type, count(*) AS n FROM events GROUP BY type ORDER BY n DESC"
    """
    if as_json and as_csv:
        raise click.UsageError("Give --json or --csv, not both.")
    media_type = "text/csv" if as_csv else "application/json"
    data_dir = data_dir or default_data_dir()
    server = _with_local_token(server, data_dir)

    if _server_runs(server):
        body = _query_server(server, sql, media_type)
    else:
        body = _query_file(data_dir, sql, media_type)

    if as_csv or as_json:
        sys.stdout.buffer.write(body if as_csv else body + b"\n")
        return
    _print_table(orjson.loads(body))


@click.command()
@click.option(
    "--format",
    "file_format",
    type=click.Choice(FORMATS),
    required=True,
    help="File format: Parquet, JSON Lines (one event per line) or CSV.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    required=True,
    help="File to write; replaced when it exists.",
)
@click.option("--after", type=click.IntRange(min=0), help="Export the events after this sequence.")
@click.option(
    "--until-sequence", type=click.IntRange(min=0), help="The last sequence to export."
)
@click.option("--since", help="Export from the first event recorded at or after this RFC 3339 time.")
@click.option("--until", help="Export the events recorded before this RFC 3339 time.")
@data_dir_option
@server_options
def export(
    server: Server,
    file_format: str,
    output: Path,
    after: int | None,
    until_sequence: int | None,
    since: str | None,
    until: str | None,
    data_dir: Path | None,
) -> None:
    """Write a range of events, archived or live, to a Parquet, JSON Lines or CSV file.

    The range is a sequence range (--after, --until-sequence) or a time range
    of recordedtime (--since, --until); without bounds, every event. JSON
    Lines contains the events as delivered; Parquet and CSV have one column per
    attribute, extensions, and data as JSON text.

    \b
    Example:
      eventlog export --format parquet --output march.parquet \\
        --since 2026-03-01T00:00:00Z --until 2026-04-01T00:00:00Z
    """
    if after is not None and since is not None:
        raise click.UsageError("Give --after or --since, not both.")
    if until_sequence is not None and until is not None:
        raise click.UsageError("Give --until-sequence or --until, not both.")
    since_time = _parse_time(since, "--since")
    until_time = _parse_time(until, "--until")
    data_dir = data_dir or default_data_dir()
    server = _with_local_token(server, data_dir)

    # Imported here so that the other commands start without pyarrow.
    from feeds.export_files import open_export_file

    params = _export_params(after, until_sequence, since, until)
    partial = output.with_name(output.name + ".partial")
    writer = open_export_file(file_format, partial)
    try:
        if _server_runs(server):
            count = _export_from_server(server, params, writer.write)
        else:
            count = _export_from_file(
                data_dir, after, until_sequence, since_time, until_time, writer.write
            )
        writer.close()
    except BaseException:
        writer.abandon()
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, output)
    click.echo(f"Exported {count} events to {output}.", err=True)


def _with_local_token(server: Server, data_dir: Path) -> Server:
    # The admin token in --data-dir goes only to a loopback server, as in server_options.
    if server.token is None and is_loopback(server.url.host):
        token = read_admin_token(data_dir)
        if token is not None:
            return Server(server.url, token)
    return server


def _server_runs(server: Server) -> bool:
    """Return whether a server answers `GET /health` at `--url`, healthy or not."""
    try:
        with server.client(HEALTH_TIMEOUT_SECONDS) as client:
            client.get(server.endpoint("/health"), timeout=HEALTH_TIMEOUT_SECONDS)
    except httpx.TransportError:
        return False
    return True


def _query_server(server: Server, sql: str, media_type: str) -> bytes:
    with server.client(QUERY_READ_TIMEOUT_SECONDS) as client:
        request = client.build_request(
            "POST", server.endpoint("/query"), json={"sql": sql}, headers={"Accept": media_type}
        )
        response = send(client, request)
    if response.status_code != 200:
        raise rejection(response, "POST /query")
    if media_type == "application/json":
        try:
            orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise unexpected(response, "JSON") from None
    return response.content


def _query_file(data_dir: Path, sql: str, media_type: str) -> bytes:
    from eventlog.errors import EventLogError
    from eventlog.history import run_query
    from feeds.query_format import UnrenderableResult, render

    try:
        with _open_file(data_dir) as (storage, archive, bounds):
            result: QueryResult = run_query(
                storage,
                archive,
                sql,
                head=bounds.head,
                archived_through=max(bounds.earliest - 1, archive.archived_through()),
            )
        return render(result, media_type)
    except (EventLogError, UnrenderableResult) as error:
        raise RequestFailed(str(error)) from error


def _print_table(document: dict[str, Any]) -> None:
    from feeds.query_format import text_value

    table = Table(*(escape(name) for name in document["columns"]))
    for row in document["rows"]:
        table.add_row(*(escape(text_value(value)) for value in row))
    Console().print(table)
    count = len(document["rows"])
    note = f" (cut off at {document['max_rows']})" if document["truncated"] else ""
    click.echo(f"{count} row{'' if count == 1 else 's'}{note}", err=True)


def _export_params(
    after: int | None, until_sequence: int | None, since: str | None, until: str | None
) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in (
        ("after", after),
        ("until_sequence", until_sequence),
        ("since", since),
        ("until", until),
    ):
        if value is not None:
            params[name] = str(value)
    return params


def _export_from_server(server: Server, params: dict[str, str], write: WriteBatch) -> int:
    import pyarrow as pa

    with server.client(EXPORT_READ_TIMEOUT_SECONDS) as client:
        request = client.build_request("GET", server.endpoint("/export"), params=params)
        try:
            response = client.send(request, stream=True)
        except httpx.TransportError as error:
            raise ServerUnavailable(
                f"GET /export at {server.url} failed before a response arrived ({error})."
            ) from error
        try:
            if response.status_code != 200:
                response.read()
                raise rejection(response, "GET /export")
            total = _range_size(response)
            with _progress(total) as advance:
                try:
                    reader = pa.ipc.open_stream(_ResponseFile(response.iter_bytes()))
                    count = 0
                    for batch in reader:
                        write(batch)
                        count += batch.num_rows
                        advance(batch.num_rows)
                except (httpx.TransportError, pa.ArrowException, OSError) as error:
                    raise ServerUnavailable(
                        f"The export from {server.url} ended early ({error}); the output "
                        "file is not written. Run the command again."
                    ) from error
        finally:
            response.close()
    return count


def _range_size(response: httpx.Response) -> int:
    try:
        first = int(response.headers["eventlog-first-sequence"])
        last = int(response.headers["eventlog-last-sequence"])
    except (KeyError, ValueError):
        raise unexpected(response, "the Eventlog-First-Sequence and -Last-Sequence headers")
    return max(0, last - first + 1)


def _export_from_file(
    data_dir: Path,
    after: int | None,
    until_sequence: int | None,
    since: datetime | None,
    until: datetime | None,
    write: WriteBatch,
) -> int:
    from eventlog.errors import EventLogError
    from eventlog.history import first_recorded_at, read_range

    count = 0
    try:
        with _open_file(data_dir) as (storage, archive, bounds):
            head = bounds.head
            start = after or 0
            last = head if until_sequence is None else min(until_sequence, head)
            if since is not None:
                found = first_recorded_at(storage, archive, since, head)
                start = head if found is None else found - 1
            if until is not None:
                found = first_recorded_at(storage, archive, until, head)
                last = head if found is None else found - 1
            archived_through = max(bounds.earliest - 1, archive.archived_through())
            with _progress(max(0, last - start)) as advance:
                position = start
                while position < last:
                    end = min(last, position + EXPORT_STEP_EVENTS)
                    table = read_range(storage, archive, position, end, archived_through)
                    for batch in table.to_batches():
                        write(batch)
                    count += table.num_rows
                    advance(table.num_rows)
                    position = end
    except EventLogError as error:
        raise RequestFailed(str(error)) from error
    return count


@contextlib.contextmanager
def _open_file(data_dir: Path) -> Iterator[tuple[DuckDBStorage, Archive, LogBounds]]:
    """Open the log's database file read-only, with its archive and bounds, for one command."""
    from eventlog.archive import Archive
    from eventlog.duckdb_storage import DuckDBStorage
    from eventlog.errors import LogUnavailable

    path = data_dir / DATABASE_FILE
    if not path.is_file():
        raise InputError(
            f"No server answers at the --url, and there is no database at {str(path)!r}. "
            f"Start the server with 'eventlog serve', or give the data folder with --data-dir "
            f"or {DATA_DIR_VARIABLE}."
        )
    click.echo(f"No server answers; reading {path} directly.", err=True)
    try:
        storage = DuckDBStorage(path, read_only=True)
    except LogUnavailable as error:
        raise RequestFailed(
            f"{error} If a server has the file open, give its address with --url."
        ) from error
    try:
        yield storage, Archive(data_dir / ARCHIVE_FOLDER), storage.bounds()
    finally:
        storage.close()


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """Show a progress bar of `total` events on standard error; yield the function that moves it."""
    bar = Progress(
        TextColumn("Exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("export", total=total)
    with bar:
        yield lambda count: bar.advance(task, count)


class _ResponseFile(io.RawIOBase):
    """A readable file over the chunks of a streamed response, for pyarrow's stream reader."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        # pyarrow takes a short read for the end of the stream, so fill `target`
        # completely unless the response ends first.
        view = memoryview(target).cast("B")
        filled = 0
        while filled < len(view):
            if not self._buffer:
                try:
                    self._buffer = next(self._chunks)
                except StopIteration:
                    break
                continue
            size = min(len(view) - filled, len(self._buffer))
            view[filled : filled + size] = self._buffer[:size]
            self._buffer = self._buffer[size:]
            filled += size
        return filled


def _parse_time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return ciso8601.parse_rfc3339(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an RFC 3339 time with an offset, such as 2026-03-01T00:00:00Z.",
            param_hint=option,
        ) from None

