"""Every subscription of one log, in memory and in storage.

The registry loads the subscriptions at startup and changes storage first,
memory second, so that a subscription works the moment the request that
created it returns and is gone the moment the request that deleted it
returns. Changes run one at a time, which keeps a stored cursor and its
copy in memory equal and two changes of one row from conflicting in DuckDB.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import orjson
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventlog import EventLog
from eventlog.storage import AuditRecord, SubscriptionRecord
from eventlog.subscription_filters import SubscriptionFilter

logger = logging.getLogger(__name__)

# /metrics shows the lag of at most this many subscriptions, those that lag
# most, so that many subscriptions cannot make the scrape unbounded.
MAX_LAG_SERIES = 100


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription with its parsed filter.

    `ended` is set when the subscription is deleted or replaced, which ends
    its open streams.
    """

    record: SubscriptionRecord
    filter: SubscriptionFilter
    ended: asyncio.Event = field(default_factory=asyncio.Event, compare=False)

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def owner(self) -> str:
        return self.record.owner

    @property
    def cursor(self) -> int:
        return self.record.cursor


class SubscriptionRegistry:
    """The subscriptions of one log, by name."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._subscriptions: dict[str, Subscription] = {}
        self._changing = asyncio.Lock()

    async def load(self) -> None:
        records = await self._log.run_in_reader(self._log.storage.load_subscriptions)
        for record in records:
            parsed = SubscriptionFilter.parse(orjson.loads(record.filters))
            self._subscriptions[record.name] = Subscription(record, parsed)
        logger.info("Loaded %d subscriptions", len(records))

    def get(self, name: str) -> Subscription | None:
        return self._subscriptions.get(name)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._subscriptions.values()))

    def __len__(self) -> int:
        return len(self._subscriptions)

    async def put(
        self,
        name: str,
        owner: str,
        filter: SubscriptionFilter,
        cursor: int | None,
        audit: AuditRecord,
    ) -> tuple[Subscription, bool]:
        """Create or replace a subscription; return it and whether it is new.

        A replacement keeps its owner, its creation time and, when `cursor`
        is None, its cursor. A new subscription needs a `cursor`.
        """
        async with self._changing:
            existing = self._subscriptions.get(name)
            now = datetime.now(UTC)
            if existing is None:
                if cursor is None:
                    raise ValueError("A new subscription needs a start cursor.")
                record = SubscriptionRecord(name, owner, _json(filter), cursor, now, now)
            else:
                record = replace(
                    existing.record,
                    filters=_json(filter),
                    cursor=existing.cursor if cursor is None else cursor,
                    updated=now,
                )
            await self._log.run_in_reader(self._log.storage.save_subscription, record, audit)
            subscription = Subscription(record, filter)
            self._subscriptions[name] = subscription
            if existing is not None:
                existing.ended.set()
        logger.info(
            "%s the subscription %r of %r at cursor %d",
            "Created" if existing is None else "Replaced",
            name,
            record.owner,
            record.cursor,
        )
        return subscription, existing is None

    async def delete(self, name: str, audit: AuditRecord) -> bool:
        """Delete a subscription and end its streams; return False when none has the name."""
        async with self._changing:
            deleted: bool = await self._log.run_in_reader(
                self._log.storage.delete_subscription, name, audit
            )
            subscription = self._subscriptions.pop(name, None)
            if subscription is not None:
                subscription.ended.set()
        if deleted:
            logger.info("Deleted the subscription %r", name)
        return deleted

    async def move_cursor(
        self, name: str, cursor: int, audit: AuditRecord | None, advance_only: bool
    ) -> Subscription | None:
        """Store a new cursor: max(old, `cursor`) with `advance_only`, else `cursor`.

        Returns the subscription with its stored cursor, None when no
        subscription has the name.
        """
        async with self._changing:
            stored: int | None = await self._log.run_in_reader(
                self._log.storage.set_cursor, name, cursor, audit, advance_only
            )
            current = self._subscriptions.get(name)
            if stored is None or current is None:
                return None
            record = replace(current.record, cursor=stored, updated=datetime.now(UTC))
            # The filter is unchanged, so open streams go on: keep the same event.
            moved = Subscription(record, current.filter, current.ended)
            self._subscriptions[name] = moved
        return moved


class LagCollector(Collector):
    """Subscription metrics at scrape time: how many there are, expired ones, and lags."""

    def __init__(self, log: EventLog, registry: SubscriptionRegistry) -> None:
        self._log = log
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        head = self._log.head
        horizon = self._log.earliest - 1
        subscriptions = list(self._registry)
        yield GaugeMetricFamily(
            "eventlog_subscriptions", "Subscriptions stored.", value=len(subscriptions)
        )
        expired = sum(1 for subscription in subscriptions if subscription.cursor < horizon)
        yield GaugeMetricFamily(
            "eventlog_subscriptions_expired",
            "Subscriptions whose cursor is older than the retention horizon.",
            value=expired,
        )
        lag = GaugeMetricFamily(
            "eventlog_subscription_lag",
            f"Events after the subscription's cursor (head - cursor), for the "
            f"{MAX_LAG_SERIES} subscriptions that lag most.",
            labels=["subscription"],
        )
        ranked = sorted(subscriptions, key=lambda subscription: subscription.cursor)
        for subscription in ranked[:MAX_LAG_SERIES]:
            lag.add_metric([subscription.name], max(0, head - subscription.cursor))
        yield lag


def _json(filter: SubscriptionFilter) -> str:
    return orjson.dumps(filter.to_json()).decode()
