"""Duplicate checks without the ART index on `key`, and the key filter of an empty log."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import duckdb
import pytest

from eventlog import EventLog, parse_event
from eventlog.duckdb_storage import DuckDBStorage
from eventlog.errors import DuplicateConflict
from eventlog.keyfilter import HASHES, bits_for


def make_event(number: int, tag: str, data_bytes: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{tag}-{number}",
        "source": "https://index.example/keys",
        "type": "order.created",
        "data": {"padding": "x" * data_bytes},
    }


def make_batch(first: int, count: int, tag: str, seed: int) -> list[dict[str, Any]]:
    sizes = random.Random(seed)
    return [
        make_event(number, tag, sizes.randint(10, 3_000)) for number in range(first, first + count)
    ]


def test_key_filter_of_empty_log_is_zero(tmp_path: Path) -> None:
    storage = DuckDBStorage(tmp_path / "events.duckdb")
    try:
        bitmap = storage.key_filter(bits_for(0), HASHES, through=0)
    finally:
        storage.close()

    assert len(bitmap) == bits_for(0) // 8
    assert not any(bitmap)


def test_open_drops_old_key_index(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    storage = DuckDBStorage(path)
    storage.close()
    database = duckdb.connect(str(path))
    database.execute("CREATE INDEX events_key ON events (key)")
    database.close()

    DuckDBStorage(path).close()

    database = duckdb.connect(str(path), read_only=True)
    try:
        indexes = database.execute("SELECT index_name FROM duckdb_indexes()").fetchall()
    finally:
        database.close()
    assert indexes == []


def test_duplicates_found_without_index(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    stored = [parse_event(event) for event in make_batch(0, 300, "dup", seed=30)]
    changed = parse_event({**make_event(7, "dup", 10), "type": "order.changed"})

    async def run() -> None:
        log = await EventLog.open(path)
        try:
            await log.append(stored)
        finally:
            await log.close()

        log = await EventLog.open(path)
        try:
            # Before the filter of stored keys is filled, every key is looked up.
            before_fill = await log.append(stored[:50])
            assert [outcome.sequence for outcome in before_fill] == list(range(1, 51))
            assert all(outcome.duplicate for outcome in before_fill)

            while log._writer._keys is None:
                await asyncio.sleep(0.05)
            after_fill = await log.append(stored[250:])
            assert [outcome.sequence for outcome in after_fill] == list(range(251, 301))
            assert all(outcome.duplicate for outcome in after_fill)
            with pytest.raises(DuplicateConflict):
                await log.append([changed])
            assert log.head == 300
        finally:
            await log.close()

    asyncio.run(run())
