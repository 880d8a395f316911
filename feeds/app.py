"""The Starlette application: routes, settings, and the log's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from eventlog import EventLog
from eventlog.event import DEFAULT_MAX_EVENT_BYTES
from eventlog.history import DEFAULT_QUERY_SECONDS
from eventlog.log import DEFAULT_TAIL_BYTES, DEFAULT_TAIL_CAPACITY
from eventlog.retention import RetentionPolicy
from feeds.access import RedactTokens
from feeds.admin import create_token, list_tokens, read_audit, revoke_token
from feeds.history import export_events, run_query
from feeds.metrics import Metrics, metrics
from feeds.openapi import openapi
from feeds.pages import read_page
from feeds.problems import Problem, install_handlers, problem_response
from feeds.publish import publish
from feeds.shutdown import watch_for_exit
from feeds.stream import DEFAULT_HEARTBEAT_SECONDS, stream_events
from feeds.subscription_registry import LagCollector, SubscriptionRegistry
from feeds.subscriptions import (
    acknowledge,
    delete_subscription,
    get_subscription,
    put_subscription,
    read_subscription,
    seek,
    stream_subscription,
)
from feeds.tokens import TokenRegistry

logger = logging.getLogger(__name__)

DATABASE_FILE = "events.duckdb"
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
# The dashboard: plain HTML, CSS and JavaScript, served as they are.
STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True, slots=True)
class Settings:
    """The settings an operator can choose for one server."""

    data_dir: Path
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    tail_capacity: int = DEFAULT_TAIL_CAPACITY
    # The bound on the bytes of the encoded events in the tail.
    tail_bytes: int = DEFAULT_TAIL_BYTES
    # Seconds between heartbeat comments on idle streams.
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    # False serves every request as an admin, on loopback addresses only.
    auth: bool = True
    # What retention keeps; the default policy keeps everything.
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    # The time limit of one POST /query, in seconds.
    query_seconds: float = DEFAULT_QUERY_SECONDS


async def dashboard(request: Request) -> Response:
    """Return the live dashboard's page, whose scripts and styles are under /static."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def health(request: Request) -> Response:
    """Return 200 with the head while the log can commit, else 503."""
    log: EventLog = request.app.state.log
    if not log.healthy:
        problem = Problem(
            503,
            "log-unavailable",
            "Log unavailable",
            "The last commit failed, so the log cannot accept events; reads still work.",
            headers={"Retry-After": "5"},
            head=log.head,
        )
        return problem_response(problem, request.url.path)
    body = {"status": "ok", "head": log.head, "earliest": log.earliest}
    return Response(orjson.dumps(body), media_type="application/json")


def create_app(
    data_dir: Path,
    *,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    tail_capacity: int = DEFAULT_TAIL_CAPACITY,
    tail_bytes: int = DEFAULT_TAIL_BYTES,
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    auth: bool = True,
    retain_days: float | None = None,
    retain_events: int | None = None,
    query_seconds: float = DEFAULT_QUERY_SECONDS,
) -> Starlette:
    """Build the application for the log in `data_dir`; the log opens at startup.

    `retain_days` and `retain_events` limit what the log keeps: older events
    move to the Parquet archive in `data_dir/archive`. Raises ValueError for
    a limit that is not positive.
    """
    settings = Settings(
        data_dir=Path(data_dir),
        max_event_bytes=max_event_bytes,
        max_request_bytes=max_request_bytes,
        tail_capacity=tail_capacity,
        tail_bytes=tail_bytes,
        heartbeat_seconds=heartbeat_seconds,
        auth=auth,
        retention=RetentionPolicy(days=retain_days, events=retain_events),
        query_seconds=query_seconds,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = settings.data_dir / DATABASE_FILE
        log = await EventLog.open(
            path,
            tail_capacity=settings.tail_capacity,
            tail_bytes=settings.tail_bytes,
            max_event_bytes=settings.max_event_bytes,
            retention=settings.retention,
        )
        app.state.log = log
        app.state.metrics.watch(log)
        app.state.tokens = TokenRegistry(log)
        await app.state.tokens.load()
        app.state.subscriptions = SubscriptionRegistry(log)
        await app.state.subscriptions.load()
        app.state.metrics.registry.register(LagCollector(log, app.state.subscriptions))
        _redact_access_log()
        if settings.auth:
            await app.state.tokens.ensure_admin_token(settings.data_dir)
        else:
            logger.warning(
                "Authentication is off: every request is served as an admin, "
                "on loopback addresses only"
            )
        logger.info("Serving the event log in %s", path)
        watcher = asyncio.create_task(watch_for_exit(log))
        try:
            yield
        finally:
            watcher.cancel()
            await log.close()

    routes = [
        Route("/events", publish, methods=["POST"]),
        Route("/events", read_page, methods=["GET"]),
        Route("/events/stream", stream_events, methods=["GET"]),
        Route("/", dashboard, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/tokens", create_token, methods=["POST"]),
        Route("/tokens", list_tokens, methods=["GET"]),
        Route("/tokens/{name}", revoke_token, methods=["DELETE"]),
        Route("/audit", read_audit, methods=["GET"]),
        Route("/subscriptions/{name}", put_subscription, methods=["PUT"]),
        Route("/subscriptions/{name}", get_subscription, methods=["GET"]),
        Route("/subscriptions/{name}", delete_subscription, methods=["DELETE"]),
        Route("/subscriptions/{name}/events", read_subscription, methods=["GET"]),
        Route("/subscriptions/{name}/stream", stream_subscription, methods=["GET"]),
        Route("/subscriptions/{name}/ack", acknowledge, methods=["POST"]),
        Route("/subscriptions/{name}/seek", seek, methods=["POST"]),
        Route("/query", run_query, methods=["POST"]),
        Route("/export", export_events, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = Metrics()
    install_handlers(app)
    return app


def _redact_access_log() -> None:
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access_log.filters):
        access_log.addFilter(RedactTokens())


def app_from_environment() -> Starlette:
    """Build the application from environment variables, for ASGI servers' factory mode.

    `EVENTLOG_DATA_DIR` is the data folder (required). Optional:
    `EVENTLOG_MAX_EVENT_BYTES`, `EVENTLOG_TAIL_CAPACITY` (events kept in
    memory), `EVENTLOG_TAIL_BYTES` (their maximum size in bytes), `EVENTLOG_HEARTBEAT_SECONDS` (between comments on idle
    streams, default 15), `EVENTLOG_RETAIN_DAYS` and `EVENTLOG_RETAIN_EVENTS`
    (retention limits, default none) and `EVENTLOG_QUERY_SECONDS` (the time
    limit of POST /query, default 30). Run it with the request limits of
    `feeds.server`, which read their own `EVENTLOG_*` variables, for example:
    `EVENTLOG_DATA_DIR=/var/lib/eventlog uvicorn --factory feeds.app:app_from_environment
    --http feeds.server:EnvironmentProtocol`.
    """
    data_dir = os.environ.get("EVENTLOG_DATA_DIR")
    if not data_dir:
        raise RuntimeError("Set EVENTLOG_DATA_DIR to the data folder of the event log.")
    return create_app(
        Path(data_dir),
        max_event_bytes=int(os.environ.get("EVENTLOG_MAX_EVENT_BYTES", DEFAULT_MAX_EVENT_BYTES)),
        tail_capacity=int(os.environ.get("EVENTLOG_TAIL_CAPACITY", DEFAULT_TAIL_CAPACITY)),
        tail_bytes=int(os.environ.get("EVENTLOG_TAIL_BYTES", DEFAULT_TAIL_BYTES)),
        heartbeat_seconds=_positive_seconds(
            "EVENTLOG_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS
        ),
        auth=os.environ.get("EVENTLOG_NO_AUTH", "") not in ("1", "true", "yes"),
        retain_days=_optional_positive("EVENTLOG_RETAIN_DAYS", float),
        retain_events=_optional_positive("EVENTLOG_RETAIN_EVENTS", int),
        query_seconds=_positive_seconds("EVENTLOG_QUERY_SECONDS", DEFAULT_QUERY_SECONDS),
    )


def _optional_positive(variable: str, kind: type[float | int]) -> Any:
    text = os.environ.get(variable)
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        value = 0
    if not 0 < value < float("inf"):
        unit = "whole number" if kind is int else "number"
        raise RuntimeError(f"Set {variable} to a positive {unit}, not {text!r}.")
    return value


def _positive_seconds(variable: str, default: float) -> float:
    text = os.environ.get(variable)
    if text is None:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise RuntimeError(f"Set {variable} to a positive number of seconds, not {text!r}.")
    return seconds
