"""Crash safety: SIGKILL the server while clients publish, restart it, check the log.

Clients publish singles and batches and retry every request with the same
events until it is acknowledged, as a careful client would. After each
restart, every acknowledged event must be present exactly once under its
acknowledged sequence, sequences must be dense, and no batch may be half
present.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from conftest import Server

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
SOURCE = "https://crash.example.com"
CYCLES = 5
CLIENTS = 4
# Bounds that keep a broken server from hanging the test.
REQUEST_DEADLINE_SECONDS = 60.0
ACKNOWLEDGE_DEADLINE_SECONDS = 60.0
RETRY_PAUSE_SECONDS = 0.02


@dataclass
class PublishRequest:
    """One request's events, sent as a batch when `batch` is true, else as one structured event."""

    events: list[dict[str, Any]]
    batch: bool
    sequences: list[int] | None = None  # Set when the server acknowledged the request.


@dataclass
class Publisher:
    """A client thread that publishes until `stop` is set.

    It retries each request with the same events until it is acknowledged.
    """

    url: str
    name: str
    rng: random.Random
    requests: list[PublishRequest] = field(default_factory=list)
    error: BaseException | None = None
    # Requests sent again after a connection error, and how many of those
    # the server had committed before it died (the retry got 200).
    retried: int = 0
    committed_before_crash: int = 0

    def run(self, stop: threading.Event) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=10.0) as client:
                while not stop.is_set():
                    request = self._next_request()
                    self.requests.append(request)
                    request.sequences = self._publish(client, request)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread.
            self.error = error

    def _next_request(self) -> PublishRequest:
        number = len(self.requests)
        size = 1 if self.rng.random() < 0.5 else self.rng.randint(1, 20)
        events = [
            {
                "specversion": "1.0",
                "id": f"{self.name}-{number}-{index}",
                "source": SOURCE,
                "type": "crash.tested",
                "data": {"client": self.name, "request": number, "index": index},
            }
            for index in range(size)
        ]
        return PublishRequest(events, batch=size > 1 or self.rng.random() < 0.3)

    def _publish(self, client: httpx.Client, request: PublishRequest) -> list[int]:
        if request.batch:
            body, content_type = json.dumps(request.events), BATCH
        else:
            body, content_type = json.dumps(request.events[0]), STRUCTURED
        deadline = time.monotonic() + REQUEST_DEADLINE_SECONDS
        failed = False
        while time.monotonic() < deadline:
            try:
                response = client.post(
                    "/events", content=body, headers={"Content-Type": content_type}
                )
            except httpx.TransportError:
                failed = True
                time.sleep(RETRY_PAUSE_SECONDS)  # The server is down or restarting.
                continue
            if response.status_code == 503:
                time.sleep(RETRY_PAUSE_SECONDS)
                continue
            assert response.status_code in (200, 201), response.text
            document = response.json()
            if failed:
                self.retried += 1
                if response.status_code == 200:
                    self.committed_before_crash += 1
                if request.batch:
                    # A retried batch was committed whole before the kill, or not at all.
                    assert document["duplicates"] in (0, len(request.events)), (
                        f"a retried batch was half committed before the kill: {document}"
                    )
            sequences: list[int] = (
                document["sequences"] if request.batch else [document["sequence"]]
            )
            assert len(sequences) == len(request.events)
            return sequences
        raise AssertionError(f"{self.name} got no acknowledgement in {REQUEST_DEADLINE_SECONDS} s")

    def acknowledged(self) -> list[PublishRequest]:
        # Copy first: the thread may append while this runs.
        return [request for request in list(self.requests) if request.sequences is not None]


def acknowledged_count(publishers: list[Publisher]) -> int:
    return sum(len(request.events) for p in publishers for request in p.acknowledged())


def wait_for_acknowledgements(publishers: list[Publisher], target: int) -> None:
    deadline = time.monotonic() + ACKNOWLEDGE_DEADLINE_SECONDS
    while acknowledged_count(publishers) < target:
        for publisher in publishers:
            if publisher.error is not None:
                raise publisher.error
        assert time.monotonic() < deadline, f"fewer than {target} events acknowledged in time"
        time.sleep(0.005)


def read_log(url: str) -> list[dict[str, Any]]:
    """Read the whole log from after=0 by following `Link` until a page comes back empty."""
    events: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=30.0) as client:
        next_url = "/events?after=0&limit=1000"
        for _ in range(10_000):
            response = client.get(next_url)
            assert response.status_code == 200, response.text
            page = response.json()
            if not page:
                return events
            events.extend(page)
            next_url = response.links["next"]["url"]
    raise AssertionError("the log did not end within 10,000 pages")


def check_log(
    log: list[dict[str, Any]], acknowledged: list[PublishRequest], sent: list[PublishRequest] | None
) -> None:
    """Check the log against what the server acknowledged and, unless None, every request sent."""
    sequences = [int(event["sequence"]) for event in log]
    assert sequences == list(range(1, len(log) + 1)), "sequences must be dense from 1"

    identities = Counter((event["source"], event["id"]) for event in log)
    assert max(identities.values(), default=0) == 1, "every (source, id) is in the log once"

    for request in acknowledged:
        assert request.sequences is not None
        for sequence, event in zip(request.sequences, request.events):
            assert sequence <= len(log), (
                f"acknowledged sequence {sequence} is past the head {len(log)}"
            )
            stored = {
                k: v for k, v in log[sequence - 1].items() if k not in ("sequence", "recordedtime")
            }
            assert stored == event, f"sequence {sequence} does not hold the acknowledged event"

    if sent is None:
        return
    by_id = {event["id"]: event for event in log}
    sent_ids = set()
    for request in sent:
        present = [event["id"] in by_id for event in request.events]
        assert all(present) or not any(present), (
            f"a batch is half present: {request.events[0]['id']}"
        )
        sent_ids.update(event["id"] for event in request.events)
    assert set(by_id) <= sent_ids, "the log contains events that no client sent"


def test_crash_keeps_acknowledged_events(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    print(f"random seed {seed}")  # pytest shows it when the test fails.
    server = Server(tmp_path / "data")
    server.start()
    stop = threading.Event()
    publishers = [
        Publisher(server.url, f"c{n}", random.Random(rng.random())) for n in range(CLIENTS)
    ]
    threads = [threading.Thread(target=p.run, args=(stop,)) for p in publishers]
    for thread in threads:
        thread.start()

    per_cycle: list[int] = []
    try:
        try:
            for _ in range(CYCLES):
                before = acknowledged_count(publishers)
                # Kill at a random moment: after a random number of
                # acknowledgements, plus up to 10 ms, a few group commits.
                wait_for_acknowledgements(publishers, before + rng.randint(1, 300))
                time.sleep(rng.uniform(0, 0.01))
                server.kill()
                acknowledged = [r for p in publishers for r in p.acknowledged()]
                per_cycle.append(acknowledged_count(publishers) - before)

                server.start()
                # Clients publish again while this reads, which the checks allow for.
                check_log(read_log(server.url), acknowledged, None)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=REQUEST_DEADLINE_SECONDS + 10)

        for publisher in publishers:
            if publisher.error is not None:
                raise publisher.error
        assert not any(thread.is_alive() for thread in threads), "a client did not stop"

        log = read_log(server.url)
        acknowledged = [r for p in publishers for r in p.acknowledged()]
        sent = [r for p in publishers for r in p.requests]
        check_log(log, acknowledged, sent)
        assert len(log) == sum(len(r.events) for r in acknowledged), (
            "every request ended acknowledged"
        )
        retried = sum(p.retried for p in publishers)
        committed = sum(p.committed_before_crash for p in publishers)
        print(
            f"events acknowledged per cycle {per_cycle}, log of {len(log)} events, "
            f"{retried} requests retried, {committed} of them committed before the kill"
        )
    finally:
        server.stop()
