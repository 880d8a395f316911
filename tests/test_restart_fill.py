"""Reads while the tail fills after a restart equal the same reads after the fill.

The log serves as soon as its storage is open and fills the in-memory tail
in the background. These tests start the real server on a log that is large
enough for the fill to still run when the first requests arrive, and check
the library against a model with appends and reads during the fill.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import orjson
import pytest
from conftest import Server
from httpx_sse import connect_sse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog import EventLog, Filter, parse_event
from eventlog.filters import Matcher, Selection
from eventlog.log import Page

BATCH = "application/cloudevents-batch+json"
DATABASE_FILE = "events.duckdb"
TYPES = ("order.created", "order.paid", "invoice.sent")
SUBJECTS = ("/party/1", "/party/2", "/party/3", "/party/4", "/party/5", "/party/6", "/party/7")
# Events in the server tests' log. Filling a tail with them took about 2 s on
# a 2-core machine, several times as long as the requests that a test makes
# during the fill.
SERVER_EVENTS = 200_000
# The server's tail has room for them and for the events that the tests publish.
SERVER_TAIL_CAPACITY = SERVER_EVENTS + 1_000
# A byte bound that every one of those events fits in, at most 1 KB each.
SERVER_TAIL_BYTES = SERVER_TAIL_CAPACITY * 1024
# Events in the library tests' log.
LIBRARY_EVENTS = 3_000
FILL_SECONDS = 120.0

_ids = itertools.count()


def make_event(number: int, tag: str = "stored") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{tag}-{number}",
        "source": "https://orders.example.com",
        "type": TYPES[number % len(TYPES)],
        "subject": SUBJECTS[number % len(SUBJECTS)],
        "data": {
            "number": number,
            "lines": [{"sku": f"sku-{line}", "count": line} for line in range(8)],
        },
    }


async def build_log(path: Path, count: int) -> None:
    log = await EventLog.open(path)
    try:
        for start in range(0, count, 5_000):
            numbers = range(start, min(count, start + 5_000))
            await log.append([parse_event(make_event(number)) for number in numbers])
    finally:
        await log.close()


def copy_log(source: Path, destination: Path) -> Path:
    destination.mkdir(parents=True)
    for path in source.glob(f"{DATABASE_FILE}*"):
        shutil.copy(path, destination / path.name)
    return destination


# The real server.


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose log contains SERVER_EVENTS events, to be copied by each test."""
    folder = tmp_path_factory.mktemp("server-log")
    asyncio.run(build_log(folder / DATABASE_FILE, SERVER_EVENTS))
    return folder


def metric(client: httpx.Client, name: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} is missing from /metrics"
    return float(match.group(1))


def wait_for_fill(client: httpx.Client) -> None:
    deadline = time.monotonic() + FILL_SECONDS
    while metric(client, "eventlog_tail_filling") == 1:
        if time.monotonic() > deadline:
            raise AssertionError(f"The tail did not fill within {FILL_SECONDS} s.")
        time.sleep(0.05)


def publish(client: httpx.Client, events: list[dict[str, Any]]) -> list[int]:
    response = client.post("/events", content=orjson.dumps(events), headers={"Content-Type": BATCH})
    assert response.status_code == 201, response.text
    sequences: list[int] = response.json()["sequences"]
    return sequences


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Answer:
    """What a client receives for a page: status, body and `Link`."""

    status: int
    body: bytes
    link: str | None


def read_page(client: httpx.Client, params: dict[str, str], token: str) -> Answer:
    response = client.get("/events", params=params, headers=bearer(token))
    return Answer(response.status_code, response.content, response.headers.get("Link"))


def read_stream(url: str, after: int, last: int, token: str) -> list[tuple[str, str]]:
    """Return the (id, data) of the stream's messages after `after` through sequence `last`."""
    messages: list[tuple[str, str]] = []
    timeout = httpx.Timeout(10.0, read=30.0)
    with (
        httpx.Client(base_url=url, timeout=timeout, headers=bearer(token)) as client,
        connect_sse(client, "GET", "/events/stream", params={"after": str(after)}) as source,
    ):
        assert source.response.status_code == 200
        for message in source.iter_sse():
            if message.data:
                messages.append((message.id, message.data))
                if int(message.id) >= last:
                    break
    return messages


def reads_to_compare(recorded: str) -> list[dict[str, str]]:
    """Pages from cursors below, across and above the head at the start, with and without filters."""
    middle = SERVER_EVENTS // 2
    return [
        {"after": "0"},
        {"after": "1", "limit": "1000"},
        {"after": str(middle)},
        {"after": str(SERVER_EVENTS - 50)},
        {"after": str(SERVER_EVENTS - 1), "limit": "1000"},
        {"after": str(SERVER_EVENTS)},
        {"after": "0", "type": "order.paid", "subject": "/party/3"},
        {"after": str(SERVER_EVENTS // 3), "type": "invoice.*", "limit": "250"},
        {"after": str(SERVER_EVENTS - 500), "subject": "/party/5", "limit": "7"},
        {"after": str(SERVER_EVENTS - 30), "type": "order.*", "limit": "1000"},
        {"since": recorded},
    ]


def test_reads_during_fill_equal_reads_after(server_log: Path, tmp_path: Path) -> None:
    data_dir = copy_log(server_log, tmp_path / "data")
    server = Server(
        data_dir,
        EVENTLOG_NO_AUTH="0",
        EVENTLOG_TAIL_CAPACITY=str(SERVER_TAIL_CAPACITY),
        EVENTLOG_TAIL_BYTES=str(SERVER_TAIL_BYTES),
    )
    server.start()
    try:
        admin_token = (data_dir / "admin.token").read_text().strip()
        with httpx.Client(base_url=server.url, timeout=30.0, headers=bearer(admin_token)) as admin:
            compare_reads(server, admin, admin_token)
    finally:
        server.stop()


def compare_reads(server: Server, admin: httpx.Client, admin_token: str) -> None:
    assert metric(admin, "eventlog_tail_filling") == 1
    storage_scans_before = metric(admin, "eventlog_storage_scans_total")

    # During the fill: a reader with a grant, publishes, pages, a stream and a long-poll.
    response = admin.post("/tokens", json={"name": "party-3", "grants": ["read subject=/party/3"]})
    assert response.status_code == 201, response.text
    reader_token: str = response.json()["token"]
    published = publish(admin, [make_event(number, "first") for number in range(40)])
    published += publish(admin, [make_event(number, "second") for number in range(25)])
    assert published == list(range(SERVER_EVENTS + 1, SERVER_EVENTS + 66))
    long_poll = {"after": str(published[-1]), "wait": "30", "type": "order.paid"}
    long_poll_answers: list[Answer] = []
    poller = threading.Thread(
        target=lambda: long_poll_answers.append(read_page(admin, long_poll, admin_token))
    )
    poller.start()
    published += publish(admin, [make_event(number, "third") for number in range(6)])
    poller.join()

    # From here on the head stays, so each read must return the same after the fill.
    head = published[-1]
    stored = orjson.loads(
        read_page(admin, {"after": str(SERVER_EVENTS // 4), "limit": "1"}, admin_token).body
    )
    reads = reads_to_compare(stored[0]["recordedtime"])
    tokens = {"admin": admin_token, "reader": reader_token}
    during = {
        (reader_name, index): read_page(admin, params, token)
        for reader_name, token in tokens.items()
        for index, params in enumerate(reads)
    }
    stream_during = read_stream(server.url, SERVER_EVENTS - 30, head, admin_token)

    # The premise: every request above was served while the tail was filling.
    assert metric(admin, "eventlog_tail_filling") == 1, "the fill ended early; raise SERVER_EVENTS"
    assert metric(admin, "eventlog_storage_scans_total") > storage_scans_before

    wait_for_fill(admin)
    assert metric(admin, "eventlog_tail_events") == published[-1]
    storage_scans_after_fill = metric(admin, "eventlog_storage_scans_total")
    tail_scans_after_fill = metric(admin, "eventlog_tail_scans_total")

    for (reader_name, index), answer in during.items():
        assert answer.status == 200, answer.body
        again = read_page(admin, reads[index], tokens[reader_name])
        assert again == answer, (reader_name, reads[index])
    assert read_stream(server.url, SERVER_EVENTS - 30, head, admin_token) == stream_during
    assert [int(sequence) for sequence, _ in stream_during] == list(
        range(SERVER_EVENTS - 29, head + 1)
    )
    assert read_page(admin, long_poll, admin_token) == long_poll_answers[0]
    long_polled = orjson.loads(long_poll_answers[0].body)
    assert [item["id"] for item in long_polled] == ["third-1", "third-4"]

    # After the fill, the tail serves every one of those reads.
    assert metric(admin, "eventlog_storage_scans_total") == storage_scans_after_fill
    assert metric(admin, "eventlog_tail_scans_total") > tail_scans_after_fill


def test_reader_sees_only_granted_during_fill(server_log: Path, tmp_path: Path) -> None:
    data_dir = copy_log(server_log, tmp_path / "data")
    server = Server(
        data_dir,
        EVENTLOG_NO_AUTH="0",
        EVENTLOG_TAIL_CAPACITY=str(SERVER_TAIL_CAPACITY),
        EVENTLOG_TAIL_BYTES=str(SERVER_TAIL_BYTES),
    )
    server.start()
    try:
        admin_token = (data_dir / "admin.token").read_text().strip()
        with httpx.Client(base_url=server.url, timeout=30.0, headers=bearer(admin_token)) as admin:
            assert metric(admin, "eventlog_tail_filling") == 1
            response = admin.post(
                "/tokens", json={"name": "p2", "grants": ["read subject=/party/2"]}
            )
            assert response.status_code == 201, response.text
            page = read_page(admin, {"after": "0", "limit": "1000"}, response.json()["token"])
            assert metric(admin, "eventlog_tail_filling") == 1, "the fill ended early"
    finally:
        server.stop()

    events = orjson.loads(page.body)
    assert len(events) == 1000
    assert {event["subject"] for event in events} == {"/party/2"}
    assert [int(event["sequence"]) for event in events] == [
        number + 1 for number in range(SERVER_EVENTS) if SUBJECTS[number % 7] == "/party/2"
    ][:1000]


def test_shutdown_during_fill_keeps_log(server_log: Path, tmp_path: Path) -> None:
    data_dir = copy_log(server_log, tmp_path / "data")
    server = Server(
        data_dir,
        "info",
        EVENTLOG_TAIL_CAPACITY=str(SERVER_TAIL_CAPACITY),
        EVENTLOG_TAIL_BYTES=str(SERVER_TAIL_BYTES),
    )
    server.start()
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        assert metric(client, "eventlog_tail_filling") == 1
        published = publish(client, [make_event(number, "before-stop") for number in range(10)])
        assert metric(client, "eventlog_tail_filling") == 1, "the fill ended early"

    process = server.process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    # uvicorn exits with SIGTERM's status after a graceful shutdown.
    assert process.wait(timeout=30) in (0, -signal.SIGTERM), server.log()
    assert "Application shutdown complete" in server.log()
    assert "Traceback" not in server.log()

    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            assert client.get("/health").json()["head"] == published[-1]
            wait_for_fill(client)
            assert metric(client, "eventlog_tail_events") == published[-1]
            page = client.get("/events", params={"after": str(SERVER_EVENTS - 5)}).json()
    finally:
        server.stop()
    assert [int(event["sequence"]) for event in page] == list(
        range(SERVER_EVENTS - 4, published[-1] + 1)
    )


# The library, against a model.


@dataclass(frozen=True)
class Feed:
    """A read's filter and the reader's grant, as a model can test them."""

    type_prefix: str | None
    subject: str | None
    granted_subject: str | None

    def matcher(self) -> Matcher:
        patterns: dict[str, list[str]] = {}
        if self.type_prefix is not None:
            patterns["type"] = [self.type_prefix + "*"]
        if self.subject is not None:
            patterns["subject"] = [self.subject]
        query = Filter.parse(patterns)
        if self.granted_subject is None:
            return query
        return Selection(query, (Filter.parse({"subject": [self.granted_subject]}),))

    def admits(self, event: dict[str, Any]) -> bool:
        return (
            (self.type_prefix is None or event["type"].startswith(self.type_prefix))
            and (self.subject is None or event["subject"] == self.subject)
            and (self.granted_subject is None or event["subject"] == self.granted_subject)
        )


@dataclass(frozen=True)
class Append:
    count: int


@dataclass(frozen=True)
class Read:
    # Where the cursor lies: a fraction of the head, or a named boundary.
    position: float | str
    feed: Feed
    limit: int


FEEDS = st.builds(
    Feed,
    st.one_of(st.none(), st.sampled_from(["order.", "order.paid", "invoice."])),
    st.one_of(st.none(), st.sampled_from(SUBJECTS[:3])),
    st.one_of(st.none(), st.sampled_from(SUBJECTS[:3])),
)
BOUNDARIES = ("opened", "opened-1", "opened+1", "tail", "tail-1", "tail+1", "head")
READS = st.builds(
    Read,
    st.one_of(st.floats(0, 1), st.sampled_from(BOUNDARIES)),
    FEEDS,
    st.integers(1, 120),
)
# One step runs its operations concurrently.
STEPS = st.lists(
    st.lists(st.one_of(st.builds(Append, st.integers(1, 30)), READS), min_size=1, max_size=5),
    min_size=1,
    max_size=6,
)


@pytest.fixture(scope="module")
def library_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("library-log")
    asyncio.run(build_log(folder / DATABASE_FILE, LIBRARY_EVENTS))
    return folder


class Model:
    """Every committed event in sequence order, as published."""

    def __init__(self, count: int) -> None:
        self.events = [make_event(number) for number in range(count)]

    def page(self, after: int, head: int, feed: Feed, limit: int) -> tuple[list[int], int]:
        """Return the sequences and the next cursor that a read returns when the head is `head`."""
        found: list[int] = []
        for sequence in range(after + 1, head + 1):
            if feed.admits(self.events[sequence - 1]):
                found.append(sequence)
                if len(found) == limit:
                    return found, sequence
        return found, max(after, head)


def cursor(position: float | str, head: int, opened: int, capacity: int) -> int:
    boundaries = {
        "opened": opened,
        "opened-1": opened - 1,
        "opened+1": opened + 1,
        "tail": opened - capacity,
        "tail-1": opened - capacity - 1,
        "tail+1": opened - capacity + 1,
        "head": head,
    }
    if isinstance(position, str):
        return min(max(0, boundaries[position]), head)
    return int(position * head)


def check_page(model: Model, after: int, read: Read, page: Page) -> None:
    expected, next_after = model.page(after, page.head, read.feed, read.limit)
    assert [stored.sequence for stored in page.events] == expected
    assert page.next_after == next_after
    delivered = [orjson.loads(stored.event)["id"] for stored in page.events]
    assert delivered == [model.events[sequence - 1]["id"] for sequence in expected]


def extend_model(model: Model, appended: list[tuple[list[dict[str, Any]], list[int]]]) -> None:
    """Add the events of concurrent appends to the model in the order of their sequences."""
    for events, sequences in sorted(appended, key=lambda pair: pair[1][0]):
        assert sequences == list(range(len(model.events) + 1, len(model.events) + len(events) + 1))
        model.events.extend(events)


async def run_steps(path: Path, capacity: int, steps: list[list[Append | Read]]) -> None:
    model = Model(LIBRARY_EVENTS)
    log = await EventLog.open(path, tail_capacity=capacity)
    try:
        opened = log.head
        pages: list[tuple[int, Read, Page]] = []
        for step in steps:
            filling = log.tail_filling
            appends: list[list[dict[str, Any]]] = []
            reads: list[tuple[int, Read]] = []
            calls: list[Any] = []
            for operation in step:
                if isinstance(operation, Append):
                    tag = f"appended-{next(_ids)}"
                    events = [make_event(number, tag) for number in range(operation.count)]
                    appends.append(events)
                    calls.append(log.append([parse_event(item) for item in events]))
                else:
                    after = cursor(operation.position, log.head, opened, capacity)
                    reads.append((after, operation))
                    calls.append(log.read(after, operation.feed.matcher(), operation.limit))
            outcomes = await asyncio.gather(*calls)

            appended = [outcome for outcome in outcomes if not isinstance(outcome, Page)]
            sequences = [[item.sequence for item in outcome] for outcome in appended]
            extend_model(model, list(zip(appends, sequences, strict=True)))
            read_pages = [outcome for outcome in outcomes if isinstance(outcome, Page)]
            for (after, read), page in zip(reads, read_pages, strict=True):
                check_page(model, after, read, page)
                pages.append((after, read, page))
            if reads:
                hypothesis.event("reads during the fill" if filling else "reads after the fill")
            if appends:
                hypothesis.event("appends during the fill" if filling else "appends after the fill")

        await log.wait_for_tail()
        assert log.tail_size == min(capacity, log.head)
        for after, read, _ in pages:
            check_page(model, after, read, await log.read(after, read.feed.matcher(), read.limit))

        # The tail serves a read of all its events, byte for byte as storage stores them.
        storage_scans = log.stats.storage_scans
        first = log.head - log.tail_size
        in_tail = await log.read(first, limit=log.tail_size)
        assert log.stats.storage_scans == storage_scans
        stored = log.storage.scan(0, log.head, Filter(), log.head).events
        assert in_tail.events == stored[first : first + len(in_tail.events)]
        by_sequence = {item.sequence: item.event for item in stored}
        for _, _, page in pages:
            assert all(item.event == by_sequence[item.sequence] for item in page.events)
    finally:
        await log.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(capacity=st.integers(1, LIBRARY_EVENTS + 200), steps=STEPS)
def test_reads_during_fill_match_model(
    library_log: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capacity: int,
    steps: list[list[Append | Read]],
) -> None:
    folder = copy_log(library_log, tmp_path_factory.mktemp("library") / "data")
    asyncio.run(run_steps(folder / DATABASE_FILE, capacity, steps))


def test_trim_during_fill_keeps_tail_dense(server_log: Path, tmp_path: Path) -> None:
    async def trim_while_filling(path: Path) -> None:
        log = await EventLog.open(path, tail_capacity=SERVER_EVENTS, tail_bytes=SERVER_TAIL_BYTES)
        try:
            assert await log.trim(1_000) == 1_000
            assert log.tail_filling, "the fill ended before the trim"
            await log.wait_for_tail()
            assert log.earliest == 1_001
            assert log.tail_size == SERVER_EVENTS - 1_000
            storage_scans = log.stats.storage_scans
            page = await log.read(1_000, limit=1_000)
            assert log.stats.storage_scans == storage_scans
            assert [stored.sequence for stored in page.events] == list(range(1_001, 2_001))
        finally:
            await log.close()

    folder = copy_log(server_log, tmp_path / "data")
    asyncio.run(trim_while_filling(folder / DATABASE_FILE))
