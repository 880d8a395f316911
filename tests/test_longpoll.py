"""Long-poll reads: `GET /events?wait=N` keeps a request open until a matching event commits.

Each test starts the read in a thread, waits until the client has sent the
whole request, and only then publishes. The checks are on what the read
returns. The only timed checks are a lower bound, which a slow machine
cannot break, and a 25 s margin on a 30 s wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import Server

BATCH = "application/cloudevents-batch+json"
# Bound on how long a test waits for the client thread to send its request.
SEND_TIMEOUT_SECONDS = 30.0


class PendingRead:
    """A `GET /events` running in its own thread and client."""

    def __init__(self, url: str, params: dict[str, str]) -> None:
        self.sent = threading.Event()
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.elapsed = 0.0
        self._thread = threading.Thread(target=self._run, args=(url, params))
        self._thread.start()
        assert self.sent.wait(SEND_TIMEOUT_SECONDS), "the read was not sent"

    def _trace(self, name: str, info: dict[str, Any]) -> None:
        # The client starts reading the response only after it sent the whole request.
        # NOTE: the server may still be parsing it, so a publish that follows at
        # once can, rarely, commit before the read starts waiting. The checks pass
        # either way, but such a run does not exercise the wake-up.
        if name == "http11.receive_response_headers.started":
            self.sent.set()

    def _run(self, url: str, params: dict[str, str]) -> None:
        started = time.monotonic()
        try:
            with httpx.Client(base_url=url, timeout=120.0) as client:
                self.response = client.get(
                    "/events", params=params, extensions={"trace": self._trace}
                )
        except BaseException as error:  # noqa: BLE001 - re-raised by `result`.
            self.error = error
            self.sent.set()
        self.elapsed = time.monotonic() - started

    def result(self) -> httpx.Response:
        """Wait for the response (at most 120 s) and return it."""
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the read did not return in 120 s"
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


def event(id: str, type: str) -> dict[str, Any]:
    return {"specversion": "1.0", "id": id, "source": "https://longpoll.example.com", "type": type}


def publish(client: httpx.Client, *events: dict[str, Any]) -> list[int]:
    response = client.post("/events", json=list(events), headers={"Content-Type": BATCH})
    assert response.status_code == 201, response.text
    sequences: list[int] = response.json()["sequences"]
    return sequences


def next_after(response: httpx.Response) -> int:
    url = httpx.URL(response.links["next"]["url"])
    return int(url.params["after"])


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


def test_longpoll_returns_matching_event(server: Server, http: httpx.Client) -> None:
    head = publish(http, event("before-1", "order.created"), event("before-2", "order.created"))[-1]
    read = PendingRead(server.url, {"after": str(head), "type": "order.*", "wait": "30"})

    [sequence] = publish(http, event("match", "order.paid"))

    response = read.result()
    assert response.status_code == 200
    delivered = response.json()
    assert [e["id"] for e in delivered] == ["match"], "the read must return the event, not time out"
    assert delivered[0]["sequence"] == str(sequence)
    assert next_after(response) == sequence
    # 30 s is far longer than any publish takes: an empty page would mean
    # the commit did not wake the read.
    assert read.elapsed < 25


def test_longpoll_returns_match_among_others(server: Server, http: httpx.Client) -> None:
    read = PendingRead(server.url, {"after": "0", "type": "order.paid", "wait": "30"})

    sequences = publish(
        http,
        event("other-1", "order.created"),
        event("match", "order.paid"),
        event("other-2", "order.created"),
    )

    response = read.result()
    assert response.status_code == 200
    assert [e["id"] for e in response.json()] == ["match"]
    assert next_after(response) >= sequences[1]


def test_longpoll_skips_nonmatching_event(server: Server, http: httpx.Client) -> None:
    read = PendingRead(server.url, {"after": "0", "type": "order.paid", "wait": "1"})

    [sequence] = publish(http, event("other", "order.created"))

    response = read.result()
    assert response.status_code == 200
    assert response.json() == []
    assert next_after(response) == sequence, "the cursor moves past the event that did not match"
    # The server waits the full second after it received the request, which
    # was after this thread started timing, so this cannot be noise.
    assert read.elapsed >= 1.0, "a non-matching event must not end the wait"


def test_longpoll_waits_past_nonmatching(server: Server, http: httpx.Client) -> None:
    read = PendingRead(server.url, {"after": "0", "type": "order.paid", "wait": "30"})

    [other] = publish(http, event("other", "order.created"))
    [match] = publish(http, event("match", "order.paid"))

    response = read.result()
    assert response.status_code == 200
    delivered = response.json()
    assert [e["id"] for e in delivered] == ["match"], (
        "the wait must go on after the non-matching event"
    )
    assert delivered[0]["sequence"] == str(match)
    assert next_after(response) == match > other


def test_longpoll_times_out_empty(server: Server, http: httpx.Client) -> None:
    head = publish(http, event("old-1", "order.created"), event("old-2", "order.paid"))[-1]

    response = http.get("/events", params={"after": str(head), "wait": "1", "limit": "5"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(BATCH)
    assert response.json() == []
    url = httpx.URL(response.links["next"]["url"])
    assert url.path == "/events"
    assert url.params["after"] == str(head)
    assert url.params["wait"] == "1"
    assert url.params["limit"] == "5"


def test_longpoll_filtered_timeout_reaches_head(server: Server, http: httpx.Client) -> None:
    head = publish(http, event("old-1", "order.created"), event("old-2", "order.paid"))[-1]

    response = http.get("/events", params={"after": "0", "type": "invoice.*", "wait": "1"})

    assert response.status_code == 200
    assert response.json() == []
    url = httpx.URL(response.links["next"]["url"])
    assert url.params["after"] == str(head), "the cursor moves past every event that did not match"
    assert url.params.get_list("type") == ["invoice.*"]


def test_longpoll_empty_log_times_out(server: Server, http: httpx.Client) -> None:
    response = http.get("/events", params={"wait": "1"})

    assert response.status_code == 200
    assert response.json() == []
    assert next_after(response) == 0
