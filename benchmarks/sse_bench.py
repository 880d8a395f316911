"""SSE fan-out: many `GET /events/stream` clients while a publisher sends a steady rate.

    python benchmarks/sse_bench.py --clients 2000 --rate 1000 --seconds 20
    python benchmarks/sse_bench.py --clients 1000 --rate 100 --data-dir /tmp/eventlog-bench/10m

Clients run in `--processes` separate processes, each with many connections
on one asyncio loop over plain sockets (no HTTP client library, so that the
clients cost as little CPU as possible). The publisher POSTs batches of
`--batch` workload events at `--rate` events per second, each event's data
carrying the time it was sent; a client computes publish-to-receive latency
from that time on arrival. Every client checks that it receives every
sequence, in order, with no gap. The server's RSS is read from /proc at the
end, with all clients still connected, and its CPU time (user and system)
from the start of publishing until 2 s after it ends. On a shared machine
that CPU time per delivered message varies less than the latencies, which
depend on how much CPU the server gets.

The server is `eventlog serve --no-auth` on 127.0.0.1; runs are bounded by
`--seconds` and stop by themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import Workload

# Latency histogram: 1 ms buckets up to 10 s, then one overflow bucket.
BUCKETS = 10_001


@dataclass
class ClientReport:
    connected: int = 0
    received: int = 0
    gaps: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    first_sequences: list[int] = field(default_factory=list)
    last_sequences: list[int] = field(default_factory=list)


async def follow(host: str, port: int, report: ClientReport, stop_at: float, ready: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET /events/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    report.connected += 1
    buffer = b""
    last = None
    first = None
    histogram = report.histogram
    try:
        while time.time() < stop_at:
            try:
                chunk = await asyncio.wait_for(reader.read(262_144), max(0.01, stop_at - time.time()))
            except TimeoutError:
                break
            if not chunk:
                break
            now = time.time()
            buffer += chunk
            # Messages are "id: N\ndata: {...}\n\n"; chunked-encoding size lines
            # between them are skipped because only complete messages are read.
            while True:
                start = buffer.find(b"id: ")
                if start < 0:
                    # Keep a prefix of "id: " that the next read completes.
                    buffer = buffer[-3:]
                    break
                end = buffer.find(b"\n\n", start)
                if end < 0:
                    buffer = buffer[start:]
                    break
                message = buffer[start:end]
                buffer = buffer[end + 2 :]
                newline = message.find(b"\n")
                if newline < 0 or not message.startswith(b"data: ", newline + 1):
                    continue  # The first message: retry and the start cursor only.
                sequence = int(message[4:newline])
                sent_at = message.find(b'"sent":', newline)
                if sent_at >= 0:
                    stop = message.find(b",", sent_at)
                    closing = message.find(b"}", sent_at)
                    stop = closing if stop < 0 or (0 <= closing < stop) else stop
                    latency = now - float(message[sent_at + 7 : stop])
                    histogram[min(BUCKETS - 1, max(0, int(latency * 1000)))] += 1
                if last is not None and sequence != last + 1:
                    report.gaps += 1
                if first is None:
                    first = sequence
                last = sequence
                report.received += 1
    finally:
        writer.close()
        report.first_sequences.append(first or 0)
        report.last_sequences.append(last or 0)


def client_process(host: str, port: int, connections: int, stop_at: float, queue: Any) -> None:
    async def run() -> ClientReport:
        report = ClientReport()
        ready = asyncio.Event()
        tasks = []
        for _ in range(connections):
            tasks.append(asyncio.create_task(follow(host, port, report, stop_at, ready)))
            await asyncio.sleep(0.002)  # Spread the connects out.
        await asyncio.gather(*tasks, return_exceptions=True)
        return report

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    report = asyncio.run(run())
    queue.put(report.__dict__)


def publish(url: str, rate: int, batch: int, seconds: float, seed: int) -> tuple[int, int]:
    """POST `rate` events per second in batches for `seconds`; return (events, late batches)."""
    templates = list(Workload(seed, id_prefix="sse-").events(0, 500))
    # Ids unique to this run: an id reused with other content is a 409 conflict.
    run = time.time_ns()
    interval = batch / rate
    sent = 0
    late = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        start = time.monotonic()
        tick = 0
        while time.monotonic() - start < seconds:
            events = []
            for _ in range(batch):
                event = dict(templates[sent % len(templates)])
                event["id"] = f"sse-{seed}-{run}-{sent}"
                event["data"] = {**event["data"], "sent": time.time()}
                events.append(event)
                sent += 1
            response = client.post(
                "/events",
                content=orjson.dumps(events),
                headers={"Content-Type": "application/cloudevents-batch+json"},
            )
            response.raise_for_status()
            tick += 1
            pause = start + tick * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                late += 1
    return sent, late


def server_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time of process `pid` so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of proc(5), counted from the pid.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=1000, help="Events per second published.")
    parser.add_argument("--batch", type=int, default=20, help="Events per publish request.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Publishing time.")
    parser.add_argument("--processes", type=int, default=4, help="Client processes.")
    parser.add_argument("--data-dir", type=Path, help="Serve this log instead of an empty one.")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument(
        "--tail-capacity", type=int, help="Passed to eventlog serve [default: its own]."
    )
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="eventlog-bench-sse-"))
    data_dir = options.data_dir or scratch / "data"
    command = [
        str(Path(sys.executable).with_name("eventlog")), "serve", "--no-auth",
        "--data-dir", str(data_dir), "--port", str(options.port), "--log-level", "warning",
    ]  # fmt: skip
    if options.tail_capacity is not None:
        command += ["--tail-capacity", str(options.tail_capacity)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{options.port}"
    processes: list[Any] = []
    try:
        started = time.monotonic()
        while True:
            try:
                head = httpx.get(f"{url}/health", timeout=1).json()["head"]
                break
            except httpx.HTTPError:
                if time.monotonic() - started > 120 or server.poll() is not None:
                    raise RuntimeError("The server did not start within 120 s.") from None
                time.sleep(0.2)
        rss_idle = server_rss_mb(server.pid)
        # Connect everyone, then publish; clients stop 5 s after the publisher.
        connect_seconds = 2 + options.clients * 0.002 / options.processes + 3
        stop_at = time.time() + connect_seconds + options.seconds + 5
        queue: Any = multiprocessing.get_context("fork").Queue()
        per_process = [options.clients // options.processes] * options.processes
        per_process[0] += options.clients - sum(per_process)
        processes = [
            multiprocessing.get_context("fork").Process(
                target=client_process,
                args=("127.0.0.1", options.port, count, stop_at, queue),
                daemon=True,
            )
            for count in per_process
        ]
        for process in processes:
            process.start()
        time.sleep(connect_seconds)
        rss_connected = server_rss_mb(server.pid)
        cpu_start = server_cpu_seconds(server.pid)
        published, late = publish(url, options.rate, options.batch, options.seconds, seed=9)
        time.sleep(2)
        rss_end = server_rss_mb(server.pid)
        cpu = server_cpu_seconds(server.pid) - cpu_start
        reports = [queue.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(30)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(scratch, ignore_errors=True)

    summarize(options, reports, published, late, head, (rss_idle, rss_connected, rss_end), cpu)


def summarize(
    options: argparse.Namespace,
    reports: list[dict[str, Any]],
    published: int,
    late: int,
    head: int,
    rss: tuple[float, float, float],
    cpu: float,
) -> None:
    histogram = [sum(column) for column in zip(*(report["histogram"] for report in reports))]
    received = sum(report["received"] for report in reports)
    connected = sum(report["connected"] for report in reports)
    gaps = sum(report["gaps"] for report in reports)
    firsts = [s for report in reports for s in report["first_sequences"]]
    lasts = [s for report in reports for s in report["last_sequences"]]
    complete = sum(1 for first, last in zip(firsts, lasts) if first == head + 1 and last == head + published)
    expected = published * options.clients

    def percentile(fraction: float) -> float:
        target = fraction * sum(histogram)
        running = 0
        for milliseconds, count in enumerate(histogram):
            running += count
            if running >= target:
                return float(milliseconds)
        return float("nan")

    print()
    print("| clients | events/s | published | delivered / expected | clients complete | gaps | p50 ms | p99 ms | max ms | server RSS MB (idle, connected, end) | server CPU s | server CPU µs per message |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {connected}/{options.clients} | {options.rate} | {published:,} (late batches {late}) | "
        f"{received:,} / {expected:,} ({received / max(1, expected):.1%}) | {complete} | {gaps} | "
        f"{percentile(0.5):.0f} | {percentile(0.99):.0f} | "
        f"{max((i for i, c in enumerate(histogram) if c), default=0)} | "
        f"{rss[0]:.0f}, {rss[1]:.0f}, {rss[2]:.0f} | "
        f"{cpu:.1f} | {cpu * 1e6 / max(1, received):.1f} |"
    )
    if statistics.mean(histogram[-1:]) > 0:
        print("(Some latencies exceeded 10 s and are counted in the last bucket.)")


if __name__ == "__main__":
    main()
