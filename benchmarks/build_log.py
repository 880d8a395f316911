"""Build a large event log directly through the storage backend, for read benchmarks.

Events come from the seeded Altinn-shaped workload and are appended through
`DuckDBStorage.append` in batches of `--batch` events (one Arrow table and
one transaction each), with the same key, digest and delivered JSON that the
writer stores. No HTTP and no writer thread are involved, so a build takes
minutes instead of hours. Every 1,000th event is validated with
`parse_event` to keep the generator honest.

    python benchmarks/build_log.py --events 10000000 --data-dir /tmp/eventlog-bench/10m

The result is `<data-dir>/events.duckdb`, which `eventlog serve --data-dir`
opens. The command prints the build time and the file size.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import _EPOCH, Workload

from eventlog import parse_event
from eventlog.duckdb_storage import DuckDBStorage, events_table
from eventlog.event import CORE_ATTRIBUTES, DATA_MEMBERS, attribute_strings
from eventlog.storage import EventRecord
from eventlog.writer import event_key, format_time

DATABASE_FILE = "events.duckdb"


def records(seed: int, start: int, count: int) -> list[EventRecord]:
    """Return the records of workload events `start` to `start + count - 1`, sequence = n + 1."""
    workload = Workload(seed)
    built: list[EventRecord] = []
    for offset, fields in enumerate(workload.events(start, count)):
        number = start + offset
        if number % 1000 == 0:
            parse_event(fields)  # Raises if the generator produced an invalid event.
        canonical = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
        # Recorded 10 ms apart, like the events' own times.
        recordedtime = _EPOCH + timedelta(milliseconds=10 * number)
        delivered = dict(fields)
        delivered["sequence"] = str(number + 1)
        delivered["recordedtime"] = format_time(recordedtime)
        built.append(
            EventRecord(
                sequence=number + 1,
                recordedtime=recordedtime,
                fields=fields,
                extensions={
                    name: value
                    for name, value in attribute_strings(fields).items()
                    if name not in CORE_ATTRIBUTES and name not in DATA_MEMBERS
                },
                key=event_key(fields["source"], fields["id"]),
                digest=hashlib.blake2b(canonical, digest_size=16).digest(),
                event=orjson.dumps(delivered),
            )
        )
    return built


def _batch(arguments: tuple[int, int, int]) -> pa.Table:
    return events_table(records(*arguments))


def batches(seed: int, first: int, total: int, size: int, workers: int) -> Iterator[pa.Table]:
    """Yield Arrow tables of records in sequence order, built by `workers` processes."""
    ranges = [(seed, start, min(size, total - start)) for start in range(first, total, size)]
    if workers <= 1:
        for arguments in ranges:
            yield _batch(arguments)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_batch, ranges)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, required=True, help="Events the log holds at the end.")
    parser.add_argument("--data-dir", type=Path, required=True, help="Folder of events.duckdb.")
    parser.add_argument("--seed", type=int, default=1, help="Workload seed [default: 1].")
    parser.add_argument("--batch", type=int, default=50_000, help="Events per transaction.")
    parser.add_argument("--workers", type=int, default=1, help="Generator processes [default: 1].")
    options = parser.parse_args()

    options.data_dir.mkdir(parents=True, exist_ok=True)
    path = options.data_dir / DATABASE_FILE
    storage = DuckDBStorage(path)
    head = storage.bounds().head
    if head >= options.events:
        print(f"{path} already holds {head} events; nothing to do.")
        return

    started = time.perf_counter()
    done = head
    inserting = 0.0
    for table in batches(options.seed, head, options.events, options.batch, options.workers):
        before = time.perf_counter()
        storage.append_table(table)
        inserting += time.perf_counter() - before
        done += table.num_rows
        elapsed = time.perf_counter() - started
        rate = (done - head) / elapsed
        print(
            f"{done:>11,} events  {elapsed:7.1f} s  {rate:9,.0f} events/s  "
            f"({inserting:.1f} s inserting)",
            flush=True,
        )
    storage.checkpoint()
    storage.close()
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    print(
        f"Built {done - head:,} events into {path} in {seconds:.1f} s "
        f"({(done - head) / seconds:,.0f} events/s); file size {size / 1e9:.2f} GB "
        f"({size / done:,.0f} bytes per event)."
    )


if __name__ == "__main__":
    main()
