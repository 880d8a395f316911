"""Soak the server: steady publishes, page reads and SSE streams, with resource samples.

    python benchmarks/soak.py --minutes 30 --output benchmarks/data/soak.json

The server runs under uvicorn (uvloop and httptools) on 127.0.0.1 with a
fresh data folder. Publisher threads send singles and batches of up to 20
events, each pausing `--pause` seconds between requests. Page readers
follow the feed with long-polls and SSE readers stay attached. Half of the
readers of each kind read every event, and half one event type. Every `--sample-seconds` the
script records the server's resident set size, its open file descriptors
(/proc/PID/fd), and the sizes of events.duckdb and its write-ahead log.

At the end it prints a table with one sample per minute and the minimum,
median and maximum of each figure, and writes every sample as JSON. The
readers check as they go that sequences increase and that the unfiltered
ones skip none. The run fails if the head differs from the number of
events the publishers had acknowledged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from conftest import Server
from harness import ProcessSample, SoakResult, run_soak

MIB = 1024 * 1024


def main() -> None:
    arguments = parse_arguments()
    with tempfile.TemporaryDirectory(prefix="eventlog-soak-") as folder:
        server = Server(Path(folder) / "data")
        server.start()
        print(f"server pid {server.process.pid if server.process else '?'} at {server.url}")

        def report(sample: ProcessSample, head: int) -> None:
            print(
                f"{sample.seconds:7.0f} s  head {head:>9}  rss {sample.rss_bytes / MIB:7.1f} MiB  "
                f"files {sample.open_files:4}  wal {sample.wal_bytes / MIB:6.2f} MiB  "
                f"db {sample.database_bytes / MIB:8.1f} MiB",
                flush=True,
            )

        result = run_soak(
            server,
            arguments.minutes * 60,
            arguments.sample_seconds,
            publishers=arguments.publishers,
            pause=arguments.pause,
            page_readers=arguments.page_readers,
            stream_readers=arguments.stream_readers,
            on_sample=report,
        )
        print(f"the server exited {result.stop_seconds:.2f} s after SIGTERM")

    summary = summarize(result)
    print(summary)
    if arguments.output is not None:
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "arguments": {k: str(v) for k, v in vars(arguments).items()},
            "acknowledged": result.acknowledged,
            "samples": [
                asdict(sample) | {"head": head}
                for sample, head in zip(result.samples, result.heads)
            ],
        }
        arguments.output.write_text(json.dumps(document, indent=1))
        arguments.output.with_suffix(".md").write_text(summary)
    if result.final_head != result.acknowledged:
        sys.exit(
            f"the head {result.final_head} differs from the {result.acknowledged} "
            "acknowledged events"
        )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--publishers", type=int, default=4, help="publisher threads")
    parser.add_argument(
        "--pause", type=float, default=0.05, help="seconds each publisher waits between requests"
    )
    parser.add_argument("--page-readers", type=int, default=2, help="long-polling page readers")
    parser.add_argument("--stream-readers", type=int, default=8, help="SSE readers")
    parser.add_argument("--output", type=Path, help="JSON file for the samples; a .md summary too")
    return parser.parse_args()


def summarize(result: SoakResult) -> str:
    """Return a Markdown table of one sample per minute, then min, median and max."""
    rows = [
        "| minute | head | events/s | RSS MiB | open files | WAL MiB | database MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    previous_head, previous_seconds = 0, 0.0
    minute = 0
    for sample, head in zip(result.samples, result.heads):
        if sample.seconds < minute * 60 and sample is not result.samples[-1]:
            continue
        elapsed = sample.seconds - previous_seconds
        rate = f"{(head - previous_head) / elapsed:.0f}" if elapsed >= 1 else "-"
        rows.append(
            f"| {sample.seconds / 60:.0f} | {head} | {rate} | {sample.rss_bytes / MIB:.1f} "
            f"| {sample.open_files} | {sample.wal_bytes / MIB:.2f} "
            f"| {sample.database_bytes / MIB:.1f} |"
        )
        previous_head, previous_seconds = head, sample.seconds
        minute = int(sample.seconds // 60) + 1

    rows += ["", "| figure | min | median | max |", "| --- | ---: | ---: | ---: |"]
    figures = {
        "RSS MiB": [s.rss_bytes / MIB for s in result.samples],
        "open files": [float(s.open_files) for s in result.samples],
        "WAL MiB": [s.wal_bytes / MIB for s in result.samples],
    }
    for name, values in figures.items():
        rows.append(
            f"| {name} | {min(values):.1f} | {statistics.median(values):.1f} | {max(values):.1f} |"
        )
    streams = sum(reader.reconnects for reader in result.readers)
    rows.append("")
    rows.append(
        f"{result.acknowledged} events acknowledged in {result.samples[-1].seconds:.0f} s, "
        f"{len(result.samples)} samples; readers reconnected {streams} times; the server "
        f"exited {result.stop_seconds:.2f} s after SIGTERM."
    )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
