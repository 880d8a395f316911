"""Retention: the background task that trims the oldest events into the Parquet archive.

A policy keeps the events recorded in the last `days` days, the newest
`events` events, or both; an event goes as soon as either limit passes it.
The task checks at startup, whenever enough events were committed to pass
the event limit by a batch, and at an interval for the age limit. Trimming
itself is `EventLog.trim`: archive first, then delete in short steps.

>>> policy = RetentionPolicy(days=30, events=1_000_000)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from eventlog.errors import EventLogError

if TYPE_CHECKING:
    from eventlog.log import EventLog

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
# Maximum and minimum seconds between two checks of the age limit.
MAX_CHECK_SECONDS = 60.0
MIN_CHECK_SECONDS = 1.0
# With an event limit, trimming waits until this many events are over it,
# so that each archive file holds a useful number of events.
MAX_TRIM_BATCH = 1_000
# After a failed trim, the task waits this long before it tries again.
RETRY_SECONDS = 30.0
# A head that the log never reaches.
_NEVER = 2**62


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How much of the log to keep; None for `days` or `events` means no such limit."""

    days: float | None = None
    events: int | None = None

    def __post_init__(self) -> None:
        if self.days is not None and not (0 < self.days < math.inf):
            raise ValueError(f"Retention days must be a positive number, not {self.days!r}.")
        if self.events is not None and self.events < 1:
            raise ValueError(f"Retention must keep at least 1 event, not {self.events!r}.")

    def __bool__(self) -> bool:
        return self.days is not None or self.events is not None

    @property
    def batch(self) -> int:
        """Events over the event limit before a trim starts: a tenth of it, 1 to 1,000."""
        if self.events is None:
            return 1
        return max(1, min(MAX_TRIM_BATCH, self.events // 10))

    @property
    def check_seconds(self) -> float | None:
        """Seconds between checks of the age limit: a tenth of it, 1 to 60; None without one."""
        if self.days is None:
            return None
        tenth = self.days * SECONDS_PER_DAY / 10
        return max(MIN_CHECK_SECONDS, min(MAX_CHECK_SECONDS, tenth))


async def run_retention(log: EventLog, policy: RetentionPolicy) -> None:
    """Trim `log` by `policy` until the log closes or the task is cancelled."""
    logger.info(
        "Retention started: keep %s days and %s events",
        "all" if policy.days is None else f"{policy.days:g}",
        "all" if policy.events is None else policy.events,
    )
    while not log.stopping:
        try:
            target = await trim_target(log, policy)
            if target >= log.earliest:
                await log.trim(target)
            timeout = policy.check_seconds
        except EventLogError as error:
            logger.warning("Retention failed, retrying in %.0f s: %s", RETRY_SECONDS, error)
            timeout = RETRY_SECONDS
        if not await _wait_for_work(log, policy, timeout):
            break
    logger.info("Retention stopped")


async def trim_target(log: EventLog, policy: RetentionPolicy) -> int:
    """Return the highest sequence that `policy` removes now; below `earliest` when none."""
    target = log.earliest - 1
    if policy.events is not None:
        over = log.head - policy.events
        if over - target >= policy.batch:
            target = over
    if policy.days is not None:
        cutoff = datetime.now(UTC) - timedelta(days=policy.days)
        target = max(target, await log.position_at(cutoff))
    return target


async def _wait_for_work(log: EventLog, policy: RetentionPolicy, timeout: float | None) -> bool:
    """Wait for the next reason to check; return False when the log is shutting down."""
    if policy.events is None:
        # Nothing but the clock brings the next trim.
        threshold = _NEVER
    else:
        # Wake when the head passes the event limit by a whole batch.
        threshold = log.earliest - 1 + policy.events + policy.batch - 1
    await log.wait_for_head(threshold, timeout)
    # wait_for_head returns at once while the log shuts down, so stop here.
    return not log.stopping
