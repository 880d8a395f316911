"""Measure what the audit trail costs a publish, through the library.

Each trial appends single events from 64 concurrent tasks to a fresh log,
once with an audit record per request (what the HTTP API does) and once
without, alternating the order. The ratio of the medians is the audit's
cost; the HTTP layer around it is the same in both cases, so over HTTP the
share is smaller still.

    python benchmarks/audit_cost.py --events 20000 --trials 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from eventlog import EventLog, parse_event
from eventlog.storage import AuditRecord

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
    plain = statistics.median(rates[False])
    audited_rate = statistics.median(rates[True])
    print(f"{'case':<22}{'median events/s':>18}{'runs':>40}")
    for label, key in (("without audit", False), ("with audit per request", True)):
        runs = ", ".join(f"{rate:,.0f}" for rate in rates[key])
        print(f"{label:<22}{statistics.median(rates[key]):>18,.0f}   {runs}")
    print(f"audit cost: {100 * (1 - audited_rate / plain):.1f}% of publish throughput")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="Events per trial.")
    parser.add_argument("--trials", type=int, default=5, help="Trials of each case.")
    arguments = parser.parse_args()
    asyncio.run(_main(arguments.events, arguments.trials))


if __name__ == "__main__":
    main()
