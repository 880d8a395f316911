"""Access control against the real server: tokens, grants, 401 and 403, and the audit trail."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog.filters import Filter
from feeds.grants import Principal
from tests.conftest import Server

SOURCES = ["https://svc.example/a", "https://svc.example/b", "urn:other:c"]
SUBJECTS = ["/party/1", "/party/2", "/party/13", "/person/7"]
TYPES = ["order.created", "order.paid", "case.closed"]


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A tiny tail sends most reads to DuckDB, so grants are checked in SQL too.
    running = Server(
        tmp_path_factory.mktemp("auth") / "data",
        log_level="info",
        EVENTLOG_NO_AUTH="0",
        EVENTLOG_TAIL_CAPACITY="8",
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin_token(auth_server: Server) -> str:
    return (auth_server.data_dir / "admin.token").read_text().strip()


@pytest.fixture(scope="module")
def admin(auth_server: Server, admin_token: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=auth_server.url, headers=headers, timeout=30) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_token(admin: httpx.Client, grants: list[str]) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    response = admin.post("/tokens", json={"name": name, "grants": grants})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == name
    assert body["grants"] == grants
    return str(body["token"])


def event(source: str, subject: str, type: str = "order.created") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": type,
        "subject": subject,
    }


def read_all(
    url: str, token: str, params: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Follow `Link` from after=0 to the end; return the events and the last cursor."""
    events: list[dict[str, Any]] = []
    cursor = 0
    next_url: str | None = url + "/events"
    query: dict[str, Any] | None = dict(params or {}, limit=7)
    with httpx.Client(headers=bearer(token), timeout=30) as http:
        while next_url is not None:
            response = http.get(next_url, params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            link = response.links["next"]["url"]
            after = int(httpx.URL(link).params["after"])
            assert after >= cursor, "the Link cursor went backwards"
            progressed = after > cursor
            cursor = after
            events.extend(page)
            next_url, query = (link, None) if page or progressed else (None, None)
    return events, cursor


def test_admin_token_file_mode(auth_server: Server, admin_token: str) -> None:
    path = auth_server.data_dir / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert admin_token.startswith("elt_")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/events"),
        ("POST", "/events"),
        ("GET", "/events/stream"),
        ("GET", "/tokens"),
        ("POST", "/tokens"),
        ("DELETE", "/tokens/anyone"),
        ("GET", "/audit"),
    ],
)
def test_endpoint_needs_token(auth_server: Server, method: str, path: str) -> None:
    for headers in ({}, bearer("elt_not-a-real-token"), {"Authorization": "Basic abc"}):
        response = httpx.request(method, auth_server.url + path, headers=headers, timeout=30)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "grants"),
    [
        ("GET", "/events", ["publish source=https://svc.example/*"]),
        ("POST", "/events", ["read subject=/party/1"]),
        ("GET", "/events/stream", ["publish source=https://svc.example/*"]),
        ("GET", "/tokens", ["read", "publish"]),
        ("POST", "/tokens", ["read", "publish"]),
        ("DELETE", "/tokens/anyone", ["read", "publish"]),
        ("GET", "/audit", ["read", "publish"]),
    ],
)
def test_endpoint_needs_grant(
    auth_server: Server, admin: httpx.Client, method: str, path: str, grants: list[str]
) -> None:
    token = make_token(admin, grants)
    kwargs: dict[str, Any] = {}
    if method == "POST" and path == "/events":
        kwargs["json"] = event(SOURCES[0], SUBJECTS[0])
    if method == "POST" and path == "/tokens":
        kwargs["json"] = {"name": "x", "grants": ["admin"]}
    response = httpx.request(
        method, auth_server.url + path, headers=bearer(token), timeout=30, **kwargs
    )
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_public_endpoints_need_no_token(auth_server: Server) -> None:
    for path in ("/health", "/metrics", "/openapi.json", "/"):
        response = httpx.get(auth_server.url + path, timeout=30)
        assert response.status_code == 200, path


def test_publish_outside_grant_rejects_batch(auth_server: Server, admin: httpx.Client) -> None:
    token = make_token(admin, ["publish source=https://svc.example/*"])
    head = admin.get("/health").json()["head"]
    batch = [
        event(SOURCES[0], SUBJECTS[0]),
        event("urn:other:c", SUBJECTS[0]),
        event(SOURCES[1], SUBJECTS[1]),
    ]
    response = httpx.post(
        auth_server.url + "/events",
        json=batch,
        headers=bearer(token) | {"Content-Type": "application/cloudevents-batch+json"},
        timeout=30,
    )
    assert response.status_code == 403
    problem = response.json()
    assert [error["index"] for error in problem["errors"]] == [1]
    assert "'urn:other:c'" in problem["errors"][0]["message"]
    assert "'publish source=https://svc.example/*'" in problem["errors"][0]["message"]
    assert admin.get("/health").json()["head"] == head


def test_revocation_takes_effect_next_request(auth_server: Server, admin: httpx.Client) -> None:
    token = make_token(admin, ["read"])
    assert (
        httpx.get(auth_server.url + "/events", headers=bearer(token), timeout=30).status_code == 200
    )
    name = next(t["name"] for t in admin.get("/tokens").json() if t["grants"] == ["read"])
    assert admin.delete(f"/tokens/{name}").status_code == 204
    assert (
        httpx.get(auth_server.url + "/events", headers=bearer(token), timeout=30).status_code == 401
    )
    assert admin.delete(f"/tokens/{name}").status_code == 404


def test_token_create_rejects_bad_input(admin: httpx.Client) -> None:
    cases = [
        {"name": "", "grants": ["read"]},
        {"name": "has space", "grants": ["read"]},
        {"name": "ok-name", "grants": ["fly away"]},
        {"name": "ok-name", "grants": ["read subject="]},
        {"name": "ok-name", "grants": ["admin source=x"]},
        {"name": "ok-name", "grants": "read"},
        {"grants": ["read"]},
    ]
    for body in cases:
        response = admin.post("/tokens", json=body)
        assert response.status_code == 400, body
    name = f"dup-{uuid.uuid4().hex[:8]}"
    assert admin.post("/tokens", json={"name": name, "grants": ["read"]}).status_code == 201
    assert admin.post("/tokens", json={"name": name, "grants": ["read"]}).status_code == 409


def test_tokens_list_hides_secrets(admin: httpx.Client, admin_token: str) -> None:
    token = make_token(admin, ["read"])
    listing = admin.get("/tokens")
    assert listing.status_code == 200
    assert token not in listing.text
    assert admin_token not in listing.text
    assert all(set(entry) == {"name", "grants", "created"} for entry in listing.json())


def test_audit_records_each_kind(auth_server: Server, admin: httpx.Client) -> None:
    # Earlier tests of this module leave many records; look only at this test's.
    started = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    publisher = make_token(admin, ["publish source=https://svc.example/*"])
    reader = make_token(admin, ["read subject=/party/1"])
    batch = [event(SOURCES[0], "/party/1"), event(SOURCES[1], "/party/2")]
    published = httpx.post(
        auth_server.url + "/events", json=batch, headers=bearer(publisher), timeout=30
    )
    assert published.status_code == 201
    sequences = published.json()["sequences"]
    assert (
        httpx.get(
            auth_server.url + "/events",
            params={"type": "order.*"},
            headers=bearer(reader),
            timeout=30,
        ).status_code
        == 200
    )
    assert (
        httpx.get(auth_server.url + "/events", headers=bearer("elt_wrong"), timeout=30).status_code
        == 401
    )
    assert (
        httpx.get(auth_server.url + "/tokens", headers=bearer(reader), timeout=30).status_code
        == 403
    )
    revoked = make_token(admin, ["read"])
    name = next(t["name"] for t in admin.get("/tokens").json() if t["grants"] == ["read"])
    assert admin.delete(f"/tokens/{name}").status_code == 204
    del revoked

    def rows(**params: str) -> list[dict[str, Any]]:
        response = admin.get("/audit", params=dict(params, limit="1000", since=started))
        assert response.status_code == 200, response.text
        return list(response.json())

    # Records of reads and denials reach storage in batches shortly after the
    # request, so wait (bounded) until the last of them is there.
    deadline = time.monotonic() + 30
    while not any(row["status"] == 403 for row in rows(action="token.list")):
        assert time.monotonic() < deadline, "the audit records of reads did not arrive"
        time.sleep(0.05)

    publishes = [row for row in rows(action="publish") if row["first_sequence"] == sequences[0]]
    assert len(publishes) == 1
    assert publishes[0]["count"] == 2
    assert publishes[0]["last_sequence"] == sequences[1]
    assert publishes[0]["detail"]["sources"] == sorted(SOURCES[:2])

    reads = [
        row
        for row in rows(action="read")
        if row["status"] == 200 and row["detail"]["filter"] == {"type": ["order.*"]}
    ]
    assert reads, "no audit row for the feed read"
    assert all(row["principal"] != "-" for row in reads)

    assert any(row["status"] == 401 and row["principal"] == "-" for row in rows(action="read"))
    assert any(row["status"] == 403 for row in rows(action="token.list"))
    revocations = [row for row in rows(action="token.revoke") if row["status"] == 204]
    assert any(row["detail"]["name"] == name for row in revocations)
    assert rows(action="token.create")


def test_audit_rejects_bad_parameters(admin: httpx.Client) -> None:
    for params in ({"limit": "0"}, {"since": "yesterday"}, {"bogus": "1"}, {"after": "-1"}):
        assert admin.get("/audit", params=params).status_code == 400, params


def test_no_token_in_logs_or_audit(
    auth_server: Server, admin: httpx.Client, admin_token: str
) -> None:
    token = make_token(admin, ["read"])
    with httpx.stream(
        "GET",
        auth_server.url + "/events/stream",
        params={"access_token": token, "after": "0"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
    httpx.get(auth_server.url + "/events", params={"access_token": token}, timeout=30)
    httpx.get(auth_server.url + "/events", headers=bearer(token + "x"), timeout=30)

    audit = admin.get("/audit", params={"limit": "1000"}).text
    server_log = auth_server.log()
    assert "GET /events/stream" in server_log, "the access log is not being written"
    for secret in (token, admin_token):
        assert secret not in audit
        assert secret not in server_log
        assert secret[4:] not in server_log


def test_no_auth_refused_off_loopback(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "feeds.cli",
            "serve",
            "--no-auth",
            "--host",
            "0.0.0.0",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr


grant_texts = st.lists(
    st.one_of(
        st.sampled_from([f"read subject={s}" for s in SUBJECTS]),
        st.sampled_from(
            ["read subject=/party/1*", "read type=order.*", "read source=https://svc.example/*"]
        ),
        st.sampled_from([f"read type={t} subject={s}" for t in TYPES for s in SUBJECTS[:2]]),
    ),
    min_size=0,
    max_size=3,
)
filters = st.dictionaries(
    st.sampled_from(["type", "subject", "source"]),
    st.lists(
        st.sampled_from(TYPES + SUBJECTS + SOURCES + ["order.*", "/party/*"]),
        min_size=1,
        max_size=2,
    ),
    max_size=2,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    grants=grant_texts,
    request_filter=filters,
    events=st.lists(
        st.tuples(st.sampled_from(SOURCES), st.sampled_from(SUBJECTS), st.sampled_from(TYPES)),
        min_size=0,
        max_size=15,
    ),
)
def test_reader_sees_only_granted(
    auth_server: Server,
    admin: httpx.Client,
    admin_token: str,
    grants: list[str],
    request_filter: dict[str, list[str]],
    events: list[tuple[str, str, str]],
) -> None:
    if events:
        batch = [event(source, subject, type) for source, subject, type in events]
        assert admin.post("/events", json=batch).status_code == 201

    principal = Principal.with_grants("model", grants)
    selection = principal.selection(Filter.parse(request_filter))
    everything, _ = read_all(auth_server.url, admin_token)
    expected = [
        e["sequence"]
        for e in everything
        if selection.matches({k: str(v) for k, v in e.items() if k != "data"})
    ]

    reader = make_token(admin, grants) if grants else None
    if reader is None:
        response = httpx.get(
            auth_server.url + "/events", headers=bearer(make_token(admin, ["publish"])), timeout=30
        )
        assert response.status_code == 403
        return
    received, cursor = read_all(auth_server.url, reader, request_filter)
    assert [e["sequence"] for e in received] == expected
    head = admin.get("/health").json()["head"]
    assert cursor == head


def run_cli(server: Server, token: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feeds.cli", *arguments, "--url", server.url, "--token", token],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_token_lifecycle(auth_server: Server, admin_token: str) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = run_cli(
        auth_server,
        admin_token,
        "token",
        "create",
        "--name",
        name,
        "--grant",
        "read subject=/party/1",
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("elt_")
    assert (
        httpx.get(auth_server.url + "/events", headers=bearer(secret), timeout=30).status_code
        == 200
    )

    listed = run_cli(auth_server, admin_token, "token", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {"name": name, "grants": ["read subject=/party/1"]}.items() <= next(
        entry for entry in orjson.loads(listed.stdout) if entry["name"] == name
    ).items()
    assert secret not in listed.stdout

    revoked = run_cli(auth_server, admin_token, "token", "revoke", name)
    assert revoked.returncode == 0, revoked.stderr
    assert (
        httpx.get(auth_server.url + "/events", headers=bearer(secret), timeout=30).status_code
        == 401
    )

    again = run_cli(auth_server, admin_token, "token", "revoke", name)
    assert again.returncode == 1
    assert "404" in again.stderr

    audit = run_cli(auth_server, admin_token, "audit", "--action", "token.revoke", "--json")
    assert audit.returncode == 0, audit.stderr
    rows = [orjson.loads(line) for line in audit.stdout.splitlines()]
    assert any(row["status"] == 204 and row["detail"]["name"] == name for row in rows)


def test_cli_admin_needs_admin(auth_server: Server, admin: httpx.Client) -> None:
    reader = make_token(admin, ["read"])
    result = run_cli(auth_server, reader, "token", "list")
    assert result.returncode == 1
    assert "403" in result.stderr
    assert reader not in result.stderr
