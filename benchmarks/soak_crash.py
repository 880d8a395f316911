"""Kill the server with SIGKILL many times under publish and read load, checking every restart.

    python benchmarks/soak_crash.py --cycles 50

The same cycles as tests/test_crash.py, which runs 10. Publishers retry
each request with the same events until it is acknowledged, and page and
SSE readers follow the feed. After every restart the whole log is checked
against every acknowledgement and every reader's events (see
`harness.run_crash_cycles`). The server runs under uvicorn on 127.0.0.1
with a fresh data folder. The script prints the events acknowledged per
cycle and exits with an error on the first failed check.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from conftest import Server
from harness import run_crash_cycles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=50, help="kills and restarts")
    parser.add_argument("--clients", type=int, default=4, help="publisher threads")
    parser.add_argument("--seed", type=int, help="random seed [default: a random one]")
    arguments = parser.parse_args()
    seed = arguments.seed if arguments.seed is not None else int.from_bytes(os.urandom(4), "big")
    print(f"random seed {seed}", flush=True)

    with tempfile.TemporaryDirectory(prefix="eventlog-crash-") as folder:
        server = Server(Path(folder) / "data", EVENTLOG_HEARTBEAT_SECONDS="1")
        server.start()
        started = time.monotonic()
        report = run_crash_cycles(server, arguments.cycles, random.Random(seed), arguments.clients)
        seconds = time.monotonic() - started

    acknowledged = sum(report.per_cycle)
    print(f"events acknowledged per cycle: {report.per_cycle}")
    print(
        f"{arguments.cycles} cycles in {seconds:.0f} s: {acknowledged} events acknowledged before "
        f"the kills, a log of {report.log_events} events at the end, {report.retried} requests "
        f"retried after a kill and {report.committed_before_crash} of them committed before it; "
        f"readers received {report.reader_events} events and reconnected "
        f"{report.reader_reconnects} times. Every check passed."
    )


if __name__ == "__main__":
    main()
