"""Measure what the audit trail costs a publish, over HTTP and through the library.

Over HTTP (`--http`), wrk publishes single events on 64 connections to
`eventlog serve` and to the same server without the publish's audit record
(`unaudited_serve.py`), alternating between the two, each on a fresh log.
Through the library, each trial appends single events from 64 concurrent
tasks to a fresh log, with and without an audit record per request,
alternating the order. In both, the ratio of the medians is the audit's cost.

    python benchmarks/audit_cost.py --http --trials 5 --duration 10
    python benchmarks/audit_cost.py --events 20000 --trials 5

In both, the writer thread limits the rate, so what the audit adds to each
commit group shows in full.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from eventlog import EventLog, parse_event
from eventlog.storage import AuditRecord

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from http_bench import plan, run_wrk, start_server, write_events_file

TASKS = 64


async def _trial(events: int, audited: bool) -> float:
    with tempfile.TemporaryDirectory() as folder:
        log = await EventLog.open(Path(folder) / "events.duckdb")
        prefix = uuid.uuid4().hex
        queue = [
            parse_event(
                {
                    "specversion": "1.0",
                    "id": f"{prefix}-{n}",
                    "source": "https://bench.example/audit",
                    "type": "bench.audit",
                    "subject": f"/party/{n % 1000}",
                    "data": {"n": n, "text": "x" * 200},
                }
            )
            for n in range(events)
        ]

        async def worker(start: int) -> None:
            for index in range(start, events, TASKS):
                audit = None
                if audited:
                    audit = AuditRecord(
                        time=datetime.now(UTC),
                        principal="bench",
                        action="publish",
                        outcome="ok",
                        status=201,
                        client="127.0.0.1",
                    )
                await log.append([queue[index]], audit)

        started = time.perf_counter()
        await asyncio.gather(*(worker(start) for start in range(TASKS)))
        elapsed = time.perf_counter() - started
        await log.close()
        return events / elapsed


async def _main(events: int, trials: int) -> None:
    rates: dict[bool, list[float]] = {True: [], False: []}
    for trial in range(trials):
        order = (True, False) if trial % 2 == 0 else (False, True)
        for audited in order:
            rates[audited].append(await _trial(events, audited))
    _report(rates, "events/s")


def _http(trials: int, duration: int, port: int) -> None:
    write_events_file()
    python = Path(sys.executable)
    commands = {
        True: [str(python.with_name("eventlog")), "serve"],
        False: [str(python), str(HERE / "unaudited_serve.py"), "serve"],
    }
    rates: dict[bool, list[float]] = {True: [], False: []}
    for trial in range(trials):
        order = (True, False) if trial % 2 == 0 else (False, True)
        for audited in order:
            scratch = Path(tempfile.mkdtemp(prefix="eventlog-audit-"))
            options = ["--no-auth", "--data-dir", str(scratch), "--port", str(port)]
            command = [*commands[audited], *options, "--log-level", "warning"]
            server = start_server("audited" if audited else "unaudited", command, port)
            try:
                script, arguments, connections, _ = plan("publish-single", 0, trial)
                result = run_wrk(server.url, script, arguments, connections, duration)
            finally:
                server.stop()
                shutil.rmtree(scratch, ignore_errors=True)
            print(
                f"trial {trial + 1} {server.name}: {result.requests_per_second:,.0f} req/s, "
                f"p50 {result.latency_p50_ms:.1f} ms, p99 {result.latency_p99_ms:.1f} ms, "
                f"errors {result.errors}",
                flush=True,
            )
            rates[audited].append(result.requests_per_second)
    _report(rates, "requests/s")


def _report(rates: dict[bool, list[float]], unit: str) -> None:
    plain = statistics.median(rates[False])
    audited_rate = statistics.median(rates[True])
    print(f"{'case':<22}{f'median {unit}':>18}   runs")
    for label, key in (("without audit", False), ("with audit per request", True)):
        runs = ", ".join(f"{rate:,.0f}" for rate in rates[key])
        print(f"{label:<22}{statistics.median(rates[key]):>18,.0f}   {runs}")
    print(f"audit cost: {100 * (1 - audited_rate / plain):.1f}% of publish throughput")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="Publish over HTTP with wrk.")
    parser.add_argument("--events", type=int, default=20_000, help="Events per library trial.")
    parser.add_argument("--trials", type=int, default=5, help="Trials of each case.")
    parser.add_argument("--duration", type=int, default=10, help="Seconds per wrk run.")
    parser.add_argument("--port", type=int, default=8300, help="Port of the server under test.")
    arguments = parser.parse_args()
    if arguments.http:
        _http(arguments.trials, arguments.duration, arguments.port)
    else:
        asyncio.run(_main(arguments.events, arguments.trials))


if __name__ == "__main__":
    main()
