"""Restart time and memory of `eventlog serve` on a large log.

    python benchmarks/restart_bench.py --data-dir /tmp/eventlog-bench/10m --runs 5

Each run starts `eventlog serve --no-auth` on the log, measures the time from
starting the process until `GET /health` answers 200 (the server then serves
reads and appends), reads the server's RSS from /proc after one page near the
head and one at a random cursor, and stops the server with SIGINT. The
server fills its tail in the background after it starts serving: the run
also measures the time until `/metrics` shows `eventlog_tail_filling 0` (for
a server without that metric, the time to serving) and the RSS then. Also
prints the time to stop and the size of the log files. The log is opened in
place; the runs add the audit records of their reads to it.
"""

from __future__ import annotations

import argparse
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tail_filling(url: str) -> bool:
    """Return whether the server reports that its tail is still filling."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return re.search(r"^eventlog_tail_filling 1(\.0)?$", text, re.MULTILINE) is not None


def one_run(
    data_dir: Path, port: int, seed: int, tail_capacity: int | None
) -> tuple[float, float, float, float, float, int]:
    command = [
        str(Path(sys.executable).with_name("eventlog")), "serve", "--no-auth",
        "--data-dir", str(data_dir), "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    if tail_capacity is not None:
        command += ["--tail-capacity", str(tail_capacity)]
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                response = httpx.get(f"{url}/health", timeout=1)
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise RuntimeError(f"The server exited with {server.returncode} at start.")
            if time.perf_counter() - started > 300:
                raise RuntimeError("The server did not answer /health within 300 s.")
            time.sleep(0.01)
        ready = time.perf_counter() - started
        head: int = response.json()["head"]
        httpx.get(f"{url}/events", params={"after": max(0, head - 100)}, timeout=30).raise_for_status()
        after = random.Random(seed).randint(0, max(0, head - 100))
        httpx.get(f"{url}/events", params={"after": after}, timeout=30).raise_for_status()
        memory = rss_mb(server.pid)
        while tail_filling(url):
            if time.perf_counter() - started > 300:
                raise RuntimeError("The server did not fill its tail within 300 s.")
            time.sleep(0.01)
        filled = time.perf_counter() - started
        filled_memory = rss_mb(server.pid)
    finally:
        stopping = time.perf_counter()
        server.send_signal(signal.SIGINT)
        server.wait(120)
        stopped = time.perf_counter() - stopping
    return ready, filled, memory, filled_memory, stopped, head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument(
        "--tail-capacity", type=int, help="Passed to eventlog serve [default: its own]."
    )
    options = parser.parse_args()
    files = sorted(options.data_dir.glob("events.duckdb*"))
    for path in files:
        print(f"{path.name}: {path.stat().st_size / 1e9:.2f} GB")
    results = []
    for run in range(options.runs):
        ready, filled, memory, filled_memory, stopped, head = one_run(
            options.data_dir, options.port, seed=run, tail_capacity=options.tail_capacity
        )
        results.append((ready, filled, memory, filled_memory, stopped))
        print(
            f"run {run + 1}: head {head:,}, serving after {ready:.2f} s, tail filled after "
            f"{filled:.2f} s, RSS {memory:.0f} MB, {filled_memory:.0f} MB filled, "
            f"stopped in {stopped:.2f} s",
            flush=True,
        )
    print()
    print("| measure | median (min–max) |")
    print("| --- | --- |")
    measures = (
        ("start to serving", "s"),
        ("start to tail filled", "s"),
        ("RSS after two pages", "MB"),
        ("RSS with the tail filled", "MB"),
        ("stop", "s"),
    )
    for index, (name, unit) in enumerate(measures):
        values = [result[index] for result in results]
        print(
            f"| {name} | {statistics.median(values):.2f} {unit} "
            f"({min(values):.2f}–{max(values):.2f}) |"
        )


if __name__ == "__main__":
    main()
