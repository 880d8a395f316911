"""Schemathesis against the real server: generated requests from /openapi.json, every check.

The run uses the admin token of a server with authentication on, so that the
security checks (requests without a token, with a wrong one) apply too. It
must find no 5xx response and no response that differs from the document:
status codes, content types, headers and bodies. `fuzz_hooks.py` lists the
few schema-valid requests that the server rejects by design.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import Server

HERE = Path(__file__).resolve().parent
# Examples per operation in the fuzzing phase. The coverage and stateful
# phases add their own; the whole run takes about a minute on 2 cores.
MAX_EXAMPLES = 10
RUN_SECONDS = 240
# A stream never ends by itself, so Schemathesis reads one event, or waits
# for one until the timeout of the stream operations, which is short.
CONFIG = """
max-stream-events = 1

[[operations]]
include-path-regex = "/stream$"
request-timeout = 1.0
"""


def test_fuzz_openapi_conformance(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", EVENTLOG_NO_AUTH="0")
    server.start()
    try:
        token = (server.data_dir / "admin.token").read_text().strip()
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG)
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--request-timeout",
            "10",
            "--header",
            f"Authorization: Bearer {token}",
            "--no-color",
        ]
        environment = dict(
            os.environ,
            SCHEMATHESIS_HOOKS="fuzz_hooks",
            PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        )
        run = subprocess.run(
            command,
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
            check=False,
        )
    finally:
        server.stop()
    output = run.stdout + run.stderr
    summary = output[output.rfind("SUMMARY") :]
    print(summary)
    assert run.returncode == 0, output[-20_000:]
    assert "Internal Server Error" not in server.log()
