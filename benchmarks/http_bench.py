"""HTTP load on `eventlog serve` and on the no-op baseline, in the same run, with wrk.

Each benchmark runs `--runs` times, alternating between the baseline and the
event log so that both see the same noise, and prints the median, the spread
(min to max) and the ratio of the medians:

    python benchmarks/http_bench.py --runs 5 --duration 10
    python benchmarks/http_bench.py --only page-random,page-rare --data-dir /tmp/eventlog-bench/10m

| benchmark | requests |
| --- | --- |
| publish-single | one event per POST, 64 connections |
| publish-batch | 100 events per POST, 16 connections |
| page-head | GET 100 events after a random cursor among the newest 10,000, 64 connections |
| page-random | GET 100 events after a uniformly random cursor, 64 connections |
| page-rare | GET a page filtered on a subject with about 1 event in 100,000, 4 connections |

Without `--data-dir` the event log starts empty in a temporary folder (the
publish benchmarks fill it). Servers listen on 127.0.0.1 only; each wrk run
is bounded by `--duration`. Both servers run uvicorn with uvloop and
httptools, one process, and log warnings only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workload import PARTIES, Workload, party_of_rank, rank_with_frequency

DATA = HERE / "data"
EVENTS_FILE = DATA / "publish-events.jsonl"
TEMPLATE_EVENTS = 2_000
BENCHMARKS = ("publish-single", "publish-batch", "page-head", "page-random", "page-rare")


@dataclass
class WrkResult:
    requests_per_second: float
    latency_p50_ms: float
    latency_p99_ms: float
    errors: int


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def write_events_file() -> Path:
    """Write the publish templates: workload events (seed 2) whose id is the placeholder @ID@."""
    if EVENTS_FILE.exists():
        return EVENTS_FILE
    DATA.mkdir(exist_ok=True)
    with EVENTS_FILE.open("wb") as output:
        for event in Workload(seed=2).events(0, TEMPLATE_EVENTS):
            event["id"] = "@ID@"
            output.write(orjson.dumps(event) + b"\n")
    return EVENTS_FILE


def start_server(name: str, command: list[str], port: int) -> Server:
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The {name} server exited with {process.returncode} at start.")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return Server(name, url, process)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"The {name} server did not answer /health on {url} within 120 s.")


def run_wrk(url: str, script: str, arguments: list[str], connections: int, duration: int) -> WrkResult:
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s",
        "-s", str(HERE / "lua" / script), url, "--", *arguments,
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 60)
    return parse_wrk(output.stdout)


def parse_wrk(text: str) -> WrkResult:
    """Read requests/s, p50 and p99 latency, and error counts from wrk's --latency output."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    percentiles = {
        match.group(1): _milliseconds(match.group(2), match.group(3))
        for match in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    }
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: .*?timeout (\d+)"):
        match = re.search(pattern, text)
        if match:
            errors += int(match.group(1))
    return WrkResult(rate, percentiles["50"], percentiles["99"], errors)


def _milliseconds(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def commit_totals(url: str) -> tuple[float, float, float]:
    """Return the commits, committed events and commit seconds so far, from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {}
    for name in ("eventlog_commit_events_count", "eventlog_commit_events_sum", "eventlog_commit_seconds_total"):
        match = re.search(rf"^{name} ([\d.e+-]+)$", text, re.MULTILINE)
        values[name] = float(match.group(1)) if match else 0.0
    return (
        values["eventlog_commit_events_count"],
        values["eventlog_commit_events_sum"],
        values["eventlog_commit_seconds_total"],
    )


def head_of(url: str) -> int:
    head: int = httpx.get(f"{url}/health", timeout=10).json()["head"]
    return head


def plan(name: str, head: int, run: int) -> tuple[str, list[str], int, int]:
    """Return the script, its arguments, the connections, and the events per request."""
    events = str(EVENTS_FILE)
    tag = f"r{os.getpid()}-{run}-{time.monotonic_ns()}"
    if name == "publish-single":
        return "publish.lua", [events, "1", tag], 64, 1
    if name == "publish-batch":
        return "publish.lua", [events, "100", tag], 16, 100
    if name == "page-head":
        return "page.lua", [str(max(0, head - 10_000)), str(max(0, head - 100))], 64, 100
    if name == "page-random":
        return "page.lua", ["0", str(max(0, head - 100))], 64, 100
    if name == "page-rare":
        subject = f"/party/{party_of_rank(rank_with_frequency(1e-5, PARTIES))}"
        # A rare subject's page holds as many events as the scan found: no fixed count.
        return "page.lua", ["0", "0", f"&subject={subject}"], 4, 0
    raise ValueError(f"Unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="Runs per benchmark and server.")
    parser.add_argument("--duration", type=int, default=10, help="Seconds per wrk run.")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="Comma-separated benchmarks.")
    parser.add_argument("--data-dir", type=Path, help="Serve this log instead of an empty one.")
    parser.add_argument("--port", type=int, default=8200, help="First of two ports to use.")
    options = parser.parse_args()
    names = [name for name in options.only.split(",") if name]
    write_events_file()

    scratch = Path(tempfile.mkdtemp(prefix="eventlog-bench-"))
    data_dir = options.data_dir or scratch / "data"
    python = sys.executable
    eventlog_command = [
        str(Path(python).with_name("eventlog")), "serve", "--no-auth", "--data-dir", str(data_dir),
        "--port", str(options.port), "--log-level", "warning",
    ]  # fmt: skip
    noop_command = [python, str(HERE / "noop_app.py"), "--port", str(options.port + 1)]
    servers = [
        start_server("no-op", noop_command, options.port + 1),
        start_server("eventlog", eventlog_command, options.port),
    ]
    rows: list[str] = []
    try:
        for name in names:
            rows.append(measure(name, servers, options.runs, options.duration))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    print()
    print("| benchmark | server | requests/s median (min–max) | events/s | p50 ms | p99 ms | errors | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)


def measure(name: str, servers: list[Server], runs: int, duration: int) -> str:
    results: dict[str, list[WrkResult]] = {server.name: [] for server in servers}
    per_request = 1
    for run in range(runs):
        for server in servers:
            head = head_of(servers[-1].url)
            script, arguments, connections, per_request = plan(name, head, run)
            before = commit_totals(servers[-1].url)
            result = run_wrk(server.url, script, arguments, connections, duration)
            after = commit_totals(servers[-1].url)
            results[server.name].append(result)
            commits, events, seconds = (b - a for a, b in zip(before, after))
            groups = (
                f", {events / commits:.0f} events per commit, {seconds / commits * 1000:.1f} ms each"
                if commits and server.name == "eventlog"
                else ""
            )
            print(
                f"{name} run {run + 1} {server.name}: {result.requests_per_second:,.0f} req/s, "
                f"p50 {result.latency_p50_ms:.1f} ms, p99 {result.latency_p99_ms:.1f} ms, "
                f"errors {result.errors}{groups}",
                flush=True,
            )
    lines = []
    baseline = statistics.median(r.requests_per_second for r in results["no-op"])
    for server in servers:
        series = results[server.name]
        rates = [r.requests_per_second for r in series]
        median = statistics.median(rates)
        ratio = "1.00" if server.name == "no-op" else f"{median / baseline:.2f}"
        lines.append(
            f"| {name} | {server.name} | {median:,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) | "
            f"{f'{median * per_request:,.0f}' if per_request else '—'} | "
            f"{statistics.median(r.latency_p50_ms for r in series):.1f} | "
            f"{statistics.median(r.latency_p99_ms for r in series):.1f} | "
            f"{sum(r.errors for r in series)} | {ratio} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
