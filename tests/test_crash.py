"""Crash safety: SIGKILL the server while clients publish and read, restart it, check the log.

Clients publish singles and batches and retry every request with the same
events until it is acknowledged, as a careful client would. Readers follow
the feed meanwhile, by pages with `after` and over SSE with
`Last-Event-ID`, half of them filtered on one event type. After each
restart, every acknowledged event must be present exactly once under its
acknowledged sequence, sequences must be dense, and no batch may be half
present. Each reader must have received exactly the events of its filter,
without a gap at the restart and without duplicates.
`benchmarks/soak_crash.py` runs the same cycles 50 times.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from conftest import Server
from harness import run_crash_cycles

CYCLES = 10


def test_crash_keeps_acknowledged_events(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"random seed {seed}")  # pytest shows it when the test fails.
    # Heartbeats keep the idle streams' reads from timing out.
    server = Server(tmp_path / "data", EVENTLOG_HEARTBEAT_SECONDS="1")
    server.start()

    report = run_crash_cycles(server, CYCLES, random.Random(seed))

    assert len(report.per_cycle) == CYCLES
    print(
        f"events acknowledged per cycle {report.per_cycle}, log of {report.log_events} events, "
        f"{report.retried} requests retried, {report.committed_before_crash} of them committed "
        f"before the kill; readers received {report.reader_events} events and reconnected "
        f"{report.reader_reconnects} times"
    )
