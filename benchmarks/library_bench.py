"""The log as a library against the `eventsourcing` library's SQLite recorder, in one run.

    python benchmarks/library_bench.py append --runs 5 --seconds 10
    python benchmarks/library_bench.py read --log /tmp/eventlog-bench/1m/events.duckdb \\
        --sqlite /tmp/eventlog-bench/1m/eventsourcing.sqlite
    python benchmarks/library_bench.py analytics --log /tmp/eventlog-bench/10m/events.duckdb \\
        --sqlite /tmp/eventlog-bench/10m/eventsourcing.sqlite

`append`: 64 concurrent writers append one event at a time for `--seconds`,
each on a fresh database: `EventLog.append` from 64 asyncio tasks, and
`SQLiteApplicationRecorder.insert_events` from 64 threads. Both are durable
on return: DuckDB syncs its WAL on commit, and SQLite runs in WAL mode with
`synchronous=FULL` (checked and printed). Events are parsed beforehand, so
neither side pays for JSON decoding or validation.

`read`: pages of 100 events after uniformly random positions, with
`EventLog.read` (history from storage) and `select_notifications`.

`analytics`: `SELECT type, count(*) … GROUP BY type` on DuckDB, and the same
on the recorder's `topic` column in SQLite. `sqlite-load` copies a DuckDB log
into a recorder database through `insert_events`; `--copies N` then repeats
those rows in SQL with new originator ids, to match a log N times as long.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import Workload

from eventlog import Event, EventLog, parse_event
from eventlog.log import READER_THREADS

WRITERS = 64


def parsed_events(count: int, seed: int) -> list[Event]:
    return [parse_event(event) for event in Workload(seed, id_prefix=f"{seed}-").events(0, count)]


async def eventlog_append(events: list[Event], seconds: float, folder: Path) -> float:
    log = await EventLog.open(folder / "events.duckdb")
    position = 0
    appended = 0
    deadline = time.monotonic() + seconds

    async def writer() -> None:
        nonlocal position, appended
        while time.monotonic() < deadline and position < len(events):
            event = events[position]
            position += 1
            await log.append([event])
            appended += 1

    started = time.monotonic()
    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    elapsed = time.monotonic() - started
    await log.close()
    return appended / elapsed


def recorder_at(path: Path) -> SQLiteApplicationRecorder:
    datastore = SQLiteDatastore(str(path), pool_size=WRITERS, max_overflow=WRITERS)
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    return recorder


def sqlite_settings(path: Path) -> str:
    """Return the journal mode and synchronous level of a new connection to `path`."""
    recorder = recorder_at(path)
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA journal_mode")
        mode = cursor.fetchone()[0]
        cursor.execute("PRAGMA synchronous")
        level = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[cursor.fetchone()[0]]
    recorder.datastore.close()
    return f"journal_mode={mode}, synchronous={level}"


def stored(event: Event) -> StoredEvent:
    return StoredEvent(
        originator_id=uuid.uuid4(),
        originator_version=1,
        topic=str(event.fields["type"]),
        state=event.canonical,
    )


def sqlite_append(events: list[Event], seconds: float, folder: Path) -> float:
    recorder = recorder_at(folder / "eventsourcing.sqlite")
    items = [stored(event) for event in events]
    lock = threading.Lock()
    position = 0
    appended = 0
    deadline = time.monotonic() + seconds

    def writer() -> None:
        nonlocal position, appended
        while time.monotonic() < deadline:
            with lock:
                if position >= len(items):
                    return
                item = items[position]
                position += 1
            recorder.insert_events([item])
            with lock:
                appended += 1

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    recorder.datastore.close()
    return appended / elapsed


def run_append(options: argparse.Namespace) -> None:
    # Enough events for the fastest run seen, with room to spare.
    events = parsed_events(options.events, seed=5)
    probe = Path(tempfile.mkdtemp(prefix="eventlog-bench-"))
    print(f"SQLite settings: {sqlite_settings(probe / 'probe.sqlite')}")
    shutil.rmtree(probe)
    rates: dict[str, list[float]] = {"eventlog": [], "eventsourcing-sqlite": []}
    for run in range(options.runs):
        for name, series in rates.items():
            folder = Path(tempfile.mkdtemp(prefix="eventlog-bench-"))
            try:
                if name == "eventlog":
                    rate = asyncio.run(eventlog_append(events, options.seconds, folder))
                else:
                    rate = sqlite_append(events, options.seconds, folder)
            finally:
                shutil.rmtree(folder)
            series.append(rate)
            print(f"append run {run + 1} {name}: {rate:,.0f} events/s", flush=True)
    table("append, 64 concurrent writers", rates, "events/s", higher_is_better=True)


async def eventlog_reads(path: Path, count: int) -> list[float]:
    # A tail of one event: every read comes from storage, as history reads do.
    log = await EventLog.open(path, tail_capacity=1)
    head = log.head
    generator = random.Random(7)
    times = []
    for _ in range(count):
        after = generator.randint(0, head - 100)
        started = time.perf_counter()
        page = await log.read(after=after, limit=100)
        times.append(time.perf_counter() - started)
        if len(page.events) != 100:
            raise RuntimeError(f"A page after {after} held {len(page.events)} events, not 100.")
    await log.close()
    return times


def sqlite_reads(path: Path, count: int) -> list[float]:
    recorder = recorder_at(path)
    head = recorder.max_notification_id()
    generator = random.Random(7)
    times = []
    for _ in range(count):
        start = generator.randint(1, head - 100)
        started = time.perf_counter()
        page = recorder.select_notifications(start, 100)
        times.append(time.perf_counter() - started)
        if len(page) != 100:
            raise RuntimeError(f"A page from {start} held {len(page)} notifications, not 100.")
    recorder.datastore.close()
    return times


def run_read(options: argparse.Namespace) -> None:
    latencies: dict[str, list[float]] = {"eventlog": [], "eventsourcing-sqlite": []}
    for run in range(options.runs):
        for name, measure in (
            ("eventlog", lambda: asyncio.run(eventlog_reads(options.log, options.pages))),
            ("eventsourcing-sqlite", lambda: sqlite_reads(options.sqlite, options.pages)),
        ):
            times = measure()
            median = statistics.median(times) * 1000
            latencies[name].append(median)
            print(f"read run {run + 1} {name}: median {median:.2f} ms per page", flush=True)
    table("page of 100 at a random position, median ms", latencies, "ms", higher_is_better=False)
    print(f"(EventLog reads run on {READER_THREADS} reader threads, one read at a time here.)")


def timed(function: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def run_analytics(options: argparse.Namespace) -> None:
    database = duckdb.connect(str(options.log), read_only=True)
    rows = database.execute("SELECT count(*) FROM events").fetchone()
    print(f"DuckDB log: {rows[0]:,} events; SQLite: ", end="")
    sqlite = sqlite3.connect(f"file:{options.sqlite}?mode=ro", uri=True)
    print(f"{sqlite.execute('SELECT count(*) FROM stored_events').fetchone()[0]:,} events")
    query = "SELECT type, count(*) FROM events GROUP BY type ORDER BY 2 DESC"
    sqlite_query = "SELECT topic, count(*) FROM stored_events GROUP BY topic ORDER BY 2 DESC"
    seconds: dict[str, list[float]] = {"eventlog-duckdb": [], "eventsourcing-sqlite": []}
    for run in range(options.runs):
        duck = timed(lambda: database.execute(query).fetchall(), 1)[0]
        lite = timed(lambda: sqlite.execute(sqlite_query).fetchall(), 1)[0]
        seconds["eventlog-duckdb"].append(duck)
        seconds["eventsourcing-sqlite"].append(lite)
        print(f"analytics run {run + 1}: DuckDB {duck:.3f} s, SQLite {lite:.3f} s", flush=True)
    table("GROUP BY type, seconds", seconds, "s", higher_is_better=False)


def run_sqlite_load(options: argparse.Namespace) -> None:
    """Copy a DuckDB log into a recorder database, then repeat its rows `--copies` times in all."""
    recorder = recorder_at(options.sqlite)
    database = duckdb.connect(str(options.log), read_only=True)
    started = time.perf_counter()
    total = 0
    cursor = database.execute("SELECT type, event FROM events ORDER BY sequence")
    while batch := cursor.fetchmany(20_000):
        recorder.insert_events([StoredEvent(uuid.uuid4(), 1, row[0], row[1].encode()) for row in batch])
        total += len(batch)
    print(f"Loaded {total:,} events through the recorder in {time.perf_counter() - started:.0f} s")
    recorder.datastore.close()
    # Further copies in SQL, with fresh originator ids: the same rows, like a longer log.
    connection = sqlite3.connect(options.sqlite)
    for copy in range(1, options.copies):
        connection.execute(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "SELECT lower(hex(randomblob(16))), originator_version, topic, state "
            "FROM stored_events WHERE rowid <= ?",
            [total],
        )
        connection.commit()
        print(f"copy {copy + 1}: {total * (copy + 1):,} events after {time.perf_counter() - started:.0f} s")
    connection.close()
    print(f"{options.sqlite}: {options.sqlite.stat().st_size / 1e9:.2f} GB")


def table(title: str, values: dict[str, list[float]], unit: str, higher_is_better: bool) -> None:
    names = list(values)
    baseline = statistics.median(values[names[-1]])
    print()
    print(f"{title}")
    print(f"| library | median {unit} (min–max) | ratio to {names[-1]} |")
    print("| --- | --- | --- |")
    for name in names:
        series = values[name]
        median = statistics.median(series)
        ratio = median / baseline if higher_is_better else baseline / median
        print(
            f"| {name} | {_number(median)} ({_number(min(series))}–{_number(max(series))}) | "
            f"{ratio:.2f}× |"
        )


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("append", "read", "analytics", "sqlite-load"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of an append run.")
    parser.add_argument("--events", type=int, default=100_000, help="Events prepared for append.")
    parser.add_argument("--pages", type=int, default=200, help="Pages per read run.")
    parser.add_argument("--log", type=Path, help="A DuckDB log built by build_log.py.")
    parser.add_argument("--sqlite", type=Path, help="A recorder database.")
    parser.add_argument("--copies", type=int, default=1, help="Times the loaded rows appear.")
    options = parser.parse_args()
    {
        "append": run_append,
        "read": run_read,
        "analytics": run_analytics,
        "sqlite-load": run_sqlite_load,
    }[options.command](options)


if __name__ == "__main__":
    main()
