"""Redis Streams as the peer baseline: durable XADD, pipelined XADD, and XRANGE pages.

    python benchmarks/redis_bench.py --runs 5

Starts its own `redis-server` on 127.0.0.1 (`--appendonly yes --appendfsync
always`: every write is fsynced before the reply, as the event log does) in
a temporary folder, drives it with `redis-benchmark`, and stops it by its
process id. The stream entries carry one workload event (about 1.4 KB of
JSON) each, like the event log's events.

| benchmark | commands |
| --- | --- |
| xadd-single | XADD, 64 connections, one command per round trip |
| xadd-pipelined | XADD, 16 connections, 100 commands per round trip |
| xrange-head | XREVRANGE + - COUNT 100: the newest 100 entries, 64 connections |
| xrange-random | XRANGE from a random id COUNT 100 over `--entries` entries, 64 connections |
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import Workload

STREAM = "events"


def start_redis(folder: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{port} within 30 s.")


def redis_benchmark(port: int, arguments: list[str], requests: int, connections: int, pipeline: int) -> float:
    """Run redis-benchmark and return its requests per second."""
    command = [
        "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(connections),
        "-n", str(requests), "-P", str(pipeline), "-q", *arguments,
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    # With -q the last line ends "…: 12345.67 requests per second, p50=… msec".
    rates = re.findall(r"([\d.]+) requests per second", output.stdout)
    if not rates:
        raise RuntimeError(f"No rate in the output of {' '.join(command[:12])}: {output.stdout!r}")
    return float(rates[-1])


def load(port: int, entries: int, payload: bytes) -> None:
    """Fill the stream with entries whose ids are 1-0, 2-0, …, so a random integer is a position."""
    client = redis.Redis(host="127.0.0.1", port=port)
    client.delete(STREAM)
    for start in range(1, entries + 1, 1000):
        pipe = client.pipeline(transaction=False)
        for number in range(start, min(entries, start + 999) + 1):
            pipe.xadd(STREAM, {"event": payload}, id=f"{number}-0")
        pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=100_000, help="Commands per XADD run.")
    parser.add_argument("--entries", type=int, default=1_000_000, help="Entries for XRANGE.")
    parser.add_argument("--port", type=int, default=8400)
    options = parser.parse_args()
    # The publish benchmarks' events average about 1.4 KB: take one of that size.
    payload = min(
        (orjson.dumps(event) for event in Workload(seed=2).events(0, 100)),
        key=lambda encoded: abs(len(encoded) - 1400),
    )

    folder = Path(tempfile.mkdtemp(prefix="eventlog-bench-redis-"))
    process = start_redis(folder, options.port)
    version = redis.Redis(host="127.0.0.1", port=options.port).info()["redis_version"]
    print(f"redis-server {version}, appendonly yes, appendfsync always; payload {len(payload)} bytes")
    xadd = ["XADD", STREAM, "*", "event", payload.decode()]
    results: dict[str, list[float]] = {}
    try:
        for run in range(options.runs):
            for name, arguments, connections, pipeline in (
                ("xadd-single", xadd, 64, 1),
                ("xadd-pipelined", xadd, 16, 100),
            ):
                rate = redis_benchmark(options.port, arguments, options.requests, connections, pipeline)
                results.setdefault(name, []).append(rate)
                print(f"{name} run {run + 1}: {rate:,.0f} commands/s", flush=True)
        started = time.monotonic()
        load(options.port, options.entries, payload)
        print(f"Loaded {options.entries:,} entries in {time.monotonic() - started:.0f} s")
        for run in range(options.runs):
            for name, arguments in (
                ("xrange-head", ["XREVRANGE", STREAM, "+", "-", "COUNT", "100"]),
                ("xrange-random", ["-r", str(options.entries - 100), "XRANGE", STREAM, "__rand_int__", "+", "COUNT", "100"]),
            ):  # fmt: skip
                rate = redis_benchmark(options.port, arguments, 20_000, 64, 1)
                results.setdefault(name, []).append(rate)
                print(f"{name} run {run + 1}: {rate:,.0f} pages/s", flush=True)
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(folder, ignore_errors=True)

    print()
    print("| benchmark | commands/s median (min–max) | events/s |")
    print("| --- | --- | --- |")
    for name, rates in results.items():
        median = statistics.median(rates)
        events = median * (100 if name.startswith("xrange") else 1)
        print(f"| {name} | {median:,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) | {events:,.0f} |")


if __name__ == "__main__":
    main()
