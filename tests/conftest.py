"""Fixtures that run the real server in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
TESTDATA = REPOSITORY.parent / "shared" / "testdata"
STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """`uvicorn --factory feeds.app:app_from_environment` in a subprocess.

    It runs the HTTP protocol that `eventlog serve` runs, from `feeds.server`,
    with its request limits read from `EVENTLOG_*` environment variables.

    `start` waits until `/health` answers; `kill` sends SIGKILL, `stop` SIGTERM.
    A stopped server can be started again on the same data folder and port.
    """

    def __init__(self, data_dir: Path, log_level: str = "warning", **environment: str) -> None:
        self.data_dir = data_dir
        self.log_level = log_level
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = environment
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    def start(self) -> None:
        # Authentication is off unless a test asks for it with EVENTLOG_NO_AUTH="0";
        # the server listens on loopback only, where that is allowed.
        env = dict(os.environ, EVENTLOG_DATA_DIR=str(self.data_dir), EVENTLOG_NO_AUTH="1")
        env.update(self.environment)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command(), env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"The server exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"The server did not answer /health in {STARTUP_SECONDS} s: {self.log()}")

    def command(self) -> list[str]:
        """Return the command that runs the server; a subclass may run another one."""
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "feeds.app:app_from_environment",
            "--http",
            "feeds.server:EnvironmentProtocol",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            self.log_level,
        ]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, number: int) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(number)
            self.process.wait(timeout=30)
        self.process = None


class ServeCommand(Server):
    """The server as operators run it: `eventlog serve --no-auth`, with `options` added."""

    def __init__(
        self,
        data_dir: Path,
        log_level: str = "warning",
        options: Sequence[str] = (),
        **environment: str,
    ) -> None:
        super().__init__(data_dir, log_level, **environment)
        self.options = list(options)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "feeds.cli",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--no-auth",
            "--log-level",
            self.log_level,
            *self.options,
        ]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server with an empty log, for one test."""
    running = Server(tmp_path / "data")
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a whole test module; tests must not assume an empty log."""
    running = Server(tmp_path_factory.mktemp("shared") / "data")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http
