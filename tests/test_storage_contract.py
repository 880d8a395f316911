"""The contract of `eventlog.storage.Storage`, run against every backend.

These tests use only the interface: a new backend (PostgreSQL, say) joins
`BACKENDS` and must pass them unchanged. Which events a filter selects is
defined by `Filter.matches` and `Selection.matches`, the Python side that
the in-memory tail uses, so every backend must agree with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventlog.duckdb_storage import DuckDBStorage
from eventlog.errors import EventLogError, LogUnavailable
from eventlog.event import attribute_strings, parse_event
from eventlog.filters import Filter, Matcher, Selection
from eventlog.storage import (
    AuditQuery,
    AuditRecord,
    EventRecord,
    Storage,
    StoredEvent,
    SubscriptionRecord,
)
from eventlog.writer import _record, event_key, format_time

# A function that opens the same store each time it is called, so that a
# test can close a store and open it again.
Opener = Callable[[], Storage]

BACKENDS: dict[str, Callable[[Path], Opener]] = {
    "duckdb": lambda folder: lambda: DuckDBStorage(folder / "events.duckdb"),
}

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TYPES = ["order.created", "order.paid", "invoice.created"]
SOURCES = ["/shop", "/shop/eu", "https://billing.example.com"]


def make_records(count: int, first: int = 1) -> list[EventRecord]:
    """Records with sequences `first`.. and recorded times one second apart.

    Attributes cycle through small sets so that filters select some of them,
    and some events lack `subject` or an extension.
    """
    records = []
    for sequence in range(first, first + count):
        fields: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"event-{sequence}",
            "source": SOURCES[sequence % len(SOURCES)],
            "type": TYPES[sequence % len(TYPES)],
            "data": {"n": sequence},
        }
        if sequence % 2:
            fields["subject"] = f"/party/{sequence % 5}"
        if sequence % 3:
            fields["resource"] = f"urn:r:{sequence % 4}"
            fields["urgent"] = sequence % 4 == 1
            fields["level"] = sequence % 7
        records.append(record(fields, sequence))
    return records


def record(fields: dict[str, Any], sequence: int) -> EventRecord:
    event = parse_event(fields)
    recordedtime = START + timedelta(seconds=sequence)
    return _record(event, sequence, recordedtime, format_time(recordedtime), event.digest)


def attributes(stored: StoredEvent) -> dict[str, str]:
    return attribute_strings(orjson.loads(stored.event))


def scan_all(
    store: Storage, after: int, last: int, matcher: Matcher, limit: int
) -> list[StoredEvent]:
    """Follow `scanned_to` from `after` until `last`, checking each step's promises."""
    found: list[StoredEvent] = []
    position = after
    for _ in range(10_000):
        if position >= last:
            return found
        result = store.scan(position, last, matcher, limit)
        assert position < result.scanned_to <= last, (
            "each scan must make progress and stay in range"
        )
        assert len(result.events) <= limit
        sequences = [event.sequence for event in result.events]
        assert sequences == sorted(sequences)
        assert all(position < sequence <= result.scanned_to for sequence in sequences)
        found.extend(result.events)
        position = result.scanned_to
    raise AssertionError(f"scanning from {after} did not reach {last}")


def audit(action: str) -> AuditRecord:
    return AuditRecord(time=START, principal="tester", action=action, outcome="ok", status=200)


def published(
    first: int, last: int, principal: str = "tester", client: str = "127.0.0.1"
) -> AuditRecord:
    """Return the audit record of a publish that appended the events `first` to `last`."""
    return AuditRecord(
        time=START,
        principal=principal,
        action="publish",
        outcome="ok",
        status=201,
        client=client,
        count=last - first + 1,
        first_sequence=first,
        last_sequence=last,
        detail={"sources": ["/shop"], "duplicates": 0},
    )


FILTERS = [
    {"type": ["order.created"]},
    {"type": ["order.*"]},
    {"type": ["order.paid", "invoice.*"]},
    {"source": ["/shop*"], "type": ["order.*"]},
    {"subject": ["/party/1"]},
    {"subject": ["*"]},
    {"resource": ["urn:r:1", "urn:r:3"]},
    {"resource": ["urn:r:*"], "subject": ["/party/*"]},
    {"urgent": ["true"]},
    {"urgent": ["false"]},
    {"level": ["1*"]},
    {"level": ["6"]},
    {"id": ["event-1*"]},
    {"dataschema": ["*"]},
    {"type": ["nothing.matches"]},
]


@pytest.fixture(params=sorted(BACKENDS))
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
def store(open_store: Opener) -> Iterator[Storage]:
    opened = open_store()
    yield opened
    opened.close()


class TestStorageContract:
    def test_bounds_empty(self, store: Storage) -> None:
        bounds = store.bounds()

        assert bounds.head == 0
        assert bounds.earliest == 1
        assert bounds.last_recordedtime is None

    def test_bounds_filled(self, store: Storage) -> None:
        records = make_records(10)
        store.append(records[:4])
        store.append(records[4:])

        bounds = store.bounds()

        assert bounds.head == 10
        assert bounds.earliest == 1
        assert bounds.last_recordedtime == records[-1].recordedtime

    def test_append_empty_stores_nothing(self, store: Storage) -> None:
        store.append([])

        assert store.bounds().head == 0

    def test_scan_unfiltered_returns_events(self, store: Storage) -> None:
        records = make_records(25)
        store.append(records)

        for limit in (1, 7, 25, 1000):
            found = scan_all(store, 0, 25, Filter(), limit)
            assert [(e.sequence, e.event) for e in found] == [
                (r.sequence, r.event) for r in records
            ]

    def test_scan_unfiltered_scanned_to(self, store: Storage) -> None:
        store.append(make_records(10))

        assert store.scan(0, 10, Filter(), 4).scanned_to == 4
        assert store.scan(4, 10, Filter(), 100).scanned_to == 10
        assert store.scan(2, 6, Filter(), 100).scanned_to == 6

    @pytest.mark.parametrize("filter_values", FILTERS, ids=lambda values: str(values))
    def test_scan_filtered_matches(
        self, store: Storage, filter_values: dict[str, list[str]]
    ) -> None:
        records = make_records(40)
        store.append(records)
        matcher = Filter.parse(filter_values)
        expected = [
            r.sequence for r in records if matcher.matches(attribute_strings(orjson.loads(r.event)))
        ]

        for limit in (1, 3, 1000):
            found = scan_all(store, 0, 40, matcher, limit)
            assert [e.sequence for e in found] == expected
            assert all(matcher.matches(attributes(e)) for e in found)

    def test_scan_full_page_ends_at_last_event(self, store: Storage) -> None:
        store.append(make_records(30))
        matcher = Filter.parse({"type": ["order.paid"]})

        result = store.scan(0, 30, matcher, 2)

        assert [e.sequence for e in result.events] == [1, 4]
        # The page is full, so the cursor stays at its last event, and the
        # next scan still finds 7, the match that did not fit on the page.
        assert result.scanned_to == 4
        assert store.scan(4, 30, matcher, 2).events[0].sequence == 7

    def test_scan_sparse_filter_reaches_last(self, store: Storage) -> None:
        store.append(make_records(30))

        result = store.scan(0, 30, Filter.parse({"type": ["nothing.matches"]}), 10)

        assert result.events == []
        assert result.scanned_to == 30

    def test_scan_respects_last(self, store: Storage) -> None:
        store.append(make_records(20))

        unfiltered = store.scan(5, 12, Filter(), 100)
        filtered = store.scan(5, 12, Filter.parse({"type": ["order.*"]}), 100)

        assert [e.sequence for e in unfiltered.events] == list(range(6, 13))
        assert unfiltered.scanned_to == 12
        assert all(6 <= e.sequence <= 12 for e in filtered.events)
        assert filtered.scanned_to == 12

    def test_scan_empty_range(self, store: Storage) -> None:
        store.append(make_records(5))

        for after, last in ((5, 5), (3, 3), (4, 2)):
            result = store.scan(after, last, Filter(), 10)
            assert result.events == []
            assert result.scanned_to == after

    def test_scan_selection_scope(self, store: Storage) -> None:
        records = make_records(30)
        store.append(records)
        visible = Selection(
            Filter.parse({"type": ["order.*"]}),
            (Filter.parse({"source": ["/shop/eu"]}), Filter.parse({"subject": ["/party/1"]})),
        )
        hidden = Selection(Filter(), ())

        found = scan_all(store, 0, 30, visible, 2)
        nothing = store.scan(0, 30, hidden, 10)

        expected = [
            r.sequence for r in records if visible.matches(attribute_strings(orjson.loads(r.event)))
        ]
        assert expected, "the selection must select some events for this test to mean anything"
        assert [e.sequence for e in found] == expected
        assert nothing.events == []
        assert nothing.scanned_to == 30, "hidden events are skipped and the cursor moves past them"

    def test_find_by_key(self, store: Storage) -> None:
        records = make_records(10)
        store.append(records)
        wanted = [records[2], records[7]]
        keys = [event_key(str(r.fields["source"]), str(r.fields["id"])) for r in wanted]

        found = store.find([*keys, keys[0], event_key("/unknown", "event-1")])

        assert sorted((k.sequence, k.source, k.id, k.digest) for k in found) == [
            (r.sequence, r.fields["source"], r.fields["id"], r.digest) for r in wanted
        ]
        assert store.find([]) == []

    def test_first_recorded_at(self, store: Storage) -> None:
        store.append(make_records(10))

        assert store.first_recorded_at(START - timedelta(days=1), 10) == 1
        assert store.first_recorded_at(START + timedelta(seconds=4), 10) == 4
        assert store.first_recorded_at(START + timedelta(seconds=4, microseconds=1), 10) == 5
        assert store.first_recorded_at(START + timedelta(seconds=11), 10) is None
        assert store.first_recorded_at(START + timedelta(seconds=8), 6) is None

    def test_first_recorded_at_empty(self, store: Storage) -> None:
        assert store.first_recorded_at(START, 0) is None

    def test_reopen_keeps_events(self, open_store: Opener) -> None:
        records = make_records(12)
        first = open_store()
        first.append(records[:5])
        first.append(records[5:], [audit("publish")])
        first.checkpoint()
        first.append(make_records(3, first=13))
        first.close()

        second = open_store()
        try:
            bounds = second.bounds()
            found = scan_all(second, 0, bounds.head, Filter(), 100)
            keys = second.find(
                [event_key(str(r.fields["source"]), str(r.fields["id"])) for r in records]
            )
            audited = second.read_audit(AuditQuery())
        finally:
            second.close()

        assert bounds.head == 15
        assert bounds.last_recordedtime == START + timedelta(seconds=15)
        assert [e.event for e in found[:12]] == [r.event for r in records]
        assert len(keys) == 12
        assert [a.record.action for a in audited] == ["publish"]

    def test_reopen_in_place(self, store: Storage) -> None:
        records = make_records(8)
        store.append(records[:5], [audit("publish")])
        # One reader thread, whose connection dates from before the reopen.
        with ThreadPoolExecutor(1) as reader:

            def scan() -> list[StoredEvent]:
                return scan_all(store, 0, store.bounds().head, Filter(), 100)

            before = reader.submit(scan).result()
            store.reopen()
            store.append(records[5:])
            store.checkpoint()
            after = reader.submit(scan).result()

        assert store.bounds().head == 8
        assert [e.event for e in before] == [r.event for r in records[:5]]
        assert [e.event for e in after] == [r.event for r in records]
        assert [a.record.action for a in store.read_audit(AuditQuery())] == ["publish"]

    def test_audit_detail_with_huge_integer(self, store: Storage) -> None:
        # A client can send a cursor of any length; its audit record must
        # neither fail the commit nor leave the store unable to append.
        huge = replace(audit("read"), detail={"next_after": 10**30})
        store.append(make_records(2), [huge])
        store.append(make_records(1, first=3), [audit("publish")])

        assert store.bounds().head == 3
        assert [a.record.action for a in store.read_audit(AuditQuery())] == ["read", "publish"]

    def test_publish_audit_round_trip(self, store: Storage) -> None:
        records = make_records(5)
        written = [
            published(1, 2),
            audit("read"),
            published(3, 5, principal="other", client="10.0.0.2"),
            replace(published(3, 5), count=0, first_sequence=None, last_sequence=None),
        ]
        store.append(records, written)

        stored = store.read_audit(AuditQuery())
        ids = [entry.id for entry in stored]
        read_back = [entry.record for entry in stored]

        assert ids == sorted(set(ids))
        assert len(read_back) == len(written)
        for record in written:
            assert read_back.count(record) == 1

    def test_publish_audit_filters(self, store: Storage) -> None:
        store.append(make_records(2), [published(1, 2), audit("read")])
        store.append(make_records(2, first=3), [published(3, 4, principal="other")])

        by_other = store.read_audit(AuditQuery(principal="other"))
        publishes = store.read_audit(AuditQuery(action="publish"))
        later = store.read_audit(AuditQuery(since=START + timedelta(seconds=1)))
        after_first = store.read_audit(AuditQuery(after_id=publishes[0].id, limit=1))

        assert [entry.record.last_sequence for entry in by_other] == [4]
        assert [entry.record.last_sequence for entry in publishes] == [2, 4]
        assert later == []
        assert len(after_first) == 1
        assert after_first[0].id > publishes[0].id

    def test_publish_audit_outlives_retention(self, open_store: Opener) -> None:
        store = open_store()
        store.append(make_records(3), [published(1, 3)])
        store.append(make_records(3, first=4), [published(4, 6, principal="other")])
        before = store.read_audit(AuditQuery())

        store.delete_through(3)
        after_one = store.read_audit(AuditQuery())
        store.delete_through(6)
        store.close()
        reopened = open_store()
        try:
            after_all = reopened.read_audit(AuditQuery())
        finally:
            reopened.close()

        assert [entry.record.last_sequence for entry in before] == [3, 6]
        assert after_one == before
        assert after_all == before

    def test_checkpoint_after_subscription_changes(self, store: Storage) -> None:
        # A read left open by the store made CHECKPOINT fail after any DELETE
        # or UPDATE, and so on every later idle moment of the writer.
        moment = START
        record = SubscriptionRecord("orders", "tester", "{}", 0, moment, moment)
        store.save_subscription(record, audit("subscription.create"))
        store.set_cursor("orders", 2, audit("subscription.ack"), advance_only=True)
        store.delete_subscription("orders", audit("subscription.delete"))
        store.append(make_records(2))

        store.checkpoint()

        assert store.load_subscriptions() == []
        assert store.bounds().head == 2

    def test_failed_append_leaves_nothing(self, store: Storage) -> None:
        store.append(make_records(3))
        good = make_records(4, first=4)
        # A record without the required `type` cannot be stored.
        broken = replace(good[-1], fields={k: v for k, v in good[-1].fields.items() if k != "type"})

        with pytest.raises(EventLogError):
            store.append([*good[:-1], broken], [audit("publish")])

        assert store.bounds().head == 3
        assert store.scan(3, 10, Filter(), 10).events == []
        assert store.find([good[0].key]) == []
        assert store.read_audit(AuditQuery()) == []

    def test_failed_append_leaves_no_publish_record(self, store: Storage) -> None:
        good = make_records(4)
        broken = replace(good[-1], fields={k: v for k, v in good[-1].fields.items() if k != "type"})

        with pytest.raises(EventLogError):
            store.append([*good[:-1], broken], [published(1, 4)])

        assert store.bounds().head == 0
        assert store.find([good[0].key]) == []
        assert store.read_audit(AuditQuery()) == []

    def test_failed_append_then_append_works(self, store: Storage) -> None:
        good = make_records(4)
        broken = replace(good[0], fields={k: v for k, v in good[0].fields.items() if k != "id"})

        with pytest.raises(EventLogError):
            store.append([broken])
        store.append(good)

        assert store.bounds().head == 4
        assert [e.sequence for e in scan_all(store, 0, 4, Filter(), 10)] == [1, 2, 3, 4]

    def test_unconvertible_append_leaves_nothing(self, store: Storage) -> None:
        good = make_records(3)
        # A key must fit in 63 bits; no backend can store this one.
        broken = replace(good[2], key=2**70)

        with pytest.raises(EventLogError):
            store.append([*good[:2], broken])

        assert store.bounds().head == 0
        assert store.find([good[0].key]) == []

    def test_closed_store_raises(self, open_store: Opener) -> None:
        closed = open_store()
        closed.close()

        with pytest.raises(LogUnavailable):
            closed.append(make_records(1))
        with pytest.raises(LogUnavailable):
            closed.bounds()
        with pytest.raises(LogUnavailable):
            closed.scan(0, 1, Filter(), 10)

        reopened = open_store()
        try:
            assert reopened.bounds().head == 0
        finally:
            reopened.close()

    def test_closed_store_raises_after_use(self, open_store: Opener) -> None:
        used = open_store()
        used.append(make_records(2))
        used.close()

        with pytest.raises(LogUnavailable):
            used.append(make_records(1, first=3))
        with pytest.raises(LogUnavailable):
            used.find([1])

    def test_append_visible_to_other_threads(self, store: Storage) -> None:
        results: list[Any] = []

        def read() -> None:
            results.append((store.bounds().head, store.scan(0, 8, Filter(), 100).events))

        store.append(make_records(8))
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(timeout=30)

        [(head, events)] = results
        assert head == 8
        assert [e.sequence for e in events] == list(range(1, 9))
