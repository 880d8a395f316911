"""Graceful shutdown: SIGTERM to `eventlog serve` under load.

Every publish in flight either finishes with its acknowledgement or fails
cleanly (503, or a connection closed without a response), and every
acknowledged event is in the log after a restart. Held long-polls are
answered and streams are ended by the server, the log is checkpointed so
the write-ahead log is gone, and the process exits promptly. The exit
times are printed; the assertion on them is a generous 10 s.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from conftest import ServeCommand, Server
from harness import (
    BATCH,
    DATABASE_FILE,
    PublishRequest,
    StreamReader,
    check_log,
    file_size,
    raise_client_errors,
    read_log,
    start_threads,
)

PUBLISHERS = 6
STREAM_READERS = 3
# A generous bound: `eventlog serve` waits 3 s for stalled streams and then
# closes the log, which took well under a second in these tests.
EXIT_SECONDS = 10.0


@dataclass
class Outcome:
    """One publish: when it was sent, when its response or error arrived, and which."""

    request: PublishRequest
    sent: float
    answered: float
    result: int | str


@dataclass
class OneShotPublisher:
    """Publishes batches of 10 without retrying, until a request fails or `stop` is set."""

    url: str
    name: str
    outcomes: list[Outcome] = field(default_factory=list)
    error: BaseException | None = None

    def run(self, stop: threading.Event) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=30.0) as client:
                while not stop.is_set() and self._publish(client, len(self.outcomes)):
                    pass
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread.
            self.error = error

    def _publish(self, client: httpx.Client, number: int) -> bool:
        events = [
            {
                "specversion": "1.0",
                "id": f"{self.name}-{number}-{index}",
                "source": "https://shutdown.example.com",
                "type": "shutdown.tested",
                "data": {"padding": "x" * 500},
            }
            for index in range(10)
        ]
        request = PublishRequest(events, batch=True)
        sent = time.monotonic()
        try:
            response = client.post(
                "/events", content=json.dumps(events), headers={"Content-Type": BATCH}
            )
        except httpx.TransportError as error:
            self.outcomes.append(Outcome(request, sent, time.monotonic(), type(error).__name__))
            return False
        self.outcomes.append(Outcome(request, sent, time.monotonic(), response.status_code))
        if response.status_code in (200, 201):
            request.sequences = response.json()["sequences"]
            return True
        assert response.status_code == 503, response.text
        assert "Retry-After" in response.headers
        return False


def acknowledged(publishers: list[OneShotPublisher]) -> list[PublishRequest]:
    return [o.request for p in publishers for o in p.outcomes if o.request.sequences is not None]


def terminate(server: Server) -> tuple[float, float]:
    """Send SIGTERM and wait for the exit; return when the signal was sent and the seconds to exit."""
    assert server.process is not None
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    returncode = server.process.wait(timeout=60)
    seconds = time.monotonic() - signalled
    # uvicorn exits with SIGTERM's status after a graceful shutdown.
    assert returncode in (0, -signal.SIGTERM), server.log()
    server.process = None
    return signalled, seconds


def start_load(server: Server) -> tuple[list[OneShotPublisher], list[StreamReader], list[Any]]:
    publishers = [OneShotPublisher(server.url, f"p{n}") for n in range(PUBLISHERS)]
    readers = [StreamReader(server.url, keep=False) for _ in range(STREAM_READERS)]
    stop = threading.Event()
    threads = start_threads([*publishers, *readers], stop)
    return publishers, readers, [stop, threads]


def test_shutdown_under_load(tmp_path: Path) -> None:
    server = ServeCommand(tmp_path / "data", log_level="info")
    server.start()
    publishers, readers, (stop, threads) = start_load(server)
    # A long-poll far past the head, which would wait its full 30 s. It is
    # sent before 300 more events are acknowledged, so the server is holding
    # it when SIGTERM arrives.
    held = socket.create_connection(("127.0.0.1", server.port), timeout=60.0)
    try:
        wait_for_acknowledgements_of(publishers, 100)
        held.sendall(b"GET /events?after=1000000000&wait=30 HTTP/1.1\r\nHost: test\r\n\r\n")
        wait_for_acknowledgements_of(publishers, 400)
        signalled, seconds = terminate(server)
        held_response = read_response(held)
    finally:
        held.close()
        stop.set()
        server.stop()
        for thread in threads:
            thread.join(timeout=60)
    raise_client_errors([*publishers, *readers])

    outcomes = [o for p in publishers for o in p.outcomes]
    in_flight = [o for o in outcomes if o.sent < signalled < o.answered]
    results = sorted({str(o.result) for o in outcomes})
    print(
        f"exited {seconds:.2f} s after SIGTERM; {len(in_flight)} publishes in flight ended "
        f"{sorted(str(o.result) for o in in_flight)}; all results {results}"
    )
    assert seconds < EXIT_SECONDS, f"the server took {seconds:.1f} s to exit"
    for outcome in outcomes:
        assert outcome.result in (200, 201, 503) or isinstance(outcome.result, str), outcome
    for reader in readers:
        assert reader.stream_ends, "the server did not end a stream before it exited"
        assert reader.stream_ends[-1] <= signalled + seconds
    assert held_response.startswith(b"HTTP/1.1 200 "), held_response
    assert held_response.endswith(b"\r\n\r\n[]"), held_response
    assert file_size(server.data_dir / f"{DATABASE_FILE}.wal") == 0, "the log was not checkpointed"

    server.start()
    try:
        log = read_log(server.url)
    finally:
        server.stop()
    check_log(log, acknowledged(publishers), None)
    logged = {event["id"] for event in log}
    for outcome in (o for o in outcomes if o.result == 503):
        assert not any(event["id"] in logged for event in outcome.request.events), outcome


def read_response(connection: socket.socket) -> bytes:
    """Read a whole response from a connection that the server closes after it."""
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def wait_for_acknowledgements_of(publishers: list[OneShotPublisher], events: int) -> None:
    deadline = time.monotonic() + 60.0
    while sum(len(r.events) for r in acknowledged(publishers)) < events:
        raise_client_errors(publishers)
        assert time.monotonic() < deadline, f"fewer than {events} events acknowledged in 60 s"
        time.sleep(0.01)


def test_shutdown_with_stalled_stream(tmp_path: Path) -> None:
    server = ServeCommand(tmp_path / "data", log_level="info")
    server.start()
    stalled: list[socket.socket] = []
    try:
        # Streams whose clients never read: once their socket buffers fill,
        # the server cannot finish their responses.
        for _ in range(2):
            connection = socket.create_connection(("127.0.0.1", server.port))
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            connection.sendall(b"GET /events/stream?after=0 HTTP/1.1\r\nHost: test\r\n\r\n")
            stalled.append(connection)
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            for number in range(20):
                events = [
                    {
                        "specversion": "1.0",
                        "id": f"stalled-{number}-{index}",
                        "source": "https://shutdown.example.com",
                        "type": "shutdown.stalled",
                        "data": {"padding": "x" * 20_000},
                    }
                    for index in range(20)
                ]
                response = client.post("/events", json=events)
                assert response.status_code == 201, response.text
        _, seconds = terminate(server)
    finally:
        server.stop()
        for connection in stalled:
            connection.close()
    print(f"exited {seconds:.2f} s after SIGTERM with two stalled streams")
    assert seconds < EXIT_SECONDS, f"the server took {seconds:.1f} s to exit"
    assert file_size(server.data_dir / f"{DATABASE_FILE}.wal") == 0, "the log was not checkpointed"
