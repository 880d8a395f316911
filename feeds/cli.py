"""The `eventlog` command: run the server, and publish and read events over HTTP.

`eventlog serve` runs the web application under uvicorn. The client
commands (`publish`, `tail`) talk to a server through the HTTP API only, so
they work the same against a remote one. This is the one place that
configures logging, and only for `serve`.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import sys
from pathlib import Path

import click

from feeds.settings import (
    DATA_DIR_VARIABLE,
    DEFAULT_BODY_TIMEOUT_SECONDS,
    DEFAULT_HEADER_TIMEOUT_SECONDS,
    DEFAULT_MAX_HEADER_BYTES,
    default_data_dir,
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Seconds a thread that wants the GIL waits before the holder must yield it.
# The writer thread takes the GIL back several times inside every DuckDB
# call. Under load the event loop holds it almost all the time, so at
# CPython's default of 5 ms those waits took about a third of the writer's
# time. 0.5 ms gave 1.6 times the single-event publishes and 1.4 times the
# batch publishes per second, and 0.1 ms was no better (wrk with
# benchmarks/lua/publish.lua, alternating runs, 2-core machine).
GIL_SWITCH_INTERVAL = 0.0005
# How long uvicorn waits after SIGTERM for open responses to finish before it
# cancels them. Publishes finish in milliseconds and held reads and streams
# end at once, so only a stream whose client stopped reading waits this long.
# Closing the log then takes under a second, so the server exits within 5 s
# (measured by tests/test_shutdown.py).
GRACEFUL_SHUTDOWN_SECONDS = 3

# Copies of `eventlog.event.DEFAULT_MAX_EVENT_BYTES`,
# `eventlog.log.DEFAULT_TAIL_CAPACITY` and `eventlog.log.DEFAULT_TAIL_BYTES`, so
# that client commands start without importing the log and its database
# driver. Tests keep them equal.
SERVER_DEFAULT_MAX_EVENT_BYTES = 65536
SERVER_DEFAULT_TAIL_CAPACITY = 50_000
SERVER_DEFAULT_TAIL_BYTES = 32 * 1024 * 1024


# The client commands, by name, imported only when they run or are listed, so
# that `eventlog serve` does not import httpx and rich (about 0.12 s).
CLIENT_COMMANDS = {
    "publish": "feeds.cli_publish:publish",
    "query": "feeds.cli_history:query",
    "export": "feeds.cli_history:export",
    "tail": "feeds.cli_tail:tail",
    "token": "feeds.cli_admin:token",
    "audit": "feeds.cli_admin:audit",
}


class LazyGroup(click.Group):
    """A command group that imports each client command when it is first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *CLIENT_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in CLIENT_COMMANDS:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = CLIENT_COMMANDS[cmd_name].split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eventlog")
def cli() -> None:
    """Run a durable, ordered log of CloudEvents, and publish and read its events over HTTP.

    \b
    Example:
      eventlog serve --data-dir ./data
    """


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Folder of the log's database, created if missing [default: ${DATA_DIR_VARIABLE}, "
    "else $XDG_DATA_HOME/eventlog, else ~/.local/share/eventlog].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="TCP port to listen on.",
)
@click.option(
    "--max-event-bytes",
    type=click.IntRange(min=1),
    default=SERVER_DEFAULT_MAX_EVENT_BYTES,
    show_default=True,
    help="Maximum size of one event, in bytes of JSON.",
)
@click.option(
    "--tail-capacity",
    type=click.IntRange(min=1),
    default=SERVER_DEFAULT_TAIL_CAPACITY,
    show_default=True,
    help="Number of newest events kept in memory for fast reads.",
)
@click.option(
    "--tail-bytes",
    type=click.IntRange(min=1),
    default=SERVER_DEFAULT_TAIL_BYTES,
    show_default=True,
    help="Maximum bytes of encoded events kept in memory; the oldest are dropped "
    "first. Example: --tail-bytes 67108864 for 64 MiB.",
)
@click.option(
    "--retain-days",
    type=click.FloatRange(min=0, min_open=True),
    help="Keep the events recorded in the last this many days; older ones move to the "
    "Parquet archive in the data folder [default: keep all].",
)
@click.option(
    "--retain-events",
    type=click.IntRange(min=1),
    help="Keep at least this many newest events; older ones move to the Parquet archive "
    "[default: keep all].",
)
@click.option(
    "--max-header-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_HEADER_BYTES,
    show_default=True,
    help="Maximum size of a request line plus headers, in bytes; larger gets 431.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_HEADER_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds a client may take to send a request line and headers, counted from the "
    "connection's start or from a later request's first byte; slower gets 408.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_BODY_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds a request body may pause between two reads; longer gets 408.",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve every request without a token, as an admin; only with a loopback --host.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Minimum level of the log messages written to standard error.",
)
def serve(
    data_dir: Path | None,
    host: str,
    port: int,
    max_event_bytes: int,
    tail_capacity: int,
    tail_bytes: int,
    retain_days: float | None,
    retain_events: int | None,
    max_header_bytes: int,
    header_timeout: float,
    body_timeout: float,
    no_auth: bool,
    log_level: str,
) -> None:
    """Run the event log server until it receives SIGINT or SIGTERM.

    The log is the file events.duckdb in the data folder. With no tokens
    yet, the server creates an admin token and writes it to admin.token in
    the data folder, where the client commands on this machine find it.
    Every request is logged to standard error.

    \b
    Example:
      eventlog serve --data-dir /var/lib/eventlog --host 0.0.0.0 --port 8000
    """
    # Imported here so that the client commands start without the web stack.
    import uvicorn

    from feeds.access import is_loopback
    from feeds.app import create_app

    if no_auth and not is_loopback(host):
        raise click.UsageError(
            f"--no-auth needs a loopback --host such as 127.0.0.1, not {host!r}, because "
            "anyone who can reach the server could then read and publish everything."
        )
    if data_dir is None:
        data_dir = default_data_dir()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        from feeds.cli_client import InputError

        raise InputError(
            f"Cannot create the data folder {str(data_dir)!r}: {error.strerror or error}. "
            f"Choose another with --data-dir or {DATA_DIR_VARIABLE}."
        ) from error

    # The server owns this process, so it may tune the interpreter.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    level = log_level.upper()
    logging.basicConfig(level=level, format=LOG_FORMAT)
    app = create_app(
        data_dir,
        max_event_bytes=max_event_bytes,
        tail_capacity=tail_capacity,
        tail_bytes=tail_bytes,
        auth=not no_auth,
        retain_days=retain_days,
        retain_events=retain_events,
    )

    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop" if _importable("uvloop") else "asyncio",
        http=_http_protocol(max_header_bytes, header_timeout, body_timeout),
        # Read by the h11 protocol only, the fallback where httptools is missing.
        h11_max_incomplete_event_size=max_header_bytes,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        access_log=True,
        # Keep the handlers configured above instead of uvicorn's own.
        log_config=None,
        log_level=level.lower(),
    )


def _http_protocol(
    max_header_bytes: int, header_timeout: float, body_timeout: float
) -> type[asyncio.Protocol] | str:
    """Return uvicorn's httptools protocol with these limits, or h11 where httptools is missing.

    NOTE: Under h11, uvicorn 0.55 responds to a head over the limit with 400
    instead of 431, and has neither the header nor the body timeout.
    """
    if not _importable("httptools"):
        return "h11"
    from feeds.server import RequestLimits, bounded_protocol

    limits = RequestLimits(
        max_header_bytes=max_header_bytes, header_timeout=header_timeout, body_timeout=body_timeout
    )
    return bounded_protocol(limits)


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main() -> None:
    """Run the `eventlog` command line; the console script's entry point."""
    cli(prog_name="eventlog")


if __name__ == "__main__":
    main()
