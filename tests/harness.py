"""Clients, log checks and process probes for the fault tests and the soak benchmarks.

Publishers retry each request with the same events until it is
acknowledged, as a careful client would. Readers follow a feed, by pages
with `after` or over SSE with `Last-Event-ID`, and reconnect after every
error from their own cursor. The checks compare what the server acknowledged
and delivered with the log that a fresh read returns. `benchmarks/soak.py` and
`benchmarks/soak_crash.py` import this module as well.
"""

from __future__ import annotations

import contextlib
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
from httpx_sse import SSEError, connect_sse

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
SOURCE = "https://faults.example.com"
# Publishers pick one of these types at random, so that filtered readers see about half.
EVENT_TYPES = ("fault.even", "fault.odd")
# Bounds that keep a broken server from hanging a test.
REQUEST_DEADLINE_SECONDS = 60.0
RETRY_PAUSE_SECONDS = 0.02
READ_TIMEOUT_SECONDS = 30.0
DATABASE_FILE = "events.duckdb"


@dataclass
class PublishRequest:
    """One request's events, sent as a batch when `batch` is true, else as one structured event."""

    events: list[dict[str, Any]]
    batch: bool
    sequences: list[int] | None = None  # Set when the server acknowledged the request.


@dataclass
class Publisher:
    """A client thread that publishes until `stop` is set, pausing `pause` seconds between requests.

    It retries each request with the same events until it is acknowledged,
    after connection errors and 503 responses alike.
    """

    url: str
    name: str
    rng: random.Random
    pause: float = 0.0
    max_batch: int = 20
    padding: int = 0  # characters of padding in each event's data
    requests: list[PublishRequest] = field(default_factory=list)
    error: BaseException | None = None
    # Requests sent again after a connection error, and how many of those
    # the server had committed before it died (the retry got 200).
    retried: int = 0
    committed_before_crash: int = 0
    unavailable: int = 0  # 503 responses, each retried

    def run(self, stop: threading.Event) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=10.0) as client:
                while not stop.is_set():
                    request = self._next_request()
                    self.requests.append(request)
                    request.sequences = self._publish(client, request)
                    if self.pause:
                        stop.wait(self.pause)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread.
            self.error = error

    def _next_request(self) -> PublishRequest:
        number = len(self.requests)
        size = 1 if self.rng.random() < 0.5 else self.rng.randint(1, self.max_batch)
        events: list[dict[str, Any]] = []
        for index in range(size):
            data: dict[str, Any] = {"client": self.name, "request": number, "index": index}
            if self.padding:
                data["padding"] = "x" * self.padding
            events.append(
                {
                    "specversion": "1.0",
                    "id": f"{self.name}-{number}-{index}",
                    "source": SOURCE,
                    "type": self.rng.choice(EVENT_TYPES),
                    "data": data,
                }
            )
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
                assert "Retry-After" in response.headers, response.headers
                self.unavailable += 1
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


@dataclass
class Reader:
    """A feed reader's progress: the events it received in order, and its cursor.

    `event_type` filters the feed on that type; None reads every event.
    With `keep` false, as in long soaks, the reader keeps no events: it
    counts them and checks as it goes that sequences only increase, and
    for an unfiltered feed that none is skipped.
    """

    url: str
    event_type: str | None = None
    keep: bool = True
    delivered: list[dict[str, Any]] = field(default_factory=list)
    received: int = 0
    last: int = 0
    cursor: int = 0
    reconnects: int = 0
    # `time.monotonic()` whenever the server ended a stream by completing the response.
    stream_ends: list[float] = field(default_factory=list)
    error: BaseException | None = None

    def parameters(self) -> dict[str, str]:
        return {} if self.event_type is None else {"type": self.event_type}

    def last_sequence(self) -> int:
        return self.last

    def receive(self, event: dict[str, Any]) -> None:
        sequence = int(event["sequence"])
        if not self.keep:
            assert sequence > self.last, f"received {sequence} after {self.last}"
            if self.event_type is None:
                assert sequence == self.last + 1, f"skipped from {self.last} to {sequence}"
        self.last = sequence
        self.received += 1
        if self.keep:
            self.delivered.append(event)


class PageReader(Reader):
    """A client thread that follows the feed page by page with long-polls, from `after=0`."""

    def run(self, stop: threading.Event) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=READ_TIMEOUT_SECONDS) as client:
                while not stop.is_set():
                    self._read_page(client)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread.
            self.error = error

    def _read_page(self, client: httpx.Client) -> None:
        parameters = {**self.parameters(), "after": str(self.cursor), "limit": "200", "wait": "1"}
        try:
            response = client.get("/events", params=parameters)
        except httpx.TransportError:
            self.reconnects += 1
            time.sleep(RETRY_PAUSE_SECONDS)
            return
        assert response.status_code == 200, response.text
        for event in response.json():
            self.receive(event)
        next_after = int(httpx.URL(response.links["next"]["url"]).params["after"])
        assert next_after >= self.cursor, f"the cursor went back from {self.cursor} to {next_after}"
        self.cursor = next_after


class StreamReader(Reader):
    """A client thread that follows `GET /events/stream` and resumes with `Last-Event-ID`.

    The thread ends when `stop` is set and the server ends the stream, so
    callers stop the server (or let it die) before they join it.
    """

    def run(self, stop: threading.Event) -> None:
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_SECONDS)
        try:
            with httpx.Client(base_url=self.url, timeout=timeout) as client:
                while not stop.is_set():
                    self._follow(client, stop)
                    if not stop.is_set():
                        self.reconnects += 1
                        time.sleep(RETRY_PAUSE_SECONDS)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread.
            self.error = error

    def _follow(self, client: httpx.Client, stop: threading.Event) -> None:
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(self.cursor)}
        try:
            with connect_sse(
                client, "GET", "/events/stream", params=self.parameters(), headers=headers
            ) as source:
                if source.response.status_code == 503:
                    return  # The server is shutting down.
                assert source.response.status_code == 200, source.response.read()
                for message in source.iter_sse():
                    if message.data:
                        event = json.loads(message.data)
                        assert event["sequence"] == message.id, message
                        self.receive(event)
                    if message.id:
                        self.cursor = int(message.id)
                    if stop.is_set():
                        return
            self.stream_ends.append(time.monotonic())
        except (httpx.TransportError, SSEError):
            pass  # The server died or closed the stream: resume from the cursor.


def start_threads(clients: list[Any], stop: threading.Event) -> list[threading.Thread]:
    threads = [threading.Thread(target=client.run, args=(stop,), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    return threads


def raise_client_errors(clients: list[Any]) -> None:
    for client in clients:
        if client.error is not None:
            raise client.error


def acknowledged_count(publishers: list[Publisher]) -> int:
    return sum(len(request.events) for p in publishers for request in p.acknowledged())


def wait_for_acknowledgements(publishers: list[Publisher], target: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while acknowledged_count(publishers) < target:
        raise_client_errors(publishers)
        assert time.monotonic() < deadline, f"fewer than {target} events acknowledged in time"
        time.sleep(0.005)


def read_log(url: str) -> list[dict[str, Any]]:
    """Read the whole log from after=0 by following `Link` until a page comes back empty."""
    events: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=30.0) as client:
        next_url = "/events?after=0&limit=1000"
        for _ in range(100_000):
            response = client.get(next_url)
            assert response.status_code == 200, response.text
            page = response.json()
            if not page:
                return events
            events.extend(page)
            next_url = response.links["next"]["url"]
    raise AssertionError("the log did not end within 100,000 pages")


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
    sent_ids: set[str] = set()
    for request in sent:
        present = [event["id"] in by_id for event in request.events]
        assert all(present) or not any(present), (
            f"a batch is half present: {request.events[0]['id']}"
        )
        sent_ids.update(event["id"] for event in request.events)
    assert set(by_id) <= sent_ids, "the log contains events that no client sent"


def expected_for(reader: Reader, log: list[dict[str, Any]]) -> list[int]:
    """Return the sequences of `log` that match the reader's filter."""
    return [
        int(event["sequence"])
        for event in log
        if reader.event_type is None or event["type"] == reader.event_type
    ]


def wait_for_readers(readers: list[Reader], log: list[dict[str, Any]], seconds: float) -> None:
    """Wait until every reader has received the last event of `log` that its filter matches."""
    deadline = time.monotonic() + seconds
    for reader in readers:
        expected = expected_for(reader, log)
        target = expected[-1] if expected else 0
        while reader.last_sequence() < target:
            raise_client_errors([reader])
            assert time.monotonic() < deadline, (
                f"{type(reader).__name__} of {reader.event_type} reached "
                f"{reader.last_sequence()}, not {target}, in {seconds} s"
            )
            time.sleep(0.01)


def check_reader(reader: Reader, log: list[dict[str, Any]]) -> None:
    """Check that a reader received exactly the events of `log` that match its filter, in order.

    The reader started at the beginning, so its sequences must be the whole
    filtered subsequence up to its last one: nothing skipped at a restart,
    nothing twice. Each event must be the one in the log now, so a reader
    never saw an event that a crash then took back. Events the reader
    received past the end of `log`, while clients go on, are checked later.
    """
    received = [event for event in list(reader.delivered) if int(event["sequence"]) <= len(log)]
    delivered = [int(event["sequence"]) for event in received]
    last = delivered[-1] if delivered else 0
    expected = [sequence for sequence in expected_for(reader, log) if sequence <= last]
    name = f"{type(reader).__name__} of {reader.event_type or 'every type'}"
    assert len(delivered) == len(set(delivered)), f"{name} received an event twice"
    missing = sorted(set(expected) - set(delivered))
    assert not missing, f"{name} skipped {len(missing)} events, first {missing[:5]}"
    assert delivered == expected, f"{name} received events out of order or outside its filter"
    for event in received:
        assert event == log[int(event["sequence"]) - 1], (
            f"{name} received an event that differs from the log at {event['sequence']}"
        )


@dataclass
class CrashReport:
    """What a run of crash cycles did: events acknowledged per cycle, retries, reader progress."""

    per_cycle: list[int]
    log_events: int
    retried: int
    committed_before_crash: int
    reader_events: list[int]
    reader_reconnects: int


def run_crash_cycles(server: Any, cycles: int, rng: random.Random, clients: int = 4) -> CrashReport:
    """Publish and read while killing a started `conftest.Server` `cycles` times; check restarts.

    Each cycle waits for a random number of new acknowledgements (1 to 300)
    and up to 10 ms more, so that the kill lands at a random point of a
    group commit. Then it sends SIGKILL and restarts the server on the same
    folder.
    After each restart the whole log is read and checked against every
    acknowledgement and every reader's events. At the end the clients stop,
    the readers catch up with the head, and the log must hold exactly the
    events of every request sent, each once. The server is left stopped.
    """
    publishers = [
        Publisher(server.url, f"c{n}", random.Random(rng.random())) for n in range(clients)
    ]
    readers: list[Reader] = [
        PageReader(server.url),
        PageReader(server.url, EVENT_TYPES[0]),
        StreamReader(server.url),
        StreamReader(server.url, EVENT_TYPES[1]),
    ]
    stop_publishing = threading.Event()
    stop_reading = threading.Event()
    threads = start_threads(publishers, stop_publishing) + start_threads(readers, stop_reading)
    per_cycle: list[int] = []
    try:
        for _ in range(cycles):
            before = acknowledged_count(publishers)
            wait_for_acknowledgements(publishers, before + rng.randint(1, 300), 60.0)
            time.sleep(rng.uniform(0, 0.01))
            server.kill()
            acknowledged = [r for p in publishers for r in p.acknowledged()]
            per_cycle.append(acknowledged_count(publishers) - before)

            server.start()
            # Clients go on while this reads, which the checks allow for.
            log = read_log(server.url)
            check_log(log, acknowledged, None)
            raise_client_errors(readers)
            for reader in readers:
                check_reader(reader, log)

        stop_publishing.set()
        for thread in threads[: len(publishers)]:
            thread.join(timeout=REQUEST_DEADLINE_SECONDS + 10)
        raise_client_errors(publishers)
        assert not any(thread.is_alive() for thread in threads[: len(publishers)]), (
            "a publisher did not stop"
        )

        log = read_log(server.url)
        acknowledged = [r for p in publishers for r in p.acknowledged()]
        check_log(log, acknowledged, [r for p in publishers for r in p.requests])
        assert len(log) == sum(len(r.events) for r in acknowledged), (
            "every request ended acknowledged"
        )
        wait_for_readers(readers, log, 60.0)
        for reader in readers:
            check_reader(reader, log)
            assert reader.last_sequence() == (expected_for(reader, log) or [0])[-1]
    finally:
        stop_publishing.set()
        stop_reading.set()
        server.stop()  # Ends the streams, so that the stream readers return.
        for thread in threads:
            thread.join(timeout=REQUEST_DEADLINE_SECONDS + 10)
    raise_client_errors([*publishers, *readers])
    return CrashReport(
        per_cycle=per_cycle,
        log_events=len(log),
        retried=sum(p.retried for p in publishers),
        committed_before_crash=sum(p.committed_before_crash for p in publishers),
        reader_events=[reader.received for reader in readers],
        reader_reconnects=sum(reader.reconnects for reader in readers),
    )


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """A server process's resource use at one moment, from /proc and its data folder."""

    seconds: float  # since the sampler started
    rss_bytes: int
    open_files: int
    wal_bytes: int
    database_bytes: int


def sample_process(pid: int, data_dir: Path, started: float) -> ProcessSample:
    """Read the resident set size and open descriptors of `pid`, and the database's file sizes."""
    return ProcessSample(
        seconds=time.monotonic() - started,
        rss_bytes=resident_bytes(pid),
        open_files=len(os.listdir(f"/proc/{pid}/fd")),
        wal_bytes=file_size(data_dir / f"{DATABASE_FILE}.wal"),
        database_bytes=file_size(data_dir / DATABASE_FILE),
    )


def resident_bytes(pid: int, field_name: str = "VmRSS") -> int:
    """Return a memory figure of /proc/PID/status in bytes: VmRSS, or VmHWM for the peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) * 1024  # The kernel reports kB.
    raise AssertionError(f"/proc/{pid}/status has no {field_name}")


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@dataclass
class SoakResult:
    """What a soak run measured: the process samples, and what the clients did."""

    samples: list[ProcessSample]
    heads: list[int]  # the log's head at each sample
    final_head: int  # once the publishers stopped, -1 when it could not be read
    acknowledged: int
    publishers: list[Publisher]
    readers: list[Reader]
    stop_seconds: float  # from SIGTERM to the server's exit


def run_soak(
    server: Any,
    seconds: float,
    sample_seconds: float,
    *,
    publishers: int = 4,
    pause: float = 0.05,
    padding: int = 0,
    page_readers: int = 2,
    stream_readers: int = 8,
    on_sample: Any = None,
) -> SoakResult:
    """Publish and read at a steady rate against a started `conftest.Server` for `seconds`.

    Publishers send a request every `pause` seconds each, with `padding`
    characters in each event's data. Half of the
    readers of each kind follow every event and half one event type. The
    server's RSS, open files and database files are sampled every
    `sample_seconds`, and `on_sample(sample, head)` is called with each.
    The server is stopped (SIGTERM) at the end, which also ends the streams.
    """
    rng = random.Random(seconds)
    writers = [
        Publisher(server.url, f"p{n}", random.Random(rng.random()), pause=pause, padding=padding)
        for n in range(publishers)
    ]
    readers: list[Reader] = [
        PageReader(server.url, None if n % 2 == 0 else EVENT_TYPES[0], keep=False)
        for n in range(page_readers)
    ]
    readers += [
        StreamReader(server.url, None if n % 2 == 0 else EVENT_TYPES[1], keep=False)
        for n in range(stream_readers)
    ]
    clients: list[Any] = [*writers, *readers]
    stop = threading.Event()
    threads = start_threads(clients, stop)
    samples: list[ProcessSample] = []
    heads: list[int] = []
    started = time.monotonic()
    pid = server.process.pid
    stop_seconds = 0.0
    final_head = -1
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            while True:
                raise_client_errors(clients)
                sample = sample_process(pid, server.data_dir, started)
                head = int(client.get("/health").json()["head"])
                samples.append(sample)
                heads.append(head)
                if on_sample is not None:
                    on_sample(sample, head)
                if sample.seconds >= seconds:
                    break
                time.sleep(min(sample_seconds, max(0.0, seconds - sample.seconds)))
    finally:
        stop.set()
        for thread in threads[:publishers]:
            thread.join(timeout=REQUEST_DEADLINE_SECONDS + 10)
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            final_head = int(httpx.get(f"{server.url}/health", timeout=30.0).json()["head"])
        stopping = time.monotonic()
        server.stop()
        stop_seconds = time.monotonic() - stopping
        for thread in threads[publishers:]:
            thread.join(timeout=REQUEST_DEADLINE_SECONDS + 10)
    raise_client_errors(clients)
    acknowledged = acknowledged_count(writers)
    return SoakResult(samples, heads, final_head, acknowledged, writers, readers, stop_seconds)
