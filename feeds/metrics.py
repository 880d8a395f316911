"""`GET /metrics`: Prometheus counters of the log and the HTTP API (counts only, no event data)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from eventlog import EventLog
from eventlog.log import GROUP_SIZE_BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class LogCollector(Collector):
    """Reads the log's own counters at scrape time."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def collect(self) -> Iterator[Metric]:
        stats = self._log.stats
        yield GaugeMetricFamily("eventlog_head", "Highest committed sequence.", value=self._log.head)
        yield GaugeMetricFamily(
            "eventlog_earliest",
            "Lowest retained sequence; retention archived the events before it.",
            value=self._log.earliest,
        )
        yield CounterMetricFamily(
            "eventlog_appended_events", "Events appended.", value=stats.appended_events
        )
        yield CounterMetricFamily(
            "eventlog_duplicate_events",
            "Published events that were already in the log.",
            value=stats.duplicate_events,
        )
        yield CounterMetricFamily(
            "eventlog_rejected_requests",
            "Append requests rejected as conflicting duplicates.",
            value=stats.rejected_requests,
        )
        yield CounterMetricFamily(
            "eventlog_failed_commits", "Append requests whose commit failed.", value=stats.failed_commits
        )
        yield CounterMetricFamily(
            "eventlog_commit_seconds",
            "Time spent committing groups of events, in seconds.",
            value=stats.commit_seconds,
        )
        yield GaugeMetricFamily(
            "eventlog_tail_events",
            "Newest events held in memory for reads.",
            value=self._log.tail_size,
        )
        yield GaugeMetricFamily(
            "eventlog_tail_filling",
            "1 while the tail is being filled from storage after the start, else 0.",
            value=int(self._log.tail_filling),
        )
        yield CounterMetricFamily(
            "eventlog_tail_scans", "Reads of events served from the tail.", value=stats.tail_scans
        )
        yield CounterMetricFamily(
            "eventlog_storage_scans",
            "Reads of events served from storage.",
            value=stats.storage_scans,
        )
        buckets = [(str(bound), count) for bound, count in zip(GROUP_SIZE_BUCKETS, stats.group_size_counts)]
        buckets.append(("+Inf", stats.commits))
        yield HistogramMetricFamily(
            "eventlog_commit_events",
            "Events per committed group (group commit sizes).",
            buckets=buckets,
            sum_value=stats.group_size_sum,
        )


class Metrics:
    """The application's registry; one per application, so tests never share state."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.feed_reads = Counter(
            "eventlog_feed_reads", "Pages of feeds served.", registry=self.registry
        )
        self.errors = Counter(
            "eventlog_http_errors",
            "Problem responses by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.open_streams = Gauge(
            "eventlog_open_streams", "Server-Sent Event streams open now.", registry=self.registry
        )

    def watch(self, log: EventLog) -> None:
        self.registry.register(LogCollector(log))


async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)
