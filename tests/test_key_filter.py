"""The filter of stored keys: built the same in SQL and Python, and duplicates still found through it."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path

import pytest

from eventlog import EventLog, parse_event
from eventlog.duckdb_storage import DuckDBStorage
from eventlog.event import Event, event_key
from eventlog.keyfilter import HASHES, KeyFilter, bits_for

FILLED = "Filled the filter of stored keys"


def make_events(prefix: str, count: int) -> list[Event]:
    return [
        parse_event(
            {
                "specversion": "1.0",
                "id": f"{prefix}-{n}",
                "source": "https://filter.example/test",
                "type": "filter.test",
                "data": {"n": n},
            }
        )
        for n in range(count)
    ]


def test_filter_has_every_added_key() -> None:
    keys = [event_key("https://filter.example", str(n)) for n in range(20_000)]
    key_filter = KeyFilter(bits_for(len(keys)))
    for key in keys:
        key_filter.add(key)

    assert all(key_filter.may_contain(key) for key in keys)


def test_filter_rejects_most_other_keys() -> None:
    key_filter = KeyFilter(bits_for(0))
    for n in range(100_000):
        key_filter.add(event_key("https://filter.example", str(n)))
    others = random.Random(7)

    false_positives = sum(key_filter.may_contain(others.getrandbits(63)) for _ in range(100_000))

    # At 240 bits per key almost no false positive is expected; 0.1% is the bound.
    assert false_positives < 100


def test_sizes_must_match() -> None:
    with pytest.raises(ValueError, match="multiple of 64"):
        KeyFilter(100)
    with pytest.raises(ValueError, match="bytes"):
        KeyFilter(128, bytes(8))


def test_storage_builds_the_same_bitmap(tmp_path: Path) -> None:
    async def fill() -> list[int]:
        log = await EventLog.open(tmp_path / "events.duckdb")
        try:
            appended = await log.append(make_events("same", 3_000))
        finally:
            await log.close()
        return [outcome.sequence for outcome in appended]

    sequences = asyncio.run(fill())
    bits = bits_for(3_000)
    storage = DuckDBStorage(tmp_path / "events.duckdb")
    try:
        from_storage = storage.key_filter(bits, HASHES, through=2_000)
    finally:
        storage.close()
    in_python = KeyFilter(bits)
    for event, sequence in zip(make_events("same", 3_000), sequences):
        if sequence <= 2_000:
            in_python.add(event.key)

    assert from_storage == in_python.bitmap


def test_duplicates_found_before_and_after_fill(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.duckdb"
    first = make_events("first", 500)
    second = make_events("second", 500)

    async def run() -> tuple[list[bool], list[bool], list[bool], list[bool]]:
        log = await EventLog.open(path)
        try:
            await log.append(first)
        finally:
            await log.close()
        caplog.clear()
        log = await EventLog.open(path)
        try:
            # The first group after a start checks storage for every key.
            before_fill = await log.append(first[:100])
            deadline = time.monotonic() + 60
            while FILLED not in caplog.text and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert FILLED in caplog.text
            after_fill = await log.append(first)
            new = await log.append(second)
            again = await log.append(second)
        finally:
            await log.close()
        return (
            [outcome.duplicate for outcome in before_fill],
            [outcome.duplicate for outcome in after_fill],
            [outcome.duplicate for outcome in new],
            [outcome.duplicate for outcome in again],
        )

    with caplog.at_level(logging.INFO, logger="eventlog.writer"):
        before_fill, after_fill, new, again = asyncio.run(run())

    assert all(before_fill)
    assert all(after_fill)
    assert not any(new)
    assert all(again)
