"""The `eventlog` command line, run as real processes against `eventlog serve`.

One server, started with `eventlog serve` on a free loopback port, serves
the whole module. Each test publishes with its own event source, so tests
do not see each other's events. Client commands find the server through
`EVENTLOG_URL` and its admin token through `EVENTLOG_DATA_DIR`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import httpx
import pytest
from click.testing import CliRunner

from feeds import cli
from feeds.cli_client import Server, server_options
from feeds.settings import default_data_dir

STARTUP_TRIES = 300
STARTUP_TRY_SECONDS = 0.1
LINE_WAIT_SECONDS = 30.0
COMMAND_TIMEOUT_SECONDS = 60.0

# Runs the command line with Python's own SIGINT handler, as a foreground
# process at a terminal has it. A test runner started as a background job
# has SIGINT ignored, and its children would inherit that.
INTERRUPTIBLE_CLI = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from feeds.cli import main; main()"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServeProcess:
    """`eventlog serve` in a subprocess on a data folder and a loopback port."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = data_dir.parent / f"{data_dir.name}-serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "feeds.cli",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, env=_clean_environment()
            )
        for _ in range(STARTUP_TRIES):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"eventlog serve exited with {self.process.returncode}: {self.log()}"
                )
            if self._healthy():
                return
            time.sleep(STARTUP_TRY_SECONDS)
        self.stop()
        raise RuntimeError(f"eventlog serve did not answer /health: {self.log()}")

    def stop(self) -> None:
        """Send SIGTERM and wait for the process to exit."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)
        self.process = None

    def environment(self, **extra: str) -> dict[str, str]:
        """Return the environment for client commands that talk to this server."""
        settings = {
            "EVENTLOG_URL": self.url,
            "EVENTLOG_DATA_DIR": str(self.data_dir),
            "COLUMNS": "250",
        }
        return _clean_environment(**{**settings, **extra})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False


def _clean_environment(**extra: str) -> dict[str, str]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("EVENTLOG_")
    }
    environment.update(extra)
    return environment


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path_factory.mktemp("cli") / "data", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def source() -> str:
    """A source URI that only the current test publishes to."""
    return f"https://test.example.com/{uuid.uuid4().hex}"


def event(source: str, id: str, type: str = "order.created", **attributes: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": id, "source": source, "type": type, **attributes}


def run_cli(
    environment: dict[str, str], *arguments: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feeds.cli", *arguments],
        input=input,
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )


def publish_json(
    environment: dict[str, str], *arguments: str, input: str | None = None
) -> dict[str, Any]:
    """Run `eventlog publish --json`, check that it succeeded, and return its summary."""
    result = run_cli(environment, "publish", "--json", *arguments, input=input)
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def tail_json(environment: dict[str, str], *arguments: str) -> list[dict[str, Any]]:
    """Run `eventlog tail --json`, check that it succeeded, and return the events."""
    result = run_cli(environment, "tail", "--json", *arguments)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def write_json_lines(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def assert_clean_failure(result: subprocess.CompletedProcess[str], exit_code: int) -> None:
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(("Error:", "Usage:")), result.stderr


class LineReader:
    """Reads a process's output in a thread, so a test can wait for a line with a bound."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def next_line(self, timeout: float = LINE_WAIT_SECONDS) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"No line of output within {timeout} s") from None
        assert line is not None, "The output ended before the expected line"
        return line

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)


def start_follow(
    environment: dict[str, str], *arguments: str, interruptible: bool = False
) -> subprocess.Popen[str]:
    prefix = ["-c", INTERRUPTIBLE_CLI] if interruptible else ["-m", "feeds.cli"]
    return subprocess.Popen(
        [sys.executable, *prefix, "tail", "--follow", "--json", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def stop_process(process: subprocess.Popen[str]) -> str:
    """Terminate a process by its pid if it still runs, and return its standard error."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    _, errors = process.communicate(timeout=COMMAND_TIMEOUT_SECONDS)
    return errors


# Publish


def test_publish_json_array_file(cli_server: ServeProcess, source: str, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps([event(source, str(i)) for i in range(3)], indent=2))

    summary = publish_json(cli_server.environment(), str(path))

    assert summary["events"] == 3
    assert summary["published"] == 3
    assert summary["duplicates"] == 0
    assert summary["last_sequence"] - summary["first_sequence"] == 2
    published = tail_json(cli_server.environment(), "--source", source)
    assert [e["id"] for e in published] == ["0", "1", "2"]
    assert published[0]["sequence"] == str(summary["first_sequence"])


def test_publish_single_json_object(cli_server: ServeProcess, source: str, tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event(source, "only")))

    summary = publish_json(cli_server.environment(), str(path))

    assert summary["published"] == 1
    assert summary["first_sequence"] == summary["last_sequence"]


def test_publish_json_lines_file(cli_server: ServeProcess, source: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(event(source, "a")) + "\n\n" + json.dumps(event(source, "b")) + "\n")

    summary = publish_json(cli_server.environment(), str(path))

    assert summary["published"] == 2
    assert [e["id"] for e in tail_json(cli_server.environment(), "--source", source)] == ["a", "b"]


def test_publish_stdin_json_lines(cli_server: ServeProcess, source: str) -> None:
    lines = "".join(json.dumps(event(source, str(i))) + "\n" for i in range(4))

    summary = publish_json(cli_server.environment(), input=lines)

    assert summary["published"] == 4
    assert len(tail_json(cli_server.environment(), "--source", source)) == 4


def test_publish_stdin_json_array(cli_server: ServeProcess, source: str) -> None:
    document = json.dumps([event(source, "x"), event(source, "y")], indent=2)

    summary = publish_json(cli_server.environment(), "-", input=document)

    assert summary["published"] == 2


def test_publish_again_counts_duplicates(
    cli_server: ServeProcess, source: str, tmp_path: Path
) -> None:
    path = write_json_lines(tmp_path / "events.jsonl", [event(source, str(i)) for i in range(3)])
    first = publish_json(cli_server.environment(), str(path))

    again = publish_json(cli_server.environment(), str(path))

    assert again["events"] == 3
    assert again["published"] == 0
    assert again["duplicates"] == 3
    assert again["first_sequence"] == first["first_sequence"]
    assert again["last_sequence"] == first["last_sequence"]
    assert len(tail_json(cli_server.environment(), "--source", source)) == 3


def test_publish_summary_table(cli_server: ServeProcess, source: str, tmp_path: Path) -> None:
    path = write_json_lines(tmp_path / "events.jsonl", [event(source, "1"), event(source, "2")])

    result = run_cli(cli_server.environment(), "publish", str(path))

    assert result.returncode == 0, result.stderr
    rows = {" ".join(line.split()[:-1]): line.split()[-1] for line in result.stdout.splitlines()}
    assert rows["Events published"] == "2"
    assert rows["Duplicates"] == "0"
    assert int(rows["Last sequence"]) - int(rows["First sequence"]) == 1


def test_publish_large_input_in_batches(
    cli_server: ServeProcess, source: str, tmp_path: Path
) -> None:
    path = write_json_lines(tmp_path / "big.jsonl", [event(source, str(i)) for i in range(1200)])

    result = run_cli(cli_server.environment(), "publish", "--json", "--progress", str(path))

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["published"] == 1200
    assert summary["last_sequence"] - summary["first_sequence"] == 1199
    assert "1200/1200" in result.stderr
    published = tail_json(cli_server.environment(), "--source", source, "--limit", "1000")
    assert [e["id"] for e in published] == [str(i) for i in range(1200)]


def test_publish_bad_json_line_sends_nothing(
    cli_server: ServeProcess, source: str, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        json.dumps(event(source, "1")) + "\n" + json.dumps(event(source, "2")) + "\n{not json\n"
    )

    result = run_cli(cli_server.environment(), "publish", str(path))

    assert_clean_failure(result, 2)
    assert "line 3" in result.stderr
    assert str(path) in result.stderr
    assert tail_json(cli_server.environment(), "--source", source) == []


def test_publish_bad_json_document(cli_server: ServeProcess, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text('[{"id": "1"},\n {"id": }]')

    result = run_cli(cli_server.environment(), "publish", str(path))

    assert_clean_failure(result, 2)
    assert "line 2" in result.stderr


def test_publish_validation_error_names_line(
    cli_server: ServeProcess, source: str, tmp_path: Path
) -> None:
    events = [event(source, "1"), event(source, "2", time="yesterday"), event(source, "3")]
    path = write_json_lines(tmp_path / "events.jsonl", events)

    result = run_cli(cli_server.environment(), "publish", str(path))

    assert_clean_failure(result, 1)
    assert "line 2" in result.stderr
    assert "'time'" in result.stderr
    assert "400" in result.stderr
    assert tail_json(cli_server.environment(), "--source", source) == []


def test_publish_validation_error_names_array_index(
    cli_server: ServeProcess, source: str, tmp_path: Path
) -> None:
    path = tmp_path / "events.json"
    path.write_text(
        json.dumps([event(source, "1"), {"specversion": "1.0", "id": "2", "source": source}])
    )

    result = run_cli(cli_server.environment(), "publish", str(path))

    assert_clean_failure(result, 1)
    assert "index 1" in result.stderr
    assert "'type'" in result.stderr


def test_publish_error_in_later_batch_maps_line(
    cli_server: ServeProcess, source: str, tmp_path: Path
) -> None:
    events = [event(source, str(i)) for i in range(1200)]
    events[1099]["time"] = "not a time"
    path = write_json_lines(tmp_path / "big.jsonl", events)

    result = run_cli(cli_server.environment(), "publish", str(path))

    assert_clean_failure(result, 1)
    assert "line 1100" in result.stderr
    published = tail_json(cli_server.environment(), "--source", source, "--limit", "1000")
    # The batches before the bad one stay published, and the message states how many.
    assert f"The {len(published)} events before this batch were published" in result.stderr
    assert 0 < len(published) < 1099


def test_publish_missing_file(cli_server: ServeProcess, tmp_path: Path) -> None:
    result = run_cli(cli_server.environment(), "publish", str(tmp_path / "absent.json"))

    assert_clean_failure(result, 2)
    assert "absent.json" in result.stderr


def test_publish_empty_input(cli_server: ServeProcess) -> None:
    result = run_cli(cli_server.environment(), "publish", input="")

    assert_clean_failure(result, 2)
    assert "standard input is empty" in result.stderr


# Tail


def test_tail_table(cli_server: ServeProcess, source: str) -> None:
    lines = "".join(
        json.dumps(event(source, str(i), type=f"order.{kind}", subject=f"/party/{i}")) + "\n"
        for i, kind in enumerate(["created", "paid"])
    )
    summary = publish_json(cli_server.environment(), input=lines)

    result = run_cli(cli_server.environment(), "tail", "--source", source)

    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if source in line]
    assert rows[0][0] == str(summary["first_sequence"])
    assert rows[0][2:] == ["order.created", source, "/party/0"]
    assert rows[1][2:] == ["order.paid", source, "/party/1"]
    assert result.stdout.split()[:5] == ["sequence", "recordedtime", "type", "source", "subject"]


def test_tail_table_shows_brackets_verbatim(cli_server: ServeProcess, source: str) -> None:
    publish_json(cli_server.environment(), input=json.dumps(event(source, "1", type="[bold]x[/]")))

    result = run_cli(cli_server.environment(), "tail", "--source", source)

    assert result.returncode == 0, result.stderr
    assert "[bold]x[/]" in result.stdout


def test_tail_json_with_filters(cli_server: ServeProcess, source: str) -> None:
    events = [
        event(source, "1", type="order.created", resource="urn:altinn:resource:app_a"),
        event(source, "2", type="invoice.sent", resource="urn:altinn:resource:app_a"),
        event(source, "3", type="order.paid", resource="urn:altinn:resource:app_b"),
        event(source, "4", type="order.paid", resource="urn:altinn:resource:app_a"),
    ]
    publish_json(cli_server.environment(), input=json.dumps(events))
    environment = cli_server.environment()

    by_prefix = tail_json(environment, "--source", source, "--type", "order.*")
    by_two_options = tail_json(
        environment,
        "--source",
        source,
        "--type",
        "order.*",
        "--filter",
        "resource=urn:altinn:resource:app_a",
    )
    by_values = tail_json(
        environment, "--source", source, "--type", "invoice.sent", "--type", "order.created"
    )

    assert [e["id"] for e in by_prefix] == ["1", "3", "4"]
    assert [e["id"] for e in by_two_options] == ["1", "4"]
    assert [e["id"] for e in by_values] == ["1", "2"]
    assert by_prefix[0]["resource"] == "urn:altinn:resource:app_a"
    assert "recordedtime" in by_prefix[0]


def test_tail_pages_and_max_events(cli_server: ServeProcess, source: str) -> None:
    lines = "".join(json.dumps(event(source, str(i))) + "\n" for i in range(7))
    summary = publish_json(cli_server.environment(), input=lines)
    environment = cli_server.environment()

    every_page = tail_json(environment, "--source", source, "--limit", "2")
    first_three = tail_json(environment, "--source", source, "--limit", "2", "--max-events", "3")
    after = tail_json(
        environment, "--source", source, "--after", str(summary["first_sequence"] + 4)
    )

    assert [e["id"] for e in every_page] == [str(i) for i in range(7)]
    assert [e["id"] for e in first_three] == ["0", "1", "2"]
    assert [e["id"] for e in after] == ["5", "6"]


def test_tail_since_time(cli_server: ServeProcess, source: str) -> None:
    publish_json(cli_server.environment(), input=json.dumps(event(source, "old")))
    [old] = tail_json(cli_server.environment(), "--source", source)

    later = tail_json(
        cli_server.environment(), "--source", source, "--since", "2999-01-01T00:00:00Z"
    )
    earlier = tail_json(
        cli_server.environment(), "--source", source, "--since", old["recordedtime"]
    )

    assert later == []
    assert [e["id"] for e in earlier] == ["old"]


def test_tail_follow_receives_new_event(cli_server: ServeProcess, source: str) -> None:
    environment = cli_server.environment()
    publish_json(environment, input=json.dumps(event(source, "before")))

    with start_follow(environment, "--source", source) as follower:
        assert follower.stdout is not None
        lines = LineReader(follower.stdout)
        assert json.loads(lines.next_line())["id"] == "before"

        publish_json(environment, input=json.dumps(event(source, "after")))

        assert json.loads(lines.next_line())["id"] == "after"
        stop_process(follower)


def test_tail_follow_ctrl_c_exits_zero(cli_server: ServeProcess, source: str) -> None:
    environment = cli_server.environment()
    publish_json(environment, input=json.dumps(event(source, "1")))

    with start_follow(environment, "--source", source, interruptible=True) as follower:
        assert follower.stdout is not None
        lines = LineReader(follower.stdout)
        assert json.loads(lines.next_line())["id"] == "1"

        os.kill(follower.pid, signal.SIGINT)
        _, errors = follower.communicate(timeout=COMMAND_TIMEOUT_SECONDS)

        assert follower.returncode == 0, errors
        assert "Traceback" not in errors
        assert "Aborted" not in errors


def test_tail_follow_stops_at_max_events(cli_server: ServeProcess, source: str) -> None:
    environment = cli_server.environment()
    publish_json(environment, input=json.dumps([event(source, "1"), event(source, "2")]))

    result = run_cli(
        environment, "tail", "--follow", "--json", "--source", source, "--max-events", "2"
    )

    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["1", "2"]


def test_tail_follow_resumes_after_restart(tmp_path: Path, source: str) -> None:
    server = ServeProcess(tmp_path / "data", free_port())
    server.start()
    try:
        environment = server.environment()
        publish_json(environment, input=json.dumps(event(source, "1")))

        with start_follow(environment, "--source", source) as follower:
            assert follower.stdout is not None
            lines = LineReader(follower.stdout)
            assert json.loads(lines.next_line())["id"] == "1"

            server.stop()
            server.start()
            publish_json(environment, input=json.dumps(event(source, "2")))

            assert json.loads(lines.next_line())["id"] == "2"
            errors = stop_process(follower)
            assert "Reconnecting" in errors
            assert "Reconnected" in errors
            assert "Traceback" not in errors
    finally:
        server.stop()


# Errors and help


@pytest.mark.parametrize("command", [["publish", "-"], ["tail"], ["tail", "--follow"]])
def test_connection_refused_message(tmp_path: Path, command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    environment = _clean_environment(EVENTLOG_URL=url, EVENTLOG_DATA_DIR=str(tmp_path))

    result = run_cli(environment, *command, input=json.dumps(event("https://x.example.com", "1")))

    assert_clean_failure(result, 1)
    assert url in result.stderr
    assert "eventlog serve" in result.stderr


def test_unknown_token_is_rejected_unprinted(cli_server: ServeProcess) -> None:
    token = "elt_" + uuid.uuid4().hex
    environment = cli_server.environment(EVENTLOG_TOKEN=token)

    result = run_cli(environment, "tail")

    assert_clean_failure(result, 1)
    assert "401" in result.stderr
    assert token not in result.stderr + result.stdout


def test_explicit_token_is_sent(cli_server: ServeProcess, source: str, tmp_path: Path) -> None:
    token = (cli_server.data_dir / "admin.token").read_text().strip()
    # A data folder without admin.token, so only --token can authenticate.
    environment = cli_server.environment(EVENTLOG_DATA_DIR=str(tmp_path))

    without = run_cli(environment, "tail", "--source", source)
    with_token = run_cli(environment, "tail", "--json", "--source", source, "--token", token)

    assert_clean_failure(without, 1)
    assert "401" in without.stderr
    assert with_token.returncode == 0, with_token.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["tail", "--after", "1", "--since", "2024-05-01T00:00:00Z"], "not both"),
        (["tail", "--since", "yesterday"], "RFC 3339"),
        (["tail", "--filter", "resource"], "NAME=VALUE"),
        (["tail", "--filter", "Resource=x"], "attribute name"),
        (["tail", "--filter", "limit=5"], "--limit"),
        (["tail", "--type", ""], "empty value"),
        (["tail", "--limit", "0"], "--limit"),
        (["tail", "--url", "ftp://example.com"], "http"),
        (["serve", "--no-auth", "--host", "0.0.0.0"], "loopback"),
    ],
)
def test_usage_errors_exit_2(cli_server: ServeProcess, arguments: list[str], message: str) -> None:
    result = run_cli(cli_server.environment(), *arguments)

    assert_clean_failure(result, 2)
    assert message in result.stderr


@pytest.mark.parametrize("command", ["serve", "publish", "tail"])
def test_help_has_example(command: str) -> None:
    result = run_cli(_clean_environment(), command, "--help")

    assert result.returncode == 0, result.stderr
    assert "Example:" in result.stdout
    assert f"eventlog {command} " in result.stdout


def test_serve_defaults_match_log() -> None:
    from eventlog.event import DEFAULT_MAX_EVENT_BYTES
    from eventlog.log import DEFAULT_TAIL_CAPACITY

    assert cli.SERVER_DEFAULT_MAX_EVENT_BYTES == DEFAULT_MAX_EVENT_BYTES
    assert cli.SERVER_DEFAULT_TAIL_CAPACITY == DEFAULT_TAIL_CAPACITY


def test_serve_creates_data_dir_and_admin_token(cli_server: ServeProcess) -> None:
    assert (cli_server.data_dir / "events.duckdb").is_file()
    assert (cli_server.data_dir / "admin.token").is_file()


@pytest.mark.parametrize(
    ("url", "sends_admin_token"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("http://192.0.2.1:8000", False),
        ("https://events.example.com", False),
    ],
)
def test_admin_token_only_for_loopback(tmp_path: Path, url: str, sends_admin_token: bool) -> None:
    (tmp_path / "admin.token").write_text("elt_local\n")
    tokens: list[str | None] = []

    @click.command()
    @server_options
    def show(server: Server) -> None:
        tokens.append(server.token)

    result = CliRunner().invoke(
        show,
        ["--url", url],
        env={"EVENTLOG_DATA_DIR": str(tmp_path), "EVENTLOG_TOKEN": None, "EVENTLOG_URL": None},
    )

    assert result.exit_code == 0, result.output
    assert tokens == ["elt_local" if sends_admin_token else None]


# Settings


def test_default_data_dir_order() -> None:
    home = Path.home()

    assert default_data_dir({"EVENTLOG_DATA_DIR": "/srv/log", "XDG_DATA_HOME": "/x"}) == Path(
        "/srv/log"
    )
    assert default_data_dir({"XDG_DATA_HOME": "/x"}) == Path("/x/eventlog")
    assert default_data_dir({"XDG_DATA_HOME": "relative"}) == home / ".local/share/eventlog"
    assert default_data_dir({"EVENTLOG_DATA_DIR": ""}) == home / ".local/share/eventlog"
    assert default_data_dir({}) == home / ".local/share/eventlog"
