"""Notice a graceful shutdown of the ASGI server before it waits for open requests.

uvicorn stops accepting connections on SIGTERM and then waits for open
requests to finish before it runs the application's lifespan shutdown. Held
long-polls and streams would keep it waiting, so the application watches
uvicorn's exit flag and calls `EventLog.begin_shutdown`, which ends them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from eventlog import EventLog

logger = logging.getLogger(__name__)

# How often the exit flag is checked, in seconds. It is a flag in memory, so
# checking costs nothing measurable; this bounds how late held reads end.
CHECK_INTERVAL_SECONDS = 0.1


def _uvicorn_server() -> Any | None:
    # uvicorn (0.30 to 0.55) installs its bound method `Server.handle_exit`
    # as the SIGTERM handler while it serves; its `should_exit` turns True
    # when a graceful shutdown begins.
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return server if hasattr(server, "should_exit") else None


async def watch_for_exit(log: EventLog) -> None:
    """Call `log.begin_shutdown()` as soon as the server begins a graceful shutdown."""
    while not log.stopping:
        server = _uvicorn_server()
        if server is not None and server.should_exit:
            logger.info("Shutting down: returning held reads and ending streams")
            log.begin_shutdown()
            return
        await asyncio.sleep(CHECK_INTERVAL_SECONDS)
