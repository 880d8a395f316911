"""The live feed `GET /events/stream`, read with real SSE clients against a real server."""

from __future__ import annotations

import queue
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import Server
from httpx_sse import connect_sse

from feeds.stream_client import follow

BATCH = "application/cloudevents-batch+json"
# Long enough for a loaded machine, short enough that a lost event fails the
# test with a read timeout instead of hanging it.
READ_TIMEOUT = 30.0


def make_event(tag: str, number: int, **attributes: str) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": f"{tag}-{number}",
        "source": f"/tests/stream/{tag}",
        "type": "test.stream",
        "data": {"number": number},
    }
    event.update(attributes)
    return event


def publish(client: httpx.Client, events: list[dict[str, Any]]) -> list[int]:
    response = client.post("/events", content=orjson.dumps(events), headers={"Content-Type": BATCH})
    assert response.status_code == 201, response.text
    sequences: list[int] = response.json()["sequences"]
    return sequences


def head_of(client: httpx.Client) -> int:
    head: int = client.get("/health").json()["head"]
    return head


def open_streams(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    match = re.search(r"^eventlog_open_streams (\S+)$", text, re.MULTILINE)
    assert match is not None, text
    return float(match.group(1))


def wait_for(condition: Any, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {seconds} s waiting for {condition}")
        time.sleep(0.02)


@contextmanager
def stream(
    url: str,
    params: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[Iterator[tuple[int, dict[str, Any]]]]:
    """Open the stream and yield an iterator of (sequence, event), skipping data-less messages."""
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
    with (
        httpx.Client(base_url=url, timeout=timeout) as client,
        connect_sse(
            client, "GET", "/events/stream", params=params or [], headers=headers or {}
        ) as source,
    ):
        assert source.response.status_code == 200, source.response.read()

        def events() -> Iterator[tuple[int, dict[str, Any]]]:
            for message in source.iter_sse():
                if message.data:
                    yield int(message.id), orjson.loads(message.data)

        yield events()


def take(
    events: Iterator[tuple[int, dict[str, Any]]], count: int
) -> list[tuple[int, dict[str, Any]]]:
    return [next(events) for _ in range(count)]


def take_until(events: Iterator[tuple[int, dict[str, Any]]], last: int) -> list[int]:
    """Read until the event with sequence `last`; fail if the stream passes it."""
    sequences: list[int] = []
    while not sequences or sequences[-1] < last:
        sequence, _ = next(events)
        sequences.append(sequence)
    assert sequences[-1] == last, sequences[-5:]
    return sequences


def page_sequences(
    client: httpx.Client, after: int, last: int, params: list[tuple[str, str]]
) -> list[int]:
    """Return the sequences the page API delivers for a filter, from `after` through `last`."""
    found: list[int] = []
    while after < last:
        response = client.get("/events", params=[*params, ("after", str(after)), ("limit", "1000")])
        assert response.status_code == 200, response.text
        found.extend(int(event["sequence"]) for event in response.json())
        link = re.search(r"after=(\d+)", response.headers["Link"])
        assert link is not None, response.headers["Link"]
        after = int(link.group(1))
    return [sequence for sequence in found if sequence <= last]


def test_stream_history_then_live(shared_server: Server) -> None:
    tag = uuid.uuid4().hex
    with httpx.Client(base_url=shared_server.url, timeout=30.0) as client:
        history = publish(client, [make_event(tag, n) for n in range(5)])
        cursor = history[0] - 1
        with stream(shared_server.url, [("after", str(cursor))]) as events:
            first = take(events, 5)
            live = publish(client, [make_event(tag, n) for n in range(5, 8)])
            second = take(events, 3)
        expected = client.get("/events", params={"after": cursor, "limit": 8}).json()

    assert [sequence for sequence, _ in first] == history
    assert [sequence for sequence, _ in second] == live
    assert [event for _, event in first + second] == expected


def test_stream_wire_format(shared_server: Server) -> None:
    tag = uuid.uuid4().hex
    with httpx.Client(base_url=shared_server.url, timeout=30.0) as client:
        [sequence] = publish(client, [make_event(tag, 1)])
        stored = client.get("/events", params={"after": sequence - 1, "limit": 1}).content
        with client.stream("GET", "/events/stream", params={"after": sequence - 1}) as response:
            lines = response.iter_lines()
            opening = [next(lines) for _ in range(3)]
            message = [next(lines) for _ in range(3)]

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert opening == ["retry: 2000", f"id: {sequence - 1}", ""]
    assert message[0] == f"id: {sequence}"
    assert message[1] == "data: " + stored[1:-1].decode()
    assert message[2] == ""


def test_stream_head_request(shared_server: Server) -> None:
    response = httpx.head(f"{shared_server.url}/events/stream", timeout=10.0)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")


def test_stream_resume_last_event_id(shared_server: Server) -> None:
    tag = uuid.uuid4().hex
    with httpx.Client(base_url=shared_server.url, timeout=30.0) as client:
        sequences = publish(client, [make_event(tag, n) for n in range(10)])
        with stream(shared_server.url, [("after", str(sequences[0] - 1))]) as events:
            received = take(events, 4)
        last_id = received[-1][0]
        # The header wins over `after`, as on an EventSource reconnect to the same URL.
        params = [("after", "0"), ("source", f"/tests/stream/{tag}")]
        with stream(shared_server.url, params, {"Last-Event-ID": str(last_id)}) as events:
            resumed = take(events, 6)
            more = publish(client, [make_event(tag, 10)])
            after_resume = take(events, 1)

    assert [sequence for sequence, _ in received] == sequences[:4]
    assert [sequence for sequence, _ in resumed] == sequences[4:]
    assert [sequence for sequence, _ in after_resume] == more


def test_stream_default_starts_at_head(shared_server: Server) -> None:
    tag = uuid.uuid4().hex
    with httpx.Client(base_url=shared_server.url, timeout=30.0) as client:
        publish(client, [make_event(tag, n) for n in range(3)])
        head = head_of(client)
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        with (
            httpx.Client(base_url=shared_server.url, timeout=timeout) as reader,
            connect_sse(reader, "GET", "/events/stream") as source,
        ):
            messages = source.iter_sse()
            opening = next(messages)
            new = publish(client, [make_event(tag, n) for n in range(3, 5)])
            received = [int(next(messages).id) for _ in range(2)]

    assert opening.data == ""
    assert opening.id == str(head)
    assert opening.retry == 2000
    assert received == new


def test_stream_since(shared_server: Server) -> None:
    tag = uuid.uuid4().hex
    source = f"/tests/stream/{tag}"
    with httpx.Client(base_url=shared_server.url, timeout=30.0) as client:
        for number in range(3):
            publish(client, [make_event(tag, number)])
        stored = client.get("/events", params={"source": source}).json()
        since = stored[1]["recordedtime"]
        # Commits can share a recorded time, so compute which events are at or after it.
        expected = [
            int(event["sequence"])
            for event in stored
            if datetime.fromisoformat(event["recordedtime"]) >= datetime.fromisoformat(since)
        ]
        with stream(shared_server.url, [("since", since), ("source", source)]) as events:
            received = take(events, len(expected))

    assert int(stored[1]["sequence"]) in expected
    assert [sequence for sequence, _ in received] == expected


def test_stream_filters(shared_server: Server) -> None:
    tag = uuid.uuid4().hex
    events = [
        make_event(tag, 0, type=f"{tag}.order.created", subject="/party/1"),
        make_event(tag, 1, type=f"{tag}.order.paid", subject="/party/2"),
        make_event(tag, 2, type=f"{tag}.invoice.sent", subject="/party/1"),
        make_event(tag, 3, type=f"{tag}.order.paid", subject="/party/1"),
        make_event(tag, 4, type=f"{tag}.refund", subject="/party/1"),
    ]
    with httpx.Client(base_url=shared_server.url, timeout=30.0) as client:
        sequences = publish(client, events)
        start = str(sequences[0] - 1)
        prefix_and_exact = [("after", start), ("type", f"{tag}.order.*"), ("subject", "/party/1")]
        with stream(shared_server.url, prefix_and_exact) as received:
            orders_of_party_1 = take(received, 2)
        any_of = [("after", start), ("type", f"{tag}.invoice.sent"), ("type", f"{tag}.refund")]
        with stream(shared_server.url, any_of) as received:
            invoices_or_refunds = take(received, 2)
            # Events published later that match arrive live; others are skipped.
            later = publish(
                client,
                [make_event(tag, 5, type=f"{tag}.other"), make_event(tag, 6, type=f"{tag}.refund")],
            )
            live = take(received, 1)

    assert [sequence for sequence, _ in orders_of_party_1] == [sequences[0], sequences[3]]
    assert [sequence for sequence, _ in invoices_or_refunds] == [sequences[2], sequences[4]]
    assert [sequence for sequence, _ in live] == [later[1]]


@pytest.mark.parametrize(
    ("params", "headers", "parameter"),
    [
        ({}, {"Last-Event-ID": "abc"}, "Last-Event-ID"),
        ({}, {"Last-Event-ID": "-1"}, "Last-Event-ID"),
        ({"after": "x"}, {}, "after"),
        ({"limit": "10"}, {}, "limit"),
        ({"wait": "5"}, {}, "wait"),
        ({"after": "1", "since": "2024-01-01T00:00:00Z"}, {}, "since"),
        ({"since": "yesterday"}, {}, "since"),
        ({"type": ""}, {}, "type"),
        ({"Type": "x"}, {}, "Type"),
    ],
)
def test_stream_bad_request(
    shared_server: Server, params: dict[str, str], headers: dict[str, str], parameter: str
) -> None:
    response = httpx.get(
        f"{shared_server.url}/events/stream", params=params, headers=headers, timeout=10.0
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert parameter in problem["detail"]
    assert problem.get("parameter", problem.get("header")) == parameter


def test_stream_read_grants_and_audit(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", EVENTLOG_NO_AUTH="0")
    server.start()
    admin_token = (server.data_dir / "admin.token").read_text().strip()
    admin_headers = {"Authorization": f"Bearer {admin_token}"}
    try:
        with httpx.Client(base_url=server.url, headers=admin_headers, timeout=30.0) as admin:
            created = admin.post(
                "/tokens", json={"name": "party1", "grants": ["read subject=/party/1"]}
            )
            assert created.status_code == 201, created.text
            token = created.json()["token"]
            sequences = publish(
                admin,
                [make_event("grants", n, subject=f"/party/{n % 2}") for n in range(6)],
            )
            # A browser's EventSource cannot send headers, so the token is a query parameter.
            params = [("after", "0"), ("access_token", token)]
            with stream(server.url, params) as events:
                received = take(events, 3)
                later = publish(
                    admin, [make_event("grants", n, subject=f"/party/{n % 2}") for n in (6, 7)]
                )
                received += take(events, 1)
            wait_for(lambda: open_streams(admin) == 0)
            wait_for(
                lambda: bool(admin.get("/audit", params={"action": "stream.close"}).json())
            )
            [audit] = admin.get("/audit", params={"action": "stream.close"}).json()
            [opened] = admin.get("/audit", params={"action": "stream.open"}).json()
    finally:
        server.stop()

    assert [sequence for sequence, _ in received] == [*sequences[1::2], later[1]]
    assert {event["subject"] for _, event in received} == {"/party/1"}
    assert opened["principal"] == "party1"
    assert opened["detail"]["start"] == sequences[1] - 1
    assert audit["principal"] == "party1"
    assert audit["count"] == 4
    assert audit["first_sequence"] == sequences[1]
    assert audit["last_sequence"] == later[1]
    assert token not in server.log()


def test_stream_heartbeat(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", EVENTLOG_HEARTBEAT_SECONDS="1")
    server.start()
    try:
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        with (
            httpx.Client(base_url=server.url, timeout=timeout) as client,
            client.stream("GET", "/events/stream") as response,
        ):
            comments = (line for line in response.iter_lines() if line.startswith(":"))
            heartbeat = next(comments)
    finally:
        server.stop()

    assert heartbeat.startswith(": ")


def test_stream_disconnect_frees_stream(server: Server, client: httpx.Client) -> None:
    wait_for(lambda: open_streams(client) == 0)
    with stream(server.url) as events:
        wait_for(lambda: open_streams(client) == 1)
        publish(client, [make_event("disconnect", 1)])
        next(events)
        assert open_streams(client) == 1

    wait_for(lambda: open_streams(client) == 0)


def test_stream_switch_without_gap_or_duplicate(tmp_path: Path) -> None:
    """Open streams from random cursors while publishers run, and compare with the log.

    One server keeps a tail of only 16 events, so most streams start in
    storage and cross into the tail while it moves. The other serves recent
    cursors from its default tail.
    """
    seed = random.randrange(2**32)
    generator = random.Random(seed)
    servers = [
        Server(tmp_path / "tiny-tail", EVENTLOG_TAIL_CAPACITY="16"),
        Server(tmp_path / "default-tail"),
    ]
    for server in servers:
        server.start()
    try:
        for round_number in range(20):
            server = servers[round_number % 2]
            run_race_round(server, generator, round_number, seed)
    finally:
        for server in servers:
            server.stop()


def run_race_round(server: Server, generator: random.Random, round_number: int, seed: int) -> None:
    tag = f"race{round_number}"
    stop = threading.Event()
    failures: queue.Queue[Exception] = queue.Queue()

    def publish_until_stopped(publisher: int, sizes: random.Random) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=30.0) as client:
                number = 0
                while not stop.is_set():
                    size = sizes.randint(1, 8)
                    batch = [
                        make_event(
                            f"{tag}-{publisher}", number + i, subject=f"/party/{(number + i) % 3}"
                        )
                        for i in range(size)
                    ]
                    publish(client, batch)
                    number += size
        except (httpx.HTTPError, AssertionError) as error:
            failures.put(error)

    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        publish(client, [make_event(f"{tag}-history", n, subject="/party/1") for n in range(60)])
        publishers = [
            threading.Thread(
                target=publish_until_stopped, args=(n, random.Random(generator.random()))
            )
            for n in range(3)
        ]
        start_head = head_of(client)
        for thread in publishers:
            thread.start()
        try:
            wait_for(lambda: head_of(client) >= start_head + 20)
            head = head_of(client)
            cursor = generator.randint(max(0, head - 150), head)
            params = [("subject", "/party/1")] if round_number % 4 >= 2 else []
            if round_number % 3 == 0:
                headers, query = {"Last-Event-ID": str(cursor)}, params
            else:
                headers, query = {}, [*params, ("after", str(cursor))]

            with stream(server.url, query, headers) as events:
                early = [sequence for sequence, _ in take(events, generator.randint(1, 30))]
                stop.set()
                for thread in publishers:
                    thread.join()
                final = head_of(client)
                expected = page_sequences(client, cursor, final, params)
                rest = take_until(events, expected[-1]) if expected[-1] > early[-1] else []
        finally:
            stop.set()
            for thread in publishers:
                thread.join()

    assert failures.empty(), failures.get()
    context = f"seed {seed}, round {round_number}, cursor {cursor}, head {final}"
    assert early + rest == expected, context
    if not params:
        assert expected == list(range(cursor + 1, final + 1)), context


def test_stream_sigterm_closes_streams(tmp_path: Path, record_property: Any) -> None:
    server = Server(tmp_path / "data")
    server.start()
    ended: queue.Queue[str] = queue.Queue()

    def read_to_end() -> None:
        try:
            timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
            with (
                httpx.Client(base_url=server.url, timeout=timeout) as client,
                client.stream("GET", "/events/stream", params={"after": "0"}) as response,
            ):
                for _ in response.iter_bytes():
                    pass
            ended.put("end of stream")
        except httpx.HTTPError as error:
            ended.put(type(error).__name__)

    readers = [threading.Thread(target=read_to_end) for _ in range(3)]
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            publish(client, [make_event("sigterm", n) for n in range(10)])
            for thread in readers:
                thread.start()
            wait_for(lambda: open_streams(client) == 3)

        process = server.process
        assert process is not None
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        seconds = time.monotonic() - started
        for thread in readers:
            thread.join(timeout=10)
    finally:
        server.kill()

    record_property("sigterm_seconds", round(seconds, 3))
    print(f"SIGTERM with 3 open streams: the server exited after {seconds:.3f} s")
    assert seconds < 10
    # uvicorn re-raises the signal after a graceful shutdown, so the exit status is -SIGTERM.
    assert process.returncode == -signal.SIGTERM, server.log()
    assert "Traceback" not in server.log()
    assert [thread.is_alive() for thread in readers] == [False] * 3
    assert [ended.get_nowait() for _ in readers] == ["end of stream"] * 3


def memory_mb(pid: int, field: str) -> float:
    """Return a memory figure of a process from /proc, such as VmRSS or VmHWM (peak RSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"/proc/{pid}/status has no {field}")


# The bound on the server's peak RSS (VmHWM) while 100,000 events of about 1.1 KB
# are published in batches of 1,000 to a server with a 1,000-event tail. Measured
# on 2 cores with DuckDB 2.0.1 and Python 3.11, it was 306 to 309 MiB in four runs
# without any stream open, most of it DuckDB's buffers. With the stalled client it
# was 308 to 312 MiB in three runs. A variant of the stream that queued the unsent events in memory
# peaked at 370 MiB. The bound is the baseline plus about 40 MiB of headroom.
SLOW_READER_MAX_RSS_MB = 350
SLOW_READER_EVENTS = 100_000
SLOW_READER_BATCH = 1000


def test_stream_slow_reader_bounded_memory(tmp_path: Path, record_property: Any) -> None:
    server = Server(tmp_path / "data", EVENTLOG_TAIL_CAPACITY="1000")
    server.start()
    assert server.process is not None
    pid = server.process.pid
    payload = "x" * 1000
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
    try:
        with (
            httpx.Client(base_url=server.url, timeout=30.0) as client,
            httpx.Client(base_url=server.url, timeout=timeout) as reader,
            # Only the response headers are read until the publishing is done.
            connect_sse(reader, "GET", "/events/stream", params={"after": "0"}) as source,
        ):
            assert source.response.status_code == 200
            rss_samples = []
            for batch in range(SLOW_READER_EVENTS // SLOW_READER_BATCH):
                events = [
                    make_event("slow", batch * SLOW_READER_BATCH + n, data={"payload": payload})
                    for n in range(SLOW_READER_BATCH)
                ]
                publish(client, events)
                rss_samples.append(memory_mb(pid, "VmRSS"))
            peak = memory_mb(pid, "VmHWM")

            sequences = []
            for message in source.iter_sse():
                if message.data:
                    sequences.append(int(message.id))
                    if sequences[-1] == SLOW_READER_EVENTS:
                        break
            after_reading = memory_mb(pid, "VmRSS")
    finally:
        server.stop()

    record_property("slow_reader_peak_rss_mb", round(peak))
    print(
        f"Stalled reader: server RSS {max(rss_samples):.0f} MiB at most while publishing, "
        f"peak {peak:.0f} MiB, {after_reading:.0f} MiB after reading"
    )
    assert peak < SLOW_READER_MAX_RSS_MB
    assert sequences == list(range(1, SLOW_READER_EVENTS + 1))


def test_follow_resumes_after_restart(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.start()
    received: queue.Queue[dict[str, Any]] = queue.Queue()

    def consume() -> None:
        for event in follow(server.url, {"type": ["test.stream"]}, after=0):
            received.put(event)
            if event["data"]["number"] == 9:
                return

    def next_sequences(count: int) -> list[int]:
        return [int(received.get(timeout=READ_TIMEOUT)["sequence"]) for _ in range(count)]

    consumer = threading.Thread(target=consume, daemon=True)
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            publish(client, [make_event("follow", n) for n in range(5)])
            publish(client, [make_event("follow", 90, type="test.other")])
            consumer.start()
            before = next_sequences(5)

        server.kill()
        server.start()
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            # Published while the client may still be reconnecting.
            publish(client, [make_event("follow", n) for n in range(5, 10)])
            after = next_sequences(5)
            consumer.join(timeout=READ_TIMEOUT)
    finally:
        server.stop()

    assert before == [1, 2, 3, 4, 5]
    assert after == [7, 8, 9, 10, 11]
    assert not consumer.is_alive()
    assert received.empty()
