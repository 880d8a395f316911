"""Subscriptions against the real server: stored filters and cursors, reads, ack, seek, streams.

The concurrency tests publish from several threads while a consumer reads
and acknowledges, and check the delivery guarantee: every matching event
arrives, in sequence order, and none is skipped, even when the consumer
fails before an ack and reads a page again.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import Server
from httpx_sse import connect_sse

LINK_AFTER = "after="


def make_event(tag: str, number: int, **attributes: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"{tag}-{number}",
        "source": f"/subscriptions-test/{tag}",
        "type": "order.created",
        "data": {"number": number},
    }
    event.update(attributes)
    return event


def publish(client: httpx.Client, events: list[dict[str, Any]]) -> list[int]:
    response = client.post("/events", json=events)
    assert response.status_code in (200, 201), response.text
    sequences: list[int] = response.json()["sequences"]
    return sequences


def head_of(client: httpx.Client) -> int:
    head: int = client.get("/health").json()["head"]
    return head


def next_after(response: httpx.Response) -> int:
    link = response.headers["link"]
    return int(link.split(LINK_AFTER)[-1].split(">")[0].split("&")[0])


def sequences_of(response: httpx.Response) -> list[int]:
    return [int(event["sequence"]) for event in response.json()]


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"The condition did not hold within {seconds} s.")
        time.sleep(0.05)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def small_tail_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose tail holds 16 events, so that most reads come from SQL."""
    running = Server(tmp_path_factory.mktemp("subscriptions") / "data", EVENTLOG_TAIL_CAPACITY="16")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def api(small_tail_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=small_tail_server.url, timeout=30.0) as http:
        yield http


def test_subscription_create_replace_delete(api: httpx.Client) -> None:
    name = unique("lifecycle")
    filters = [{"prefix": {"type": "order."}}]

    created = api.put(f"/subscriptions/{name}", json={"filters": filters, "start": 0})
    assert created.status_code == 201, created.text
    assert created.headers["location"].endswith(f"/subscriptions/{name}")
    body = created.json()
    assert body["name"] == name
    assert body["owner"] == "anonymous"
    assert body["filters"] == filters
    assert body["cursor"] == 0
    assert body["head"] == head_of(api)
    assert body["lag"] == body["head"]
    assert body["expired"] is False

    assert api.post(f"/subscriptions/{name}/seek", json={"sequence": 0}).status_code == 200
    replaced = api.put(f"/subscriptions/{name}", json={"filters": [{"suffix": {"type": ".paid"}}]})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["filters"] == [{"suffix": {"type": ".paid"}}]
    assert replaced.json()["cursor"] == 0
    assert replaced.json()["created"] == body["created"]

    restarted = api.put(f"/subscriptions/{name}", json={"start": "now"})
    assert restarted.json()["cursor"] == head_of(api)
    assert restarted.json()["filters"] == []

    assert api.delete(f"/subscriptions/{name}").status_code == 204
    assert api.get(f"/subscriptions/{name}").status_code == 404
    assert api.get(f"/subscriptions/{name}/events").status_code == 404
    assert api.delete(f"/subscriptions/{name}").status_code == 404


def test_subscription_start_positions(api: httpx.Client) -> None:
    tag = unique("start")
    before = time.time()
    sequences = publish(api, [make_event(tag, n) for n in range(3)])
    head = head_of(api)

    def start(value: object) -> httpx.Response:
        return api.put(f"/subscriptions/{unique('start')}", json={"start": value})

    assert start("beginning").json()["cursor"] == 0
    assert start("now").json()["cursor"] == head
    assert api.put(f"/subscriptions/{unique('start')}", json={}).json()["cursor"] == head
    assert start(sequences[1]).json()["cursor"] == sequences[1]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before - 1))
    assert start(stamp).json()["cursor"] <= sequences[0] - 1
    assert start("2999-01-01T00:00:00Z").json()["cursor"] == head

    for bad in (head + 1, -1, True, 1.5, "yesterday", None, [0]):
        response = start(bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["member"] == "start"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"filters": [{"sql": "type = 'x'"}]}, "filters[0]"),
        ({"filters": [{"cesql": "true"}]}, "filters[0]"),
        ({"filters": [{"exact": {"type": ""}}]}, "filters[0].exact.type"),
        ({"filters": [{"prefix": {}}]}, "filters[0].prefix"),
        ({"filters": [{"suffix": {"Type": "x"}}]}, "filters[0].suffix.Type"),
        ({"filters": [{"exact": {"sequence": "1"}}]}, "filters[0].exact.sequence"),
        ({"filters": [{"exact": {"count": 5}}]}, "filters[0].exact.count"),
        ({"filters": [{"all": []}]}, "filters[0].all"),
        ({"filters": [{"any": [{"exact": {"type": "x"}}, {"nope": {}}]}]}, "filters[0].any[1]"),
        ({"filters": [{"not": {"not": {"prefix": {"id": ""}}}}]}, "filters[0].not.not.prefix.id"),
        ({"filters": [{"exact": {"type": "a"}, "prefix": {"type": "b"}}]}, "filters[0]"),
        ({"filters": [{}]}, "filters[0]"),
        ({"filters": {"exact": {"type": "x"}}}, "filters"),
        ({"filters": ["exact"]}, "filters[0]"),
    ],
)
def test_subscription_invalid_filter(api: httpx.Client, body: dict[str, Any], path: str) -> None:
    name = unique("invalid")

    response = api.put(f"/subscriptions/{name}", json=body)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["path"] == path
    assert problem["detail"].startswith(path)
    assert api.get(f"/subscriptions/{name}").status_code == 404


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[]", b'{"filters": [], "color": "red"}', b'{"start": "now", "extra": 1}'],
)
def test_subscription_invalid_body(api: httpx.Client, content: bytes) -> None:
    response = api.put(
        f"/subscriptions/{unique('body')}",
        content=content,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_subscription_invalid_name(api: httpx.Client) -> None:
    response = api.put("/subscriptions/-starts-with-dash", json={})

    assert response.status_code == 400
    assert response.json()["parameter"] == "name"


def test_subscription_read_keeps_cursor(api: httpx.Client) -> None:
    tag = unique("read")
    name = unique("read")
    start = head_of(api)
    api.put(
        f"/subscriptions/{name}",
        json={"filters": [{"exact": {"source": f"/subscriptions-test/{tag}"}}], "start": start},
    )
    sequences = publish(api, [make_event(tag, n) for n in range(5)])

    first = api.get(f"/subscriptions/{name}/events", params={"limit": 2})
    again = api.get(f"/subscriptions/{name}/events", params={"limit": 2})
    followed = api.get(first.headers["link"].split(">")[0].lstrip("<"))

    assert first.status_code == 200
    assert first.headers["content-type"] == "application/cloudevents-batch+json"
    assert sequences_of(first) == sequences[:2]
    assert sequences_of(again) == sequences[:2]
    assert next_after(first) == sequences[1]
    assert "limit=2" in first.headers["link"]
    assert sequences_of(followed) == sequences[2:4]
    assert api.get(f"/subscriptions/{name}").json()["cursor"] == start


def test_subscription_ack_rules(api: httpx.Client) -> None:
    name = unique("ack")
    tag = unique("ack")
    api.put(f"/subscriptions/{name}", json={"start": "now"})
    sequences = publish(api, [make_event(tag, n) for n in range(4)])
    head = head_of(api)

    def ack(body: object) -> httpx.Response:
        return api.post(f"/subscriptions/{name}/ack", json=body)

    assert ack({"sequence": sequences[2]}).json()["cursor"] == sequences[2]
    assert ack({"sequence": sequences[0]}).json()["cursor"] == sequences[2]
    assert ack({"sequence": head}).json()["lag"] == 0
    for body in ({"sequence": head + 1}, {"sequence": -1}, {"sequence": True}, {}, {"seq": 1}):
        response = ack(body)
        assert response.status_code == 400, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert api.get(f"/subscriptions/{name}").json()["cursor"] == head
    assert api.post(f"/subscriptions/{unique('none')}/ack", json={"sequence": 0}).status_code == 404


def test_subscription_seek_replays(api: httpx.Client) -> None:
    name = unique("seek")
    tag = unique("seek")
    source = f"/subscriptions-test/{tag}"
    api.put(f"/subscriptions/{name}", json={"filters": [{"exact": {"source": source}}]})
    sequences = publish(api, [make_event(tag, n) for n in range(3)])
    api.post(f"/subscriptions/{name}/ack", json={"sequence": sequences[-1]})
    assert api.get(f"/subscriptions/{name}/events").json() == []

    back = api.post(f"/subscriptions/{name}/seek", json={"sequence": sequences[0] - 1})
    replayed = api.get(f"/subscriptions/{name}/events")
    by_time = api.post(f"/subscriptions/{name}/seek", json={"time": "2000-01-01T00:00:00Z"})
    future = api.post(f"/subscriptions/{name}/seek", json={"time": "2999-01-01T00:00:00Z"})

    assert back.json()["cursor"] == sequences[0] - 1
    assert sequences_of(replayed) == sequences
    assert by_time.json()["cursor"] == 0
    assert future.json()["cursor"] == head_of(api)
    for body in ({"sequence": 1, "time": "2000-01-01T00:00:00Z"}, {}, {"time": "noon"}):
        response = api.post(f"/subscriptions/{name}/seek", json=body)
        assert response.status_code == 400, (body, response.text)


def test_subscription_filter_dialects_select(api: httpx.Client) -> None:
    tag = unique("dialects")
    start = head_of(api)
    events = [
        make_event(tag, 0, type="order.created", subject="/eu/1", region="eu"),
        make_event(tag, 1, type="order.paid", subject="/eu/2", region="eu"),
        make_event(tag, 2, type="order.paid", subject="/us/3"),
        make_event(tag, 3, type="invoice.paid", subject="/us/4", region="us"),
        make_event(tag, 4, type="invoice.sent", region="eu"),
    ]
    sequences = publish(api, events)
    filters = [
        {"exact": {"source": f"/subscriptions-test/{tag}"}},
        {
            "any": [
                {"all": [{"prefix": {"type": "order."}}, {"not": {"exact": {"region": "us"}}}]},
                {"suffix": {"type": ".sent"}},
            ]
        },
        {"not": {"suffix": {"subject": "/2"}}},
    ]
    name = unique("dialects")
    api.put(f"/subscriptions/{name}", json={"filters": filters, "start": start})

    # 0: order, region eu. 1: subject ends with /2. 2: order, no region, so
    # not(exact region=us) matches. 3: invoice.paid. 4: .sent, no subject.
    response = api.get(f"/subscriptions/{name}/events")

    assert sequences_of(response) == [sequences[0], sequences[2], sequences[4]]


def consume(
    api: httpx.Client,
    name: str,
    expected_count: int,
    rng: random.Random,
    deliveries: list[int],
) -> None:
    """Read pages and acknowledge them until `expected_count` distinct events arrived.

    Now and then the consumer "fails" after reading a page: it does not
    acknowledge, so the next read repeats the page. The last page is always
    acknowledged.
    """
    received: set[int] = set()
    deadline = time.monotonic() + 60
    while len(received) < expected_count:
        assert time.monotonic() < deadline, f"only {len(received)} of {expected_count} arrived"
        response = api.get(f"/subscriptions/{name}/events", params={"limit": 7, "wait": 1})
        assert response.status_code == 200, response.text
        page = sequences_of(response)
        deliveries.extend(page)
        received.update(page)
        if page and rng.random() < 0.2 and len(received) < expected_count:
            continue
        api.post(f"/subscriptions/{name}/ack", json={"sequence": next_after(response)})


def publish_concurrently(url: str, tag: str, threads: int, per_thread: int) -> list[int]:
    """Publish from several threads at once; return every sequence assigned."""
    sequences: list[int] = []
    lock = threading.Lock()

    def publisher(worker: int) -> None:
        rng = random.Random(worker)
        with httpx.Client(base_url=url, timeout=30.0) as client:
            number = 0
            while number < per_thread:
                size = rng.randint(1, 9)
                batch = [
                    make_event(
                        tag,
                        worker * 100_000 + number + offset,
                        type="order.paid" if (number + offset) % 3 else "noise.tick",
                    )
                    for offset in range(min(size, per_thread - number))
                ]
                assigned = publish(client, batch)
                with lock:
                    sequences.extend(assigned)
                number += len(batch)

    workers = [threading.Thread(target=publisher, args=(worker,)) for worker in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(sequences)


def matching_sequences(api: httpx.Client, tag: str, after: int) -> list[int]:
    """The sequences of this test's order.paid events, read with GET /events."""
    found: list[int] = []
    params: dict[str, Any] = {
        "source": f"/subscriptions-test/{tag}",
        "type": "order.paid",
        "after": after,
        "limit": 1000,
    }
    while True:
        response = api.get("/events", params=params)
        page = sequences_of(response)
        if not page and next_after(response) == params["after"]:
            return found
        found.extend(page)
        params["after"] = next_after(response)


def test_subscription_consumer_concurrent_publishing(
    small_tail_server: Server, api: httpx.Client
) -> None:
    tag = unique("concurrent")
    name = unique("concurrent")
    filters = [
        {"exact": {"source": f"/subscriptions-test/{tag}"}},
        {"exact": {"type": "order.paid"}},
    ]
    start = head_of(api)
    api.put(f"/subscriptions/{name}", json={"filters": filters, "start": start})
    threads, per_thread = 3, 150
    expected_count = sum(1 for number in range(per_thread) if number % 3) * threads
    deliveries: list[int] = []
    consumer = threading.Thread(
        target=lambda: consume(api, name, expected_count, random.Random(7), deliveries)
    )

    consumer.start()
    publish_concurrently(small_tail_server.url, tag, threads, per_thread)
    consumer.join()

    expected = matching_sequences(api, tag, start)
    assert len(expected) == expected_count
    assert sorted(set(deliveries)) == expected
    # In order: a repeat only ever restarts at an unacknowledged page.
    first_seen = list(dict.fromkeys(deliveries))
    assert first_seen == expected
    final = api.get(f"/subscriptions/{name}").json()
    assert final["cursor"] >= expected[-1]


def test_subscription_stream_concurrent_publishing(
    small_tail_server: Server, api: httpx.Client
) -> None:
    tag = unique("stream")
    name = unique("stream")
    filters = [
        {"exact": {"source": f"/subscriptions-test/{tag}"}},
        {"exact": {"type": "order.paid"}},
    ]
    history = publish(api, [make_event(tag, 900_000 + n, type="order.paid") for n in range(5)])
    api.put(f"/subscriptions/{name}", json={"filters": filters, "start": history[1]})
    threads, per_thread = 2, 120
    live_count = sum(1 for number in range(per_thread) if number % 3) * threads
    received: list[int] = []

    with connect_sse(
        api, "GET", f"/subscriptions/{name}/stream", timeout=httpx.Timeout(30.0)
    ) as source:
        assert source.response.status_code == 200
        events = source.iter_sse()
        first = next(events)
        assert first.id == str(history[1])
        assert first.data == ""
        publisher = threading.Thread(
            target=publish_concurrently, args=(small_tail_server.url, tag, threads, per_thread)
        )
        publisher.start()
        for message in events:
            received.append(int(message.id))
            assert int(orjson.loads(message.data)["sequence"]) == received[-1]
            if len(received) == 3 + live_count:
                break
        publisher.join()

    expected = [*history[2:], *matching_sequences(api, tag, history[-1])]
    assert received == expected
    assert api.get(f"/subscriptions/{name}").json()["cursor"] == history[1]


def test_subscription_stream_ends_on_delete(api: httpx.Client) -> None:
    name = unique("ending")
    api.put(f"/subscriptions/{name}", json={"start": "now"})

    with connect_sse(
        api, "GET", f"/subscriptions/{name}/stream", timeout=httpx.Timeout(30.0)
    ) as source:
        events = source.iter_sse()
        next(events)
        assert api.delete(f"/subscriptions/{name}").status_code == 204
        remaining = list(events)

    assert remaining == []


def test_subscription_stream_resumes_last_event_id(api: httpx.Client) -> None:
    tag = unique("resume")
    name = unique("resume")
    sequences = publish(api, [make_event(tag, n) for n in range(4)])
    source_filter = [{"exact": {"source": f"/subscriptions-test/{tag}"}}]
    api.put(f"/subscriptions/{name}", json={"filters": source_filter, "start": sequences[0] - 1})

    with connect_sse(
        api,
        "GET",
        f"/subscriptions/{name}/stream",
        headers={"Last-Event-ID": str(sequences[1])},
        timeout=httpx.Timeout(30.0),
    ) as source:
        events = source.iter_sse()
        next(events)
        received = [int(next(events).id), int(next(events).id)]

    assert received == sequences[2:]


def test_subscription_survives_restart(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            sequences = publish(client, [make_event("restart", n) for n in range(3)])
            filters = [{"not": {"prefix": {"type": "noise."}}}]
            client.put("/subscriptions/durable", json={"filters": filters, "start": 0})
            client.post("/subscriptions/durable/ack", json={"sequence": sequences[1]})
        server.stop()
        server.start()
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            stored = client.get("/subscriptions/durable").json()
            page = client.get("/subscriptions/durable/events")
    finally:
        server.stop()

    assert stored["cursor"] == sequences[1]
    assert stored["filters"] == filters
    assert sequences_of(page) == sequences[2:]


def test_subscription_lag_metric(api: httpx.Client) -> None:
    name = unique("metric")
    api.put(f"/subscriptions/{name}", json={"start": 0})
    head = head_of(api)

    metrics = api.get("/metrics").text

    assert f'eventlog_subscription_lag{{subscription="{name}"}} {float(head)}' in metrics
    assert "eventlog_subscriptions " in metrics


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("subscriptions-auth") / "data", EVENTLOG_NO_AUTH="0")
    running.start()
    yield running
    running.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_subscription_ownership(auth_server: Server) -> None:
    admin_token = (auth_server.data_dir / "admin.token").read_text().strip()
    with httpx.Client(base_url=auth_server.url, headers=bearer(admin_token), timeout=30.0) as admin:
        tokens = {}
        for owner, grants in (
            ("alice", ["read subject=/party/1"]),
            ("bob", ["read"]),
            ("publisher", ["publish"]),
        ):
            created = admin.post("/tokens", json={"name": owner, "grants": grants})
            assert created.status_code == 201, created.text
            tokens[owner] = created.json()["token"]
        sequences = publish(
            admin, [make_event("owned", n, subject=f"/party/{n % 2}") for n in range(6)]
        )
        alice = httpx.Client(base_url=auth_server.url, headers=bearer(tokens["alice"]))
        bob = httpx.Client(base_url=auth_server.url, headers=bearer(tokens["bob"]))
        with alice, bob:
            created = alice.put("/subscriptions/alices", json={"start": 0})
            assert created.status_code == 201, created.text
            assert created.json()["owner"] == "alice"

            own_page = alice.get("/subscriptions/alices/events")
            admin_view = admin.get("/subscriptions/alices")
            admin_page = admin.get("/subscriptions/alices/events")
            refusals = [
                bob.get("/subscriptions/alices"),
                bob.get("/subscriptions/alices/events"),
                bob.get("/subscriptions/alices/stream"),
                bob.post("/subscriptions/alices/ack", json={"sequence": 1}),
                bob.post("/subscriptions/alices/seek", json={"sequence": 0}),
                bob.put("/subscriptions/alices", json={"filters": []}),
                bob.delete("/subscriptions/alices"),
            ]
            publisher = admin.put(
                "/subscriptions/theirs",
                headers=bearer(tokens["publisher"]),
                json={"start": 0},
            )
            anonymous = httpx.get(f"{auth_server.url}/subscriptions/alices")
            replaced_by_admin = admin.put("/subscriptions/alices", json={"start": "now"})
            audit = admin.get("/audit", params={"action": "subscription.create"}).json()

            def denials() -> list[dict[str, Any]]:
                records: list[dict[str, Any]] = admin.get(
                    "/audit", params={"principal": "bob"}
                ).json()
                return records

            # Denials are audited with the next commit, shortly after the response.
            wait_for(lambda: len(denials()) == len(refusals))
            denied = denials()

    assert [event["subject"] for event in own_page.json()] == ["/party/1"] * 3
    assert sequences_of(own_page) == sequences[1::2]
    assert admin_view.status_code == 200
    assert sequences_of(admin_page) == sequences
    for refusal in refusals:
        assert refusal.status_code == 403, refusal.request.url
        assert refusal.headers["content-type"] == "application/problem+json"
    assert publisher.status_code == 403
    assert anonymous.status_code == 401
    assert replaced_by_admin.status_code == 200
    assert replaced_by_admin.json()["owner"] == "alice"
    assert [record["principal"] for record in audit] == ["alice"]
    assert audit[0]["detail"]["name"] == "alices"
    assert {record["status"] for record in denied} == {403}
