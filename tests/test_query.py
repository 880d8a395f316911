"""SQL over history: POST /query, and the query and export commands, against the real server.

The sandbox tests send SQL that tries to read or write files, attach
databases, load extensions, change settings or run too long, and check
that each is rejected with a problem response and leaves no trace.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pyarrow.parquet as pq
import pytest
from conftest import Server

PARQUET = "application/vnd.apache.parquet"
QUERY_SECONDS = "2"
EVENTS = 60


def make_event(number: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"query-{number}",
        "source": "/query-test",
        "type": "order.paid" if number % 3 else "order.created",
        "subject": f"/orders/{number}",
        "priority": number % 2 == 0,
        "data": {"number": number, "items": ["a", "b"]},
    }


@pytest.fixture(scope="module")
def history_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with 60 events, 20 of them retained, and a 2-second query limit."""
    server = Server(
        tmp_path_factory.mktemp("query") / "data",
        EVENTLOG_QUERY_SECONDS=QUERY_SECONDS,
        EVENTLOG_RETAIN_EVENTS="20",
    )
    server.start()
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        response = client.post("/events", json=[make_event(n) for n in range(EVENTS)])
        assert response.status_code == 201, response.text
        wait_until_trimmed(server.url)
    yield server
    server.stop()


@pytest.fixture
def api(history_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=history_server.url, timeout=30.0) as client:
        yield client


def wait_until_trimmed(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while httpx.get(f"{url}/health").json()["earliest"] == 1:
        assert time.monotonic() < deadline, f"Retention trimmed nothing within {seconds} s."
        time.sleep(0.05)


def query(api: httpx.Client, sql: str, accept: str | None = None) -> httpx.Response:
    headers = {} if accept is None else {"Accept": accept}
    return api.post("/query", json={"sql": sql}, headers=headers)


def test_query_json_result(api: httpx.Client) -> None:
    response = query(
        api,
        "SELECT sequence, type, subject, extensions, data, data_base64, recordedtime "
        "FROM events WHERE sequence <= 2 ORDER BY sequence",
    )

    assert response.status_code == 200, response.text
    assert response.headers["eventlog-truncated"] == "false"
    body = response.json()
    assert body["columns"] == [
        "sequence",
        "type",
        "subject",
        "extensions",
        "data",
        "data_base64",
        "recordedtime",
    ]
    assert body["types"][:2] == ["BIGINT", "VARCHAR"]
    assert body["types"][4] == "JSON"
    assert body["truncated"] is False
    assert body["max_rows"] == 10_000
    first, second = body["rows"]
    assert first[:5] == [
        1,
        "order.created",
        "/orders/0",
        {"priority": "true"},
        {"number": 0, "items": ["a", "b"]},
    ]
    assert first[5] is None
    assert second[0] == 2
    assert first[6].startswith("20")


def test_query_spans_archive_and_live(api: httpx.Client) -> None:
    earliest = api.get("/health").json()["earliest"]

    response = query(api, "SELECT count(*), min(sequence), max(sequence) FROM events")

    assert earliest > 1
    assert response.json()["rows"] == [[EVENTS, 1, EVENTS]]


def test_query_csv_and_parquet(api: httpx.Client) -> None:
    sql = "SELECT sequence, type, extensions FROM events ORDER BY sequence LIMIT 3"

    as_csv = query(api, sql, "text/csv")
    as_parquet = query(api, sql, PARQUET)
    preferred = query(api, sql, f"text/csv;q=0.5, {PARQUET}")

    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == ["sequence", "type", "extensions"]
    assert rows[1] == ["1", "order.created", '{"priority":"true"}']
    assert as_parquet.headers["content-type"] == PARQUET
    table = pq.read_table(io.BytesIO(as_parquet.content))
    assert table.column("sequence").to_pylist() == [1, 2, 3]
    assert preferred.headers["content-type"] == PARQUET


def test_query_not_acceptable(api: httpx.Client) -> None:
    response = query(api, "SELECT 1", "image/png")

    assert response.status_code == 406
    assert response.headers["content-type"] == "application/problem+json"


def test_query_row_cap(api: httpx.Client) -> None:
    response = query(api, "SELECT * FROM range(25000)")

    assert response.status_code == 200
    body = response.json()
    assert len(body["rows"]) == 10_000
    assert body["truncated"] is True
    assert response.headers["eventlog-truncated"] == "true"
    assert response.headers["eventlog-max-rows"] == "10000"


def test_query_audit_view(api: httpx.Client) -> None:
    response = query(api, "SELECT DISTINCT action FROM audit ORDER BY action")

    assert response.status_code == 200, response.text
    assert ["publish"] in response.json()["rows"]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error"),
        ("SELECT * FROM read_text('/etc/hostname')", "Permission Error"),
        ("SELECT * FROM read_parquet('/tmp/anything.parquet')", "Permission Error"),
        ("SELECT * FROM read_parquet('{archive}/*/*.parquet')", "Permission Error"),
        ("SELECT * FROM read_json('{data_dir}/events.duckdb')", "Permission Error"),
        ("SELECT * FROM glob('/etc/*')", "Permission Error"),
        ("SELECT * FROM read_csv('http://127.0.0.1:9/data.csv')", "Permission Error"),
        ("CREATE TABLE stolen AS SELECT * FROM events", "CREATE"),
        ("INSERT INTO events SELECT * FROM events", "INSERT"),
        ("DELETE FROM events", "DELETE"),
        ("UPDATE events SET type = 'x'", "UPDATE"),
        ("COPY (SELECT * FROM events) TO '{out}'", "COPY"),
        ("EXPORT DATABASE '{out}'", "EXPORT"),
        ("ATTACH '{data_dir}/events.duckdb' AS live", "ATTACH"),
        ("ATTACH ':memory:' AS scratch", "ATTACH"),
        ("INSTALL httpfs", "LOAD"),
        ("LOAD httpfs", "LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("SET memory_limit = '100GB'", "SET"),
        ("PRAGMA database_list", "PRAGMA"),
        ("CALL pragma_version()", "CALL"),
        ("CHECKPOINT", "CALL"),
        ("SELECT * FROM query('CREATE TABLE t (a INT)')", "single SELECT"),
        ("SELECT 1; SELECT 2", "exactly one SQL statement"),
        ("SELECT 1; DROP TABLE events", "exactly one SQL statement"),
        ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}'", "EXPLAIN"),
        ("SELEC 1", "Parser Error"),
        ("SELECT * FROM no_such_table", "Catalog Error"),
        ("SELECT $1", "parameters"),
    ],
)
def test_query_rejected(
    history_server: Server, api: httpx.Client, tmp_path: Path, sql: str, expected: str
) -> None:
    out = tmp_path / "written.csv"
    text = sql.format(
        archive=history_server.data_dir / "archive", data_dir=history_server.data_dir, out=out
    )

    response = query(api, text)

    assert response.status_code == 400, (text, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert expected in problem["detail"], problem
    assert not out.exists()
    assert api.get("/health").status_code == 200


def test_query_rejects_bad_body(api: httpx.Client) -> None:
    for body in ({}, {"sql": 1}, {"sql": "  "}, {"sql": "SELECT 1", "limit": 5}):
        response = api.post("/query", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def test_query_timeout(api: httpx.Client) -> None:
    response = query(api, "SELECT count(*) FROM range(1000000000) a, range(1000000) b")

    assert response.status_code == 408, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["seconds"] == float(QUERY_SECONDS)
    assert query(api, "SELECT 42").json()["rows"] == [[42]]


def test_query_is_audited(api: httpx.Client) -> None:
    accepted = "SELECT 'audited-marker'"
    rejected = "SELECT * FROM read_csv('/audited-marker.csv')"
    query(api, accepted)
    query(api, rejected)

    def statuses() -> dict[str, int]:
        records = api.get("/audit", params={"action": "query", "limit": 1000}).json()
        return {record["detail"]["sql"]: record["status"] for record in records}

    # Audit records are committed shortly after the response, in order.
    deadline = time.monotonic() + 30
    while rejected not in statuses():
        assert time.monotonic() < deadline, "The queries were not audited within 30 s."
        time.sleep(0.05)
    recorded = statuses()
    assert recorded[accepted] == 200
    assert recorded[rejected] == 400


def test_query_needs_admin(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", EVENTLOG_NO_AUTH="0")
    server.start()
    try:
        admin_token = (server.data_dir / "admin.token").read_text().strip()
        admin = {"Authorization": f"Bearer {admin_token}"}
        created = httpx.post(
            f"{server.url}/tokens", headers=admin, json={"name": "reader", "grants": ["read"]}
        )
        reader = {"Authorization": f"Bearer {created.json()['token']}"}
        body = {"sql": "SELECT 1"}
        anonymous = httpx.post(f"{server.url}/query", json=body)
        as_reader = httpx.post(f"{server.url}/query", json=body, headers=reader)
        export = httpx.get(f"{server.url}/export", headers=reader)
        as_admin = httpx.post(f"{server.url}/query", json=body, headers=admin)
    finally:
        server.stop()

    assert anonymous.status_code == 401
    assert as_reader.status_code == 403
    assert export.status_code == 403
    assert as_admin.status_code == 200


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feeds.cli", *arguments],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_query_and_export(tmp_path: Path) -> None:
    # Enough events that an export spans many chunks of the HTTP response.
    total = 2_000
    server = Server(tmp_path / "data", EVENTLOG_NO_AUTH="0", EVENTLOG_RETAIN_EVENTS="200")
    server.start()
    location = ["--url", server.url, "--data-dir", str(server.data_dir)]
    try:
        token = (server.data_dir / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        for first in range(0, total, 500):
            events = [make_event(n) for n in range(first, first + 500)]
            httpx.post(f"{server.url}/events", json=events, headers=headers, timeout=30.0)
        wait_until_trimmed(server.url)
        served_table = run_cli(
            "query", *location, "SELECT type, count(*) AS n FROM events GROUP BY type ORDER BY type"
        )
        served_json = run_cli("query", "--json", *location, "SELECT count(*) AS n FROM events")
        served_csv = run_cli("query", "--csv", *location, "SELECT sequence FROM events LIMIT 2")
        rejected = run_cli("query", *location, "DROP TABLE events")
        exported = {
            file_format: run_cli(
                "export",
                "--format",
                file_format,
                "--output",
                str(tmp_path / f"served.{file_format}"),
                "--after",
                "10",
                "--until-sequence",
                "1510",
                *location,
            )
            for file_format in ("parquet", "jsonl", "csv")
        }
    finally:
        server.stop()
    direct_json = run_cli("query", "--json", *location, "SELECT count(*) AS n FROM events")
    direct_export = run_cli(
        "export", "--format", "parquet", "--output", str(tmp_path / "direct.parquet"), *location
    )
    timed = run_cli(
        "export",
        "--format",
        "jsonl",
        "--output",
        str(tmp_path / "timed.jsonl"),
        "--since",
        "2000-01-01T00:00:00Z",
        "--until",
        "2999-01-01T00:00:00Z",
        *location,
    )

    assert served_table.returncode == 0, served_table.stderr
    assert "order.created" in served_table.stdout
    assert "│ 1333" in served_table.stdout
    assert orjson.loads(served_json.stdout)["rows"] == [[total]]
    assert served_csv.stdout.splitlines() == ["sequence", "1", "2"]
    assert rejected.returncode == 1
    assert "DROP" in rejected.stderr
    assert "Traceback" not in rejected.stderr
    for file_format, result in exported.items():
        assert result.returncode == 0, (file_format, result.stderr)
        assert "Exported 1500 events" in result.stderr
    assert direct_json.returncode == 0, direct_json.stderr
    assert "directly" in direct_json.stderr
    assert orjson.loads(direct_json.stdout)["rows"] == [[total]]
    assert direct_export.returncode == 0, direct_export.stderr
    assert timed.returncode == 0, timed.stderr

    served = duckdb.sql(
        "SELECT min(sequence), max(sequence), count(*), "
        "sum((data->>'number')::INT), any_value(extensions['priority']) "
        f"FROM read_parquet('{tmp_path / 'served.parquet'}')"
    ).fetchall()[0]
    assert served is not None
    assert served[:4] == (11, 1510, 1500, sum(range(10, 1510)))
    assert served[4] in ("true", "false")
    lines = duckdb.sql(
        f"SELECT count(*), min(sequence::INT), max(sequence::INT) "
        f"FROM read_json('{tmp_path / 'served.jsonl'}')"
    ).fetchall()[0]
    assert lines == (1500, 11, 1510)
    table = duckdb.sql(
        f"SELECT count(*), min(sequence), max(sequence), any_value(extensions) "
        f"FROM read_csv('{tmp_path / 'served.csv'}')"
    ).fetchall()[0]
    assert table is not None
    assert table[:3] == (1500, 11, 1510)
    assert orjson.loads(table[3]).keys() == {"priority"}
    direct = duckdb.sql(
        f"SELECT count(*), count(DISTINCT sequence), min(sequence), max(sequence) "
        f"FROM read_parquet('{tmp_path / 'direct.parquet'}')"
    ).fetchall()[0]
    assert direct == (total, total, 1, total)
    first_line = (tmp_path / "timed.jsonl").read_text().splitlines()[0]
    assert orjson.loads(first_line)["id"] == "query-0"
    assert len((tmp_path / "timed.jsonl").read_text().splitlines()) == total
