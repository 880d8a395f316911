"""The tail's bound in bytes and its packed attributes."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from eventlog import EventLog, parse_event
from eventlog.event import attribute_strings
from eventlog.filters import Filter
from eventlog.log import DEFAULT_TAIL_BYTES, EVERY_EVENT
from eventlog.tail import AttributeView, Tail, TailEntry, pack_attributes
from feeds import cli

SUBJECTS = ("/party/1", "/party/2", "/party/3")
TYPES = ("order.created", "order.paid", "invoice.sent")
FILTERS = [
    {},
    {"type": ["order.*"]},
    {"subject": ["/party/2"], "type": ["order.paid", "invoice.*"]},
    {"region": ["north"]},
    {"region": ["s*"], "priority": ["1"]},
    {"flag": ["true"]},
    {"datacontenttype": ["application/json"]},
]


def make_event(number: int, tag: str, data_bytes: int) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"{tag}-{number}",
        "source": "https://tail.example/bytes",
        "type": TYPES[number % len(TYPES)],
        "subject": SUBJECTS[number % len(SUBJECTS)],
        "datacontenttype": "application/json",
        "data": {"padding": "x" * data_bytes},
    }
    if number % 2:
        event["region"] = "north" if number % 3 else "south"
        event["priority"] = number % 4
    if number % 5 == 0:
        event["flag"] = number % 10 == 0
    return event


def make_batch(first: int, count: int, tag: str, seed: int) -> list[dict[str, Any]]:
    sizes = random.Random(seed)
    return [
        make_event(number, tag, sizes.randint(10, 3_000)) for number in range(first, first + count)
    ]


async def reads_equal_storage(log: EventLog) -> None:
    """Check that every page from the log, tail or not, equals the same scan of storage."""
    for values in FILTERS:
        matcher = Filter.parse(values) if values else EVERY_EVENT
        for after in range(0, log.head + 1, 37):
            page = await log.read(after=after, filter=matcher, limit=50)
            stored = log.storage.scan(after, log.head, matcher, 50)
            assert page.events == stored.events, (values, after)


def test_tail_evicts_by_bytes(tmp_path: Path) -> None:
    max_bytes = 60_000

    async def run() -> None:
        log = await EventLog.open(
            tmp_path / "events.duckdb", tail_capacity=1_000, tail_bytes=max_bytes
        )
        try:
            for step in range(6):
                batch = make_batch(step * 40, 40, "evict", seed=step)
                await log.append([parse_event(event) for event in batch])
            tail = log._tail

            assert log.head == 240
            assert tail.last == log.head
            assert tail.bytes <= max_bytes
            assert tail.size < log.head
            # The oldest event that was dropped would not have fitted.
            dropped = tail.first - 1
            [oldest_dropped] = log.storage.scan(dropped - 1, dropped, EVERY_EVENT, 1).events
            assert tail.bytes + len(oldest_dropped.event) > max_bytes
            assert tail.bytes == sum(
                len(tail.get(s).event) for s in range(tail.first, tail.last + 1)
            )
            await reads_equal_storage(log)
        finally:
            await log.close()

    asyncio.run(run())


def test_fill_after_restart_keeps_byte_bound(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    max_bytes = 50_000

    async def publish() -> None:
        log = await EventLog.open(path, tail_bytes=None)
        try:
            for step in range(5):
                batch = make_batch(step * 60, 60, "fill", seed=10 + step)
                await log.append([parse_event(event) for event in batch])
        finally:
            await log.close()

    async def reopen() -> None:
        log = await EventLog.open(path, tail_capacity=1_000, tail_bytes=max_bytes)
        try:
            await log.wait_for_tail()
            tail = log._tail

            assert tail.last == log.head == 300
            assert 0 < tail.bytes <= max_bytes
            assert tail.size < log.head
            dropped = tail.first - 1
            [oldest_dropped] = log.storage.scan(dropped - 1, dropped, EVERY_EVENT, 1).events
            assert tail.bytes + len(oldest_dropped.event) > max_bytes
            await reads_equal_storage(log)

            await log.append([parse_event(e) for e in make_batch(300, 30, "after", seed=20)])
            assert tail.bytes <= max_bytes
            assert tail.last == log.head
            await reads_equal_storage(log)
        finally:
            await log.close()

    asyncio.run(publish())
    asyncio.run(reopen())


def entry(sequence: int, size: int) -> TailEntry:
    return TailEntry.of(sequence, {"id": str(sequence)}, b"x" * size)


def test_tail_keeps_newest_event_over_bound() -> None:
    tail = Tail(10, max_bytes=100)
    tail.append(entry(1, 60))
    tail.append(entry(2, 30))
    tail.append(entry(3, 150))

    assert (tail.first, tail.last, tail.bytes) == (3, 3, 150)

    tail.append(entry(4, 40))
    assert (tail.first, tail.last, tail.bytes) == (4, 4, 40)


def test_prepend_stops_at_byte_bound() -> None:
    tail = Tail(10, max_bytes=100)
    tail.reset(5)
    tail.append(entry(6, 40))

    added = tail.prepend([entry(sequence, 25) for sequence in range(1, 6)])

    assert added == 2
    assert (tail.first, tail.last, tail.bytes) == (4, 6, 90)
    assert [tail.get(sequence).sequence for sequence in range(4, 7)] == [4, 5, 6]


def test_discard_through_subtracts_bytes() -> None:
    tail = Tail(10, max_bytes=1_000)
    for sequence in range(1, 6):
        tail.append(entry(sequence, sequence * 10))

    tail.discard_through(2)

    assert (tail.first, tail.bytes) == (3, 120)


@pytest.mark.parametrize("number", range(12))
def test_packed_attributes_match_like_dict(number: int) -> None:
    event = make_event(number, "pack", 5)
    attributes = attribute_strings(
        {**event, "sequence": "7", "recordedtime": "2026-01-01T00:00:00Z"}
    )
    del attributes["sequence"], attributes["recordedtime"]
    view = AttributeView(pack_attributes(attributes))

    assert dict(view) == attributes
    for name in [*attributes, "dataschema", "missing", "time"]:
        assert view.get(name) == attributes.get(name)
    for values in FILTERS:
        matcher = Filter.parse(values)
        assert matcher.matches(view) == matcher.matches(attributes), values


def test_cli_default_tail_bytes_equals_log() -> None:
    assert cli.SERVER_DEFAULT_TAIL_BYTES == DEFAULT_TAIL_BYTES
