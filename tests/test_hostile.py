"""Hostile input over HTTP and raw sockets: the server answers 4xx or closes, and stays healthy.

Numbers beyond 64 bits, control characters and absurd lengths in request
lines, headers and `Last-Event-ID`, a body far over the request limit sent
in chunks, and a thousand idle connections. Nothing may produce a 5xx, hang,
or stop the server from serving the next normal request.

The request limits of `feeds.server` are checked here too. A head over the
size limit gets 431 or 414 without being buffered. A client that sends
nothing, or sends its head or body too slowly, is closed after the timeout,
while long-polls and streams outlive it.
"""

from __future__ import annotations

import os
import resource
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import ServeCommand, Server
from harness import resident_bytes

from feeds.settings import DEFAULT_MAX_HEADER_BYTES, MAX_HEADER_FIELDS

HUGE = "9" * 5000  # Python's int() rejects more than 4300 digits.
BEYOND_64_BITS = "9" * 25
SOCKET_TIMEOUT_SECONDS = 10.0
MIB = 1024 * 1024
REQUEST_LIMIT = 16 * MIB  # the server's default request body limit
UPLOAD_BYTES = 200 * MIB
IDLE_CONNECTIONS = 1000


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("hostile") / "data")
    server.start()
    yield server
    server.stop()
    log = server.log_path.read_text(errors="replace")
    assert "Unhandled error" not in log, log[-4000:]


def check_healthy(server: Server) -> None:
    """Check that /health returns 200, and that a publish and a read still work."""
    with httpx.Client(base_url=server.url, timeout=SOCKET_TIMEOUT_SECONDS) as client:
        assert client.get("/health").status_code == 200
        event = {
            "specversion": "1.0",
            "id": os.urandom(8).hex(),
            "source": "https://hostile.example.com",
            "type": "hostile.checked",
        }
        published = client.post("/events", json=event)
        assert published.status_code == 201, published.text
        sequence = published.json()["sequence"]
        page = client.get("/events", params={"after": sequence - 1, "limit": 1})
        assert page.status_code == 200
        assert page.json()[0]["id"] == event["id"]


MAX_SEQUENCE = "9223372036854775807"
# (path, query, headers, the name and the maximum that the problem states)
NUMBERS = [
    ("/events", {"after": BEYOND_64_BITS}, {}, "after", MAX_SEQUENCE),
    ("/events", {"after": HUGE}, {}, "after", MAX_SEQUENCE),
    ("/events", {"limit": HUGE}, {}, "limit", "1000"),
    ("/events/stream", {}, {"Last-Event-ID": BEYOND_64_BITS}, "Last-Event-ID", MAX_SEQUENCE),
    ("/events/stream", {}, {"Last-Event-ID": HUGE}, "Last-Event-ID", MAX_SEQUENCE),
    ("/events/stream", {"after": HUGE}, {}, "after", MAX_SEQUENCE),
    ("/audit", {"after": HUGE}, {}, "after", MAX_SEQUENCE),
    ("/audit", {"limit": HUGE}, {}, "limit", "1000"),
    ("/export", {"after": BEYOND_64_BITS}, {}, "after", MAX_SEQUENCE),
    ("/export", {"until_sequence": HUGE}, {}, "until_sequence", MAX_SEQUENCE),
]


@pytest.mark.parametrize(("path", "params", "headers", "name", "maximum"), NUMBERS)
def test_hostile_numbers_rejected(
    hostile_server: Server,
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    name: str,
    maximum: str,
) -> None:
    response = httpx.get(
        f"{hostile_server.url}{path}",
        params=params,
        headers=headers,
        timeout=SOCKET_TIMEOUT_SECONDS,
    )

    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert name in problem["detail"]
    assert maximum in problem["detail"]
    # The value is quoted, but cut short.
    assert len(problem["detail"]) < 1000
    check_healthy(hostile_server)


def request_line(target: bytes, *headers: bytes) -> bytes:
    return (
        b"GET "
        + target
        + b" HTTP/1.1\r\nHost: test\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\n"
    )


RAW_REQUESTS = {
    "NUL in a header": request_line(b"/health", b"X-Test: a\x00b"),
    "CR in a header": request_line(b"/health", b"X-Test: a\rb"),
    "LF in a header": request_line(b"/health", b"X-Test: a\nb"),
    "NUL in Last-Event-ID": request_line(b"/events/stream", b"Last-Event-ID: 1\x002"),
    "CR in Last-Event-ID": request_line(b"/events/stream", b"Last-Event-ID: 1\r2"),
    "letters in Last-Event-ID": request_line(b"/events/stream", b"Last-Event-ID: 12ab"),
    "Last-Event-ID of 100 KiB": request_line(
        b"/events/stream", b"Last-Event-ID: " + b"9" * 102_400
    ),
    "NUL in the query": request_line(b"/events?type=a\x00b"),
    "encoded NUL in a filter": request_line(b"/events?type=a%00b"),
    "encoded CR LF in a filter": request_line(b"/events?type=a%0D%0Ab"),
    "encoded CR LF in a parameter name": request_line(b"/events?a%0D%0Ab=1"),
    "encoded NUL in the path": request_line(b"/events%00"),
    "NUL in Host": b"GET /events HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
    "a query of 1 MiB": request_line(b"/events?type=" + b"a" * MIB),
    "a header of 1 MiB": request_line(b"/health", b"X-Test: " + b"a" * MIB),
    "10,000 headers": request_line(b"/health", *(b"X-%d: a" % i for i in range(10_000))),
    "encoded NUL in a binary-mode attribute": (
        b"POST /events HTTP/1.1\r\nHost: test\r\nce-specversion: 1.0\r\nce-id: a%00b\r\n"
        b"ce-source: /hostile\r\nce-type: t\r\nContent-Length: 0\r\n\r\n"
    ),
    "a bad chunk size": (
        b"POST /events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    ),
    "a Content-Length of 30 digits": (
        b"POST /events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + b"9" * 30 + b"\r\n\r\n{}"
    ),
}


def send_raw(port: int, request: bytes) -> bytes:
    """Send `request` on a new connection; return what arrives until the server closes or stops.

    A response with a body length is read to its end, since the server may
    keep the connection open after it.
    """
    with socket.create_connection(
        ("127.0.0.1", port), timeout=SOCKET_TIMEOUT_SECONDS
    ) as connection:
        try:
            connection.sendall(request)
        except OSError:
            pass  # The server may close the connection before it reads everything.
        received = b""
        while not complete(received):
            try:
                chunk = connection.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


def complete(response: bytes) -> bool:
    head, separator, body = response.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


@pytest.mark.parametrize("name", sorted(RAW_REQUESTS))
def test_hostile_raw_requests(hostile_server: Server, name: str) -> None:
    response = send_raw(hostile_server.port, RAW_REQUESTS[name])

    # A closed connection without a response is acceptable; a 5xx is not.
    if response:
        status = int(response.split(b" ", 2)[1])
        assert status < 500, response[:500]
        print(f"{name}: {status}")
    else:
        print(f"{name}: closed without a response")
    check_healthy(hostile_server)


def test_upload_over_limit_rejected_early(hostile_server: Server) -> None:
    """A chunked body of 200 MiB gets 413 once it passes 16 MiB, and is never held whole."""
    assert hostile_server.process is not None
    pid = hostile_server.process.pid
    # Reset the peak resident set size (VmHWM) to the current one.
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")
    resident_before = resident_bytes(pid)

    sent, response = upload_chunked(hostile_server.port, UPLOAD_BYTES)

    peak_growth = resident_bytes(pid, "VmHWM") - resident_before
    print(
        f"413 after {sent / MIB:.1f} MiB sent of {UPLOAD_BYTES / MIB:.0f} MiB; "
        f"peak RSS grew {peak_growth / MIB:.1f} MiB"
    )
    assert response.startswith(b"HTTP/1.1 413 "), response[:500]
    assert b"urn:eventlog:problem:request-too-large" in response
    # The socket buffers on both ends hold a few MiB beyond what the server read.
    assert sent < REQUEST_LIMIT + 32 * MIB
    # The server keeps at most the limit in memory, with room for copies.
    assert peak_growth < 4 * REQUEST_LIMIT
    check_healthy(hostile_server)


def upload_chunked(port: int, size: int) -> tuple[int, bytes]:
    """Send a chunked batch of `size` bytes until a response arrives; return bytes sent and it."""
    chunk = b" " * 65536
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    with socket.create_connection(
        ("127.0.0.1", port), timeout=SOCKET_TIMEOUT_SECONDS
    ) as connection:
        connection.sendall(
            b"POST /events HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/cloudevents-batch+json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n1\r\n[\r\n"
        )
        sent = 0
        while sent < size:
            readable, writable, _ = select.select(
                [connection], [connection], [], SOCKET_TIMEOUT_SECONDS
            )
            assert readable or writable, f"the server stalled after {sent} bytes"
            if readable:
                break
            try:
                connection.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        return sent, read_head_and_body(connection)


def read_head_and_body(connection: socket.socket) -> bytes:
    received = b""
    while not complete(received):
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received


def test_idle_connections_do_not_block(hostile_server: Server) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = IDLE_CONNECTIONS + 200
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the descriptor limit is {hard}, below the {needed} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    idle: list[socket.socket] = []
    try:
        for number in range(IDLE_CONNECTIONS):
            connection = socket.create_connection(
                ("127.0.0.1", hostile_server.port), timeout=SOCKET_TIMEOUT_SECONDS
            )
            if number % 2:
                # Half of them start a request and never finish it.
                connection.sendall(b"GET /events HTTP/1.1\r\nHost: test\r\nX-Partial: ")
            idle.append(connection)

        started = time.monotonic()
        check_healthy(hostile_server)
        print(
            f"served a publish and a read in {time.monotonic() - started:.3f} s "
            f"beside {IDLE_CONNECTIONS} idle connections"
        )
    finally:
        for connection in idle:
            connection.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/events", "GET, HEAD, POST"),
        ("/tokens", "GET, HEAD, POST"),
        ("/subscriptions/orders", "DELETE, GET, HEAD, PUT"),
    ],
)
def test_unsupported_method_lists_allowed(hostile_server: Server, path: str, allowed: str) -> None:
    response = httpx.request("PATCH", f"{hostile_server.url}{path}", timeout=SOCKET_TIMEOUT_SECONDS)

    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.headers["Content-Type"] == "application/problem+json"
    assert allowed in response.json()["detail"]


# The server closes a connection whose request head is not complete in this
# many seconds, or whose body pauses this long, in the tests below.
SHORT_HEADER_TIMEOUT = 1
SHORT_BODY_TIMEOUT = 2
# A generous bound on how long a test waits for the server to close a connection.
CLOSE_DEADLINE_SECONDS = 30.0
# The slowloris client sends one byte of its head per this many seconds.
SLOWLORIS_PAUSE_SECONDS = 0.2


@pytest.fixture(scope="module")
def impatient_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with short header and body timeouts and a heartbeat every second."""
    server = Server(
        tmp_path_factory.mktemp("impatient") / "data",
        EVENTLOG_HEADER_TIMEOUT_SECONDS=str(SHORT_HEADER_TIMEOUT),
        EVENTLOG_BODY_TIMEOUT_SECONDS=str(SHORT_BODY_TIMEOUT),
        EVENTLOG_HEARTBEAT_SECONDS="1",
    )
    server.start()
    yield server
    server.stop()
    log = server.log_path.read_text(errors="replace")
    assert "Unhandled error" not in log, log[-4000:]


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=CLOSE_DEADLINE_SECONDS)


def read_until_closed(connection: socket.socket) -> tuple[bytes, bool]:
    """Read until the server closes; return what arrived and whether it closed without a reset.

    Fails when the connection is still open after `CLOSE_DEADLINE_SECONDS`.
    """
    deadline = time.monotonic() + CLOSE_DEADLINE_SECONDS
    received = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the server kept the connection open for {CLOSE_DEADLINE_SECONDS} s")
        connection.settimeout(remaining)
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            return received, False
        except TimeoutError:
            continue
        if not chunk:
            return received, True
        received += chunk


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Split one HTTP/1.1 response into its status, headers (lowercase names) and body."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


def padded_head(size: int) -> bytes:
    """Return a GET /health request line plus headers of exactly `size` bytes."""
    start = b"GET /health HTTP/1.1\r\nHost: test\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


def test_header_over_limit_gets_431(hostile_server: Server) -> None:
    with connect(hostile_server) as connection:
        connection.sendall(request_line(b"/health", b"X-Test: " + b"a" * MIB))
        raw, clean = read_until_closed(connection)

    status, headers, body = parse_response(raw)
    assert status == 431, raw[:500]
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    problem = orjson.loads(body)
    assert problem["type"] == "urn:eventlog:problem:header-too-large"
    assert problem["limit"] == DEFAULT_MAX_HEADER_BYTES
    assert str(DEFAULT_MAX_HEADER_BYTES) in problem["detail"]
    assert "--max-header-bytes" in problem["detail"]
    # The server read what the client still sent before it closed, so no reset.
    assert clean
    check_healthy(hostile_server)


def test_url_over_limit_gets_414(hostile_server: Server) -> None:
    with connect(hostile_server) as connection:
        connection.sendall(request_line(b"/events?type=" + b"a" * MIB))
        raw, _ = read_until_closed(connection)

    status, _, body = parse_response(raw)
    assert status == 414, raw[:500]
    problem = orjson.loads(body)
    assert problem["type"] == "urn:eventlog:problem:uri-too-long"
    assert problem["limit"] == DEFAULT_MAX_HEADER_BYTES
    assert "Shorten the URL" in problem["detail"]


@pytest.mark.parametrize("pipelined", [False, True], ids=["alone", "pipelined"])
@pytest.mark.parametrize(
    ("size", "status"), [(DEFAULT_MAX_HEADER_BYTES, 200), (DEFAULT_MAX_HEADER_BYTES + 1, 431)]
)
def test_header_limit_is_exact(
    hostile_server: Server, size: int, status: int, pipelined: bool
) -> None:
    head = padded_head(size)
    assert len(head) == size
    # A second request in the same write makes the server split its read at the limit.
    payload = head + request_line(b"/health") if pipelined else head

    with connect(hostile_server) as connection:
        connection.sendall(payload)
        response = read_head_and_body(connection)

    assert parse_response(response)[0] == status, response[:500]


def many_fields(count: int) -> bytes:
    """Return `count` header fields, Host included."""
    return b"".join([b"Host: test\r\n", *(b"X-F%d: 1\r\n" % n for n in range(count - 1))])


def test_header_fields_at_limit_served(hostile_server: Server) -> None:
    head = b"GET /health HTTP/1.1\r\n" + many_fields(MAX_HEADER_FIELDS) + b"\r\n"

    with connect(hostile_server) as connection:
        connection.sendall(head)
        response = read_head_and_body(connection)

    assert parse_response(response)[0] == 200, response[:500]


def test_header_fields_over_limit_get_431(hostile_server: Server) -> None:
    head = b"GET /health HTTP/1.1\r\n" + many_fields(MAX_HEADER_FIELDS + 1) + b"\r\n"

    with connect(hostile_server) as connection:
        # A second request in the same write must not be served after the rejection.
        connection.sendall(head + request_line(b"/health"))
        raw, clean = read_until_closed(connection)

    status, headers, body = parse_response(raw)
    assert status == 431, raw[:500]
    assert headers["connection"] == "close"
    problem = orjson.loads(body)
    assert problem["type"] == "urn:eventlog:problem:header-too-large"
    assert problem["limit"] == MAX_HEADER_FIELDS
    assert f"more than {MAX_HEADER_FIELDS} header fields" in problem["detail"]
    assert raw.count(b"HTTP/1.1 ") == 1
    assert clean
    check_healthy(hostile_server)


def test_huge_header_not_buffered(hostile_server: Server) -> None:
    """A header of 64 MiB, which uvicorn alone buffers whole, leaves the peak RSS nearly flat."""
    assert hostile_server.process is not None
    pid = hostile_server.process.pid
    # Reset the peak resident set size (VmHWM) to the current one.
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")
    resident_before = resident_bytes(pid)

    with connect(hostile_server) as connection:
        try:
            connection.sendall(request_line(b"/health", b"X-Test: " + b"a" * (64 * MIB)))
        except OSError:
            pass  # The server stops reading 5 s after its response.
        raw, _ = read_until_closed(connection)

    peak_growth = resident_bytes(pid, "VmHWM") - resident_before
    print(f"peak RSS grew {peak_growth / MIB:.1f} MiB for a header of 64 MiB")
    assert raw.startswith(b"HTTP/1.1 431 "), raw[:500]
    assert peak_growth < 8 * MIB
    check_healthy(hostile_server)


def test_silent_connection_closed(impatient_server: Server) -> None:
    with connect(impatient_server) as connection:
        raw, clean = read_until_closed(connection)

    status, _, body = parse_response(raw)
    assert status == 408, raw[:500]
    problem = orjson.loads(body)
    assert problem["type"] == "urn:eventlog:problem:request-timeout"
    assert problem["seconds"] == SHORT_HEADER_TIMEOUT
    assert "--header-timeout" in problem["detail"]
    assert clean


def test_serve_options_set_limits(tmp_path: Path) -> None:
    served = ServeCommand(tmp_path / "data", options=["--header-timeout", str(SHORT_HEADER_TIMEOUT)])
    served.start()
    try:
        with connect(served) as connection:
            silent, _ = read_until_closed(connection)
        with connect(served) as connection:
            connection.sendall(
                b"GET /health HTTP/1.1\r\n" + many_fields(MAX_HEADER_FIELDS + 1) + b"\r\n"
            )
            crowded, _ = read_until_closed(connection)
    finally:
        served.stop()

    silent_problem = orjson.loads(parse_response(silent)[2])
    assert parse_response(silent)[0] == 408, silent[:500]
    assert silent_problem["seconds"] == SHORT_HEADER_TIMEOUT
    assert parse_response(crowded)[0] == 431, crowded[:500]


def test_slowloris_closed(impatient_server: Server) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 10_000
    received = b""
    with connect(impatient_server) as connection:
        for byte in head:
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                break
            readable, _, _ = select.select([connection], [], [], SLOWLORIS_PAUSE_SECONDS)
            if readable:
                break
        else:
            pytest.fail(f"the server read all {len(head)} bytes of a head one at a time")
        received, _ = read_until_closed(connection)

    assert received.startswith(b"HTTP/1.1 408 "), received[:500]


def test_idle_keep_alive_closed_without_response(impatient_server: Server) -> None:
    """After a response, uvicorn's keep-alive timeout closes an idle connection, with no 408."""
    with connect(impatient_server) as connection:
        connection.sendall(request_line(b"/health"))
        first = read_head_and_body(connection)
        rest, clean = read_until_closed(connection)

    assert parse_response(first)[0] == 200, first[:500]
    assert rest == b""
    assert clean


def test_stalled_second_head_gets_408(impatient_server: Server) -> None:
    """The header timeout of a later request on a connection starts at its first byte."""
    with connect(impatient_server) as connection:
        connection.sendall(request_line(b"/health"))
        first = read_head_and_body(connection)
        connection.sendall(b"GET /health HTTP/1.1\r\nHo")
        rest, _ = read_until_closed(connection)

    assert parse_response(first)[0] == 200, first[:500]
    assert rest.startswith(b"HTTP/1.1 408 "), rest[:500]


def publish_request(body_length: int) -> bytes:
    return (
        b"POST /events HTTP/1.1\r\nHost: test\r\nContent-Type: application/cloudevents+json\r\n"
        b"Content-Length: %d\r\n\r\n" % body_length
    )


def test_stalled_body_gets_408(impatient_server: Server) -> None:
    with connect(impatient_server) as connection:
        connection.sendall(publish_request(200) + b'{"specversion": "1.0",')
        raw, clean = read_until_closed(connection)

    status, _, body = parse_response(raw)
    assert status == 408, raw[:500]
    problem = orjson.loads(body)
    assert problem["type"] == "urn:eventlog:problem:request-timeout"
    assert problem["seconds"] == SHORT_BODY_TIMEOUT
    assert "--body-timeout" in problem["detail"]
    assert clean
    check_healthy(impatient_server)


def test_slow_steady_body_accepted(impatient_server: Server) -> None:
    """A body that arrives in small pieces for longer than the body timeout, without long pauses."""
    event = orjson.dumps(
        {
            "specversion": "1.0",
            "id": os.urandom(8).hex(),
            "source": "https://hostile.example.com",
            "type": "hostile.slow-body",
            "data": "x" * 200,
        }
    )
    pieces = [event[start : start + 20] for start in range(0, len(event), 20)]
    # The pieces take longer than the body timeout in all.
    assert len(pieces) * SLOWLORIS_PAUSE_SECONDS > SHORT_BODY_TIMEOUT
    with connect(impatient_server) as connection:
        connection.sendall(publish_request(len(event)))
        for piece in pieces:
            time.sleep(SLOWLORIS_PAUSE_SECONDS)
            connection.sendall(piece)
        response = read_head_and_body(connection)

    assert parse_response(response)[0] == 201, response[:500]


def test_long_poll_outlives_header_timeout(impatient_server: Server) -> None:
    wait = 3 * SHORT_HEADER_TIMEOUT
    response = httpx.get(
        f"{impatient_server.url}/events",
        params={"type": "hostile.never-published", "wait": wait},
        timeout=CLOSE_DEADLINE_SECONDS,
    )

    assert response.status_code == 200, response.text
    assert response.json() == []


def test_stream_outlives_header_timeout(impatient_server: Server) -> None:
    """An SSE stream open for three header timeouts still delivers an event published then."""
    timeout = httpx.Timeout(SOCKET_TIMEOUT_SECONDS, read=CLOSE_DEADLINE_SECONDS)
    with (
        httpx.Client(base_url=impatient_server.url, timeout=timeout) as client,
        client.stream("GET", "/events/stream", params={"type": "hostile.streamed"}) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        # One heartbeat comment arrives every second.
        heartbeats = 0
        while heartbeats < 3 * SHORT_HEADER_TIMEOUT:
            if next(lines).startswith(":"):
                heartbeats += 1
        event = {
            "specversion": "1.0",
            "id": os.urandom(8).hex(),
            "source": "https://hostile.example.com",
            "type": "hostile.streamed",
        }
        assert client.post("/events", json=event).status_code == 201
        data = next(line for line in lines if line.startswith("data:"))

    assert orjson.loads(data.removeprefix("data:"))["id"] == event["id"]
