"""Retention against the real server: trimming, the Parquet archive, 410 answers, and restarts."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pytest
from conftest import Server
from httpx_sse import connect_sse

RETAIN_EVENTS = 100
# Retention trims once this many events are over the limit: a tenth of it.
TRIM_BATCH = RETAIN_EVENTS // 10
PUBLISHED = 1_000
ARCHIVE_NAME = re.compile(r"day=(\d{4}-\d{2}-\d{2})/events-(\d+)-(\d+)\.parquet")


def make_event(number: int, **attributes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"retention-{number}",
        "source": "/retention-test",
        "type": "order.paid" if number % 2 else "order.created",
        "data": {"number": number},
    }
    event.update(attributes)
    return event


def health(client: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/health").json()
    return body


def wait_for(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"The condition did not hold within {seconds} s.")
        time.sleep(0.05)


def archive_files(data_dir: Path) -> list[tuple[int, int, Path]]:
    found = []
    for path in (data_dir / "archive").rglob("*"):
        match = ARCHIVE_NAME.fullmatch(path.relative_to(data_dir / "archive").as_posix())
        if match:
            found.append((int(match.group(2)), int(match.group(3)), path))
    return sorted(found)


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that keeps 100 events, after 1,000 were published and retention caught up.

    Its tail holds more than the log retains, so that reads below the horizon
    would find the trimmed events in memory if the tail kept them.
    """
    server = Server(
        tmp_path_factory.mktemp("retention") / "data",
        EVENTLOG_RETAIN_EVENTS=str(RETAIN_EVENTS),
        EVENTLOG_TAIL_CAPACITY="5000",
    )
    server.start()
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        client.put("/subscriptions/early", json={"start": 0})
        for first in range(0, PUBLISHED, 50):
            response = client.post(
                "/events", json=[make_event(n) for n in range(first, first + 50)]
            )
            assert response.status_code == 201, response.text
        wait_for(lambda: health(client)["earliest"] > PUBLISHED - RETAIN_EVENTS - TRIM_BATCH)
    yield server
    server.stop()


@pytest.fixture
def api(trimmed: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=trimmed.url, timeout=30.0) as client:
        yield client


def test_retention_keeps_limit(api: httpx.Client) -> None:
    state = health(api)

    retained = state["head"] - state["earliest"] + 1

    assert state["head"] == PUBLISHED
    assert RETAIN_EVENTS <= retained < RETAIN_EVENTS + TRIM_BATCH


def test_retention_archive_holds_trimmed_events(trimmed: Server, api: httpx.Client) -> None:
    earliest = health(api)["earliest"]
    files = archive_files(trimmed.data_dir)
    paths = [str(path) for _, _, path in files]

    rows = duckdb.sql(
        "SELECT sequence, id, event FROM read_parquet($paths) ORDER BY sequence",
        params={"paths": paths},
    ).fetchall()

    assert files[0][0] == 1
    assert files[-1][1] == earliest - 1
    for (_, last, _), (first, _, _) in itertools.pairwise(files):
        assert first == last + 1
    assert [row[0] for row in rows] == list(range(1, earliest))
    assert [row[1] for row in rows] == [f"retention-{n}" for n in range(earliest - 1)]
    for sequence, _, text in rows:
        event = orjson.loads(text)
        assert event["sequence"] == str(sequence)
        assert event["data"] == {"number": sequence - 1}
    assert not list((trimmed.data_dir / "archive").rglob("*.partial"))


def test_retention_cursor_expired(api: httpx.Client) -> None:
    earliest = health(api)["earliest"]

    old = api.get("/events", params={"after": earliest - 2})
    oldest = api.get("/events", params={"after": 0})
    edge = api.get("/events", params={"after": earliest - 1, "limit": 1})
    since = api.get("/events", params={"since": "2000-01-01T00:00:00Z"})
    stream = api.get("/events/stream", params={"after": 0})

    for response in (old, oldest, since, stream):
        assert response.status_code == 410, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["earliest"] == earliest
    assert [event["sequence"] for event in edge.json()] == [str(earliest)]


def test_retention_since_after_horizon(api: httpx.Client) -> None:
    head = health(api)["head"]
    [newest] = api.get("/events", params={"after": head - 1}).json()

    response = api.get("/events", params={"since": newest["recordedtime"], "limit": 1000})

    assert response.status_code == 200, response.text
    events = response.json()
    assert events[-1]["sequence"] == str(head)
    assert {event["recordedtime"] for event in events} == {newest["recordedtime"]}
    first = int(events[0]["sequence"])
    [before] = api.get("/events", params={"after": first - 2, "limit": 1}).json()
    assert before["recordedtime"] < newest["recordedtime"]


def test_retention_expired_subscription(api: httpx.Client) -> None:
    earliest = health(api)["earliest"]

    described = api.get("/subscriptions/early").json()
    page = api.get("/subscriptions/early/events")
    stream = api.get("/subscriptions/early/stream")
    too_old = api.post("/subscriptions/early/seek", json={"sequence": 0})
    moved = api.post("/subscriptions/early/seek", json={"sequence": earliest - 1})
    after_seek = api.get("/subscriptions/early/events", params={"limit": 1})

    assert described["expired"] is True
    assert described["earliest"] == earliest
    assert page.status_code == 410
    assert page.json()["earliest"] == earliest
    assert stream.status_code == 410
    assert too_old.status_code == 410
    assert moved.json()["expired"] is False
    assert [event["sequence"] for event in after_seek.json()] == [str(earliest)]


def test_retention_query_spans_archive(api: httpx.Client) -> None:
    response = api.post(
        "/query",
        json={
            "sql": "SELECT count(*), count(DISTINCT sequence), min(sequence), max(sequence), "
            "sum((data->>'number')::BIGINT) FROM events"
        },
    )

    assert response.status_code == 200, response.text
    [[count, distinct, first, last, total]] = response.json()["rows"]
    assert count == PUBLISHED
    assert distinct == PUBLISHED
    assert (first, last) == (1, PUBLISHED)
    assert total == sum(range(PUBLISHED))


def test_retention_export_spans_archive(api: httpx.Client) -> None:
    import pyarrow as pa

    earliest = health(api)["earliest"]
    response = api.get("/export", params={"after": earliest - 20, "until_sequence": earliest + 9})

    table = pa.ipc.open_stream(response.content).read_all()

    assert response.status_code == 200
    assert table.column("sequence").to_pylist() == list(range(earliest - 19, earliest + 10))


def test_retention_duplicate_of_retained(api: httpx.Client) -> None:
    head = health(api)["head"]

    again = api.post("/events", json=make_event(head - 1))  # Event n has sequence n + 1.

    assert again.status_code == 200
    assert again.json()["sequence"] == head
    assert health(api)["head"] == head


def test_retention_removes_all_and_restarts(tmp_path: Path) -> None:
    # 0.00002 days is 1.7 seconds: every event is soon older than that.
    server = Server(tmp_path / "data", EVENTLOG_RETAIN_DAYS="0.00002")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            for number in range(5):
                client.post("/events", json=make_event(number))
            wait_for(lambda: health(client)["earliest"] == 6)
            empty = client.get("/events", params={"after": 5})
            expired = client.get("/events", params={"after": 4})
        server.stop()
        server.start()
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            after_restart = health(client)
            # The (source, id) of a trimmed event is free again: dedupe covers retained events.
            republished = client.post("/events", json=make_event(0))
            counted = client.post("/query", json={"sql": "SELECT count(*) FROM events"})
    finally:
        server.stop()

    assert empty.status_code == 200
    assert empty.json() == []
    assert expired.status_code == 410
    assert after_restart["head"] == 5
    assert after_restart["earliest"] >= 6
    assert republished.status_code == 201
    assert republished.json()["sequence"] == 6
    assert counted.json()["rows"] == [[6]]


def test_retention_stream_never_serves_trimmed(trimmed: Server, api: httpx.Client) -> None:
    earliest = health(api)["earliest"]

    with connect_sse(
        api, "GET", "/events/stream", params={"after": earliest - 1}, timeout=30.0
    ) as source:
        events = source.iter_sse()
        next(events)
        first = next(events)

    assert int(first.id) == earliest
