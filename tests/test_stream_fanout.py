"""SSE fan-out against the real server: many streams share encoded frames and wake-ups.

Streams with different filters and grants receive the same burst, and each
must receive exactly the events that a model of filters and grants selects,
in order and without gaps, across the switch from history to live events.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import Server
from httpx_sse import SSEError, connect_sse

from eventlog import EventLog, parse_event
from feeds.stream_client import follow

BATCH = "application/cloudevents-batch+json"
# Long enough for a loaded machine, short enough that a lost event fails the
# test with a read timeout instead of hanging it.
READ_TIMEOUT = 30.0

SOURCES = ["https://svc.example/a", "https://svc.example/b", "urn:other:c"]
SUBJECTS = ["/party/1", "/party/2", "/party/13", "/person/7"]
TYPES = ["order.created", "order.paid", "case.closed"]

# Grants of the reader tokens. "admin" is the admin token, which may read every event.
READERS: dict[str, list[str]] = {
    "admin": [],
    "party": ["read subject=/party/1"],
    "orders": ["read type=order.*"],
    "mixed": ["read source=https://svc.example/b", "read subject=/person/*"],
}

# (reader, filter, start) of each stream. A start of "head" is the head when
# the burst begins, "history" is 0 and "middle" lies inside the history.
STREAMS: list[tuple[str, dict[str, list[str]], str]] = [
    ("admin", {}, "head"),
    ("admin", {}, "head"),
    ("admin", {}, "history"),
    ("admin", {"type": ["order.paid"]}, "head"),
    ("admin", {"type": ["order.paid"]}, "history"),
    ("admin", {"source": ["https://svc.example/a"]}, "middle"),
    ("admin", {"subject": ["/party/1*"], "type": ["order.*", "case.closed"]}, "head"),
    ("party", {}, "head"),
    ("party", {}, "history"),
    ("party", {"type": ["order.created"]}, "head"),
    ("orders", {}, "head"),
    ("orders", {}, "middle"),
    ("orders", {"subject": ["/party/2"]}, "head"),
    ("mixed", {}, "head"),
    ("mixed", {}, "history"),
    ("mixed", {"type": ["case.closed"]}, "head"),
]

HISTORY_EVENTS = 150
BURST_EVENTS = 900
PUBLISHERS = 3


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("fanout") / "data", EVENTLOG_NO_AUTH="0")
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def tokens(auth_server: Server) -> dict[str, str]:
    admin_token = (auth_server.data_dir / "admin.token").read_text().strip()
    result = {"admin": admin_token}
    with httpx.Client(base_url=auth_server.url, headers=bearer(admin_token), timeout=30) as admin:
        for reader, grants in READERS.items():
            if reader == "admin":
                continue
            name = f"{reader}-{uuid.uuid4().hex[:8]}"
            response = admin.post("/tokens", json={"name": name, "grants": grants})
            assert response.status_code == 201, response.text
            result[reader] = str(response.json()["token"])
    return result


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def random_events(rng: random.Random, tag: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "specversion": "1.0",
            "id": f"{tag}-{number}",
            "source": rng.choice(SOURCES),
            "subject": rng.choice(SUBJECTS),
            "type": rng.choice(TYPES),
            "data": {"number": number},
        }
        for number in range(count)
    ]


def publish(client: httpx.Client, events: list[dict[str, Any]]) -> list[int]:
    response = client.post("/events", content=orjson.dumps(events), headers={"Content-Type": BATCH})
    assert response.status_code == 201, response.text
    sequences: list[int] = response.json()["sequences"]
    return sequences


def matches(event: dict[str, Any], patterns: dict[str, list[str]]) -> bool:
    """Model of a filter: every attribute must match one of its exact or prefix patterns."""
    for name, values in patterns.items():
        value = event.get(name)
        if value is None:
            return False
        if not any(value.startswith(p[:-1]) if p.endswith("*") else value == p for p in values):
            return False
    return True


def visible(event: dict[str, Any], reader: str) -> bool:
    """Model of read grants: the admin reads every event, another reader what one grant admits."""
    if reader == "admin":
        return True
    grants = [grant.removeprefix("read ").split("=", 1) for grant in READERS[reader]]
    return any(matches(event, {name: [pattern]}) for name, pattern in grants)


def closing_event(reader: str, patterns: dict[str, list[str]], event_id: str) -> dict[str, Any]:
    """Return an event that the stream of `reader` with filter `patterns` receives."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "https://svc.example/b",
        "subject": "/party/1" if reader == "party" else "/person/7",
        "type": "order.created",
    }
    for name, values in patterns.items():
        event[name] = values[0].removesuffix("*")
    assert visible(event, reader), (reader, event)
    assert matches(event, patterns), (patterns, event)
    return event


def publish_concurrently(
    url: str, token: str, events: list[dict[str, Any]], rng: random.Random
) -> dict[int, dict[str, Any]]:
    """Publish `events` from PUBLISHERS threads in batches of varied size; return them by sequence.

    Concurrent publishers make commits close together, so that wake-ups of
    the streams are coalesced, and batches of varied size make the streams'
    pages start and end at different places.
    """
    shares = [events[index::PUBLISHERS] for index in range(PUBLISHERS)]
    sizes = [[rng.choice([1, 2, 7, 20, 50, 100]) for _ in share] for share in shares]
    published: dict[int, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def run(share: list[dict[str, Any]], share_sizes: list[int]) -> None:
        try:
            with httpx.Client(base_url=url, headers=bearer(token), timeout=30) as client:
                position = 0
                for size in share_sizes:
                    if position >= len(share):
                        break
                    batch = share[position : position + size]
                    published.update(zip(publish(client, batch), batch, strict=True))
                    position += size
        except (httpx.HTTPError, AssertionError) as error:  # Reported by the test thread.
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=(share, share_sizes))
        for share, share_sizes in zip(shares, sizes, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return published


def open_streams(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    match = re.search(r"^eventlog_open_streams (\S+)$", text, re.MULTILINE)
    assert match is not None, text
    return float(match.group(1))


class Reader(threading.Thread):
    """One SSE stream read with httpx-sse until it has delivered the event with id `last_id`."""

    def __init__(
        self, url: str, token: str, patterns: dict[str, list[str]], after: int, last_id: str
    ) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.token = token
        self.params = [(name, value) for name, values in patterns.items() for value in values]
        self.params.append(("after", str(after)))
        self.last_id = last_id
        self.received: list[tuple[int, dict[str, Any]]] = []
        self.opened = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        try:
            with (
                httpx.Client(base_url=self.url, timeout=timeout) as client,
                connect_sse(
                    client,
                    "GET",
                    "/events/stream",
                    params=self.params,
                    headers=bearer(self.token),
                ) as source,
            ):
                self.opened.set()
                for message in source.iter_sse():
                    if not message.data:
                        continue
                    event = orjson.loads(message.data)
                    self.received.append((int(message.id), event))
                    if event["id"] == self.last_id:
                        return
        except (httpx.HTTPError, SSEError, ValueError) as error:  # Reported by the test thread.
            self.error = error
        finally:
            self.opened.set()


def test_fanout_streams_match_model(auth_server: Server, tokens: dict[str, str]) -> None:
    rng = random.Random(20261204)
    tag = uuid.uuid4().hex[:8]
    published: dict[int, dict[str, Any]] = {}
    with httpx.Client(
        base_url=auth_server.url, headers=bearer(tokens["admin"]), timeout=30
    ) as admin:
        history = random_events(rng, f"history-{tag}", HISTORY_EVENTS)
        for start in range(0, len(history), 50):
            batch = history[start : start + 50]
            published.update(zip(publish(admin, batch), batch, strict=True))
    first = min(published)
    head = max(published)
    starts = {"head": head, "history": first - 1, "middle": first - 1 + HISTORY_EVENTS // 2}
    # Each stream stops at its own closing event, published after the burst.
    closing = [
        closing_event(reader, patterns, f"closing-{tag}-{index}")
        for index, (reader, patterns, _) in enumerate(STREAMS)
    ]
    readers = [
        Reader(auth_server.url, tokens[reader], patterns, starts[start], event["id"])
        for (reader, patterns, start), event in zip(STREAMS, closing, strict=True)
    ]

    baseline = open_streams(auth_server.url)
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.opened.wait()
    # A stream counts as open once its first read is done, so those at the
    # head are waiting for the burst when it begins.
    deadline = time.monotonic() + READ_TIMEOUT
    while open_streams(auth_server.url) < baseline + len(readers):
        assert all(thread.error is None for thread in readers)
        assert time.monotonic() < deadline, "The streams did not open."
        time.sleep(0.05)

    burst = random_events(rng, f"burst-{tag}", BURST_EVENTS)
    published.update(publish_concurrently(auth_server.url, tokens["admin"], burst, rng))
    with httpx.Client(
        base_url=auth_server.url, headers=bearer(tokens["admin"]), timeout=30
    ) as admin:
        published.update(zip(publish(admin, closing), closing, strict=True))
    assert sorted(published) == list(range(first, first + len(published)))

    for thread in readers:
        thread.join(READ_TIMEOUT * 2)
    for thread, event, (reader, patterns, start_name) in zip(
        readers, closing, STREAMS, strict=True
    ):
        assert thread.error is None, (reader, patterns, start_name, thread.error)
        after = starts[start_name]
        last = next(sequence for sequence, e in published.items() if e is event)
        selected = [
            (sequence, original)
            for sequence, original in sorted(published.items())
            if after < sequence <= last
            and visible(original, reader)
            and matches(original, patterns)
        ]
        received_sequences = [sequence for sequence, _ in thread.received]
        assert received_sequences == [sequence for sequence, _ in selected], (reader, patterns)
        for (sequence, received), (_, original) in zip(thread.received, selected, strict=True):
            assert received["sequence"] == str(sequence)
            assert {key: received[key] for key in original} == original


def test_fanout_history_page_is_one_chunk(auth_server: Server, tokens: dict[str, str]) -> None:
    tag = uuid.uuid4().hex[:8]
    count = 30
    with httpx.Client(
        base_url=auth_server.url, headers=bearer(tokens["admin"]), timeout=30
    ) as admin:
        events = random_events(random.Random(7), f"chunk-{tag}", count)
        sequences = publish(admin, events)
        stored = []
        for sequence in sequences:
            response = admin.get("/events", params={"after": sequence - 1, "limit": 1})
            stored.append(response.content[1:-1])
    after = sequences[0] - 1
    wire = b"".join(
        b"id: %d\ndata: %s\n\n" % (sequence, event)
        for sequence, event in zip(sequences, stored, strict=True)
    )

    chunks = read_chunks(auth_server, tokens["admin"], after, 2)

    assert chunks[0] == b"retry: 2000\nid: %d\n\n" % after
    assert chunks[1] == wire


def test_fanout_client_parses_chunk(auth_server: Server, tokens: dict[str, str]) -> None:
    tag = uuid.uuid4().hex[:8]
    with httpx.Client(
        base_url=auth_server.url, headers=bearer(tokens["admin"]), timeout=30
    ) as admin:
        events = random_events(random.Random(8), f"client-{tag}", 40)
        sequences = publish(admin, events)

    received = []
    for event in follow(auth_server.url, after=sequences[0] - 1, token=tokens["admin"]):
        received.append(event)
        if len(received) == len(events):
            break

    assert [int(event["sequence"]) for event in received] == sequences
    assert [event["id"] for event in received] == [event["id"] for event in events]


def read_chunks(server: Server, token: str, after: int, count: int) -> list[bytes]:
    """Return the first `count` chunks of a stream's body, as the server framed them.

    A plain socket shows the chunks of HTTP/1.1 chunked transfer coding,
    which HTTP clients join.
    """
    with socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT) as connection:
        request = (
            f"GET /events/stream?after={after} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        )
        connection.sendall(request.encode())
        stream = connection.makefile("rb")
        status = stream.readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        headers = []
        while (line := stream.readline()) not in (b"\r\n", b""):
            headers.append(line.lower())
        assert b"transfer-encoding: chunked\r\n" in headers, headers

        chunks: list[bytes] = []
        while len(chunks) < count:
            size = int(stream.readline().strip(), 16)
            chunk = stream.read(size)
            assert stream.read(2) == b"\r\n"
            # Heartbeat comments are chunks of their own; they carry no events.
            if not chunk.startswith(b":"):
                chunks.append(chunk)
        return chunks


def test_coalesced_wait_wakes_and_ends(tmp_path: Path) -> None:
    async def scenario() -> None:
        # Appends closer together than the interval take the deferred path.
        log = await EventLog.open(tmp_path / "events.duckdb", coalesced_wake_seconds=0.5)
        try:
            for number in range(4):
                head = log.head
                waiters = [
                    asyncio.ensure_future(log.wait_for_head(head, coalesced=True))
                    for _ in range(100)
                ]
                event = parse_event(
                    {"specversion": "1.0", "id": f"e{number}", "source": "/t", "type": "t"}
                )
                await log.append([event])
                woken = await asyncio.wait_for(asyncio.gather(*waiters), READ_TIMEOUT)
                assert woken == [True] * len(waiters)

            waiting = asyncio.ensure_future(log.wait_for_head(log.head, coalesced=True))
            await asyncio.sleep(0)
            log.begin_shutdown()
            assert await asyncio.wait_for(waiting, READ_TIMEOUT) is False
        finally:
            await log.close()

    asyncio.run(scenario())
