"""A full disk: publishes get 503 and write nothing, reads go on, and publishing resumes.

The data folder is a small ext4 file system that the test mounts from an
image file (loop device), so DuckDB meets a real ENOSPC with real fsyncs.
A filler file takes part of it, and deleting the filler frees space again.
Mounting needs root and a loop device; without them the test is skipped.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server
from harness import BATCH, PublishRequest, check_log, read_log

IMAGE_MIB = 24
FILLER_MIB = 4
# Events of about 60 KB of incompressible data, 8 to a batch, fill the file
# system in some 40 requests. DuckDB's write-ahead log passes its automatic
# checkpoint threshold (16 MiB) on the way, when the disk no longer has room
# for the checkpoint.
EVENT_DATA_BYTES = 30_000
BATCH_EVENTS = 8
MAX_REQUESTS = 400
# Consecutive 503 responses after which the disk counts as full.
FULL_AFTER = 3
RESUME_SECONDS = 60.0


@contextmanager
def small_filesystem(image: Path, mount: Path, size_mib: int) -> Iterator[Path]:
    """Mount a fresh ext4 file system of `size_mib` MiB at `mount`, and unmount it at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system for the data folder needs root")
    mount.mkdir()
    subprocess.run(["truncate", "-s", f"{size_mib}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    mounted = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mount)],
        check=False,
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount an ext4 image here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def batch(number: int) -> list[dict[str, Any]]:
    return [
        {
            "specversion": "1.0",
            "id": f"full-{number}-{index}",
            "source": "https://disk.example.com",
            "type": "disk.filled",
            "data": {"padding": secrets.token_hex(EVENT_DATA_BYTES)},
        }
        for index in range(BATCH_EVENTS)
    ]


def publish(client: httpx.Client, request: PublishRequest) -> httpx.Response:
    response = client.post(
        "/events", content=json.dumps(request.events), headers={"Content-Type": BATCH}
    )
    if response.status_code in (200, 201):
        request.sequences = response.json()["sequences"]
    return response


def check_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:eventlog:problem:log-unavailable"
    assert problem["status"] == 503
    assert "No space left on device" in problem["detail"]
    assert "Nothing from this request was written" in problem["detail"]


def fill(client: httpx.Client) -> tuple[list[PublishRequest], list[PublishRequest]]:
    """Publish new batches until FULL_AFTER in a row get 503; return the acknowledged and the rejected."""
    acknowledged: list[PublishRequest] = []
    rejected: list[PublishRequest] = []
    rejected_in_a_row = 0
    for number in range(MAX_REQUESTS):
        request = PublishRequest(batch(number), batch=True)
        response = publish(client, request)
        if response.status_code == 201:
            acknowledged.append(request)
            rejected_in_a_row = 0
            continue
        check_unavailable(response)
        rejected.append(request)
        rejected_in_a_row += 1
        if rejected_in_a_row == FULL_AFTER:
            return acknowledged, rejected
    raise AssertionError(f"the disk was not full after {MAX_REQUESTS} requests")


def check_stored(
    url: str, acknowledged: list[PublishRequest], rejected: list[PublishRequest]
) -> None:
    """Every acknowledged event is in the log under its sequence, and no rejected one is."""
    log = read_log(url)
    check_log(log, acknowledged, None)
    ids = {event["id"] for event in log}
    for request in rejected:
        present = [event["id"] for event in request.events if event["id"] in ids]
        assert not present, f"events of a request answered 503 are in the log: {present}"


def test_disk_full_rejects_then_resumes(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk.img", tmp_path / "disk", IMAGE_MIB) as mount:
        filler = mount / "filler"
        filler.write_bytes(os.urandom(FILLER_MIB * 1024 * 1024))
        # A small tail, so that reads of older events go to DuckDB.
        server = Server(mount, log_level="info", EVENTLOG_TAIL_CAPACITY="20")
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=30.0) as client:
                acknowledged, rejected = fill(client)

                health = client.get("/health")
                assert health.status_code == 503, health.text
                assert health.headers["Content-Type"] == "application/problem+json"
                check_stored(server.url, acknowledged, rejected)

            # A crash on the full disk, and a restart on the same folder.
            server.kill()
            server.start()
            check_stored(server.url, acknowledged, rejected)
            # The reads left audit records, so the writer tries a checkpoint
            # once idle. A failed checkpoint must not take the space that
            # the test frees next, or publishing could not resume.
            wait_for_log(server, "Checkpoint failed", 1)

            filler.unlink()
            with httpx.Client(base_url=server.url, timeout=30.0) as client:
                acknowledged.append(resume(client))
                assert client.get("/health").status_code == 200
                # Once idle, the writer tries a checkpoint again, which the
                # freed space cannot hold; publishing must still go on.
                wait_for_log(server, "Checkpoint failed", 2)
                again = PublishRequest(batch(MAX_REQUESTS + 1), batch=True)
                response = publish(client, again)
                assert response.status_code == 201, response.text
                acknowledged.append(again)

            server.stop()
            server.start()
            check_stored(server.url, acknowledged, rejected)
            # DuckDB reported a commit as failed because the checkpoint after it
            # failed on the full disk, although the commit was durable. The
            # writer found the events in the log and acknowledged them.
            assert "reported an error but was committed" in server.log_path.read_text()
            print(
                f"{sum(len(r.events) for r in acknowledged)} events acknowledged, "
                f"{len(rejected)} requests answered 503 while full"
            )
        finally:
            server.stop()


def wait_for_log(server: Server, text: str, count: int) -> None:
    """Wait until the server's log contains `text` `count` times, over all its starts."""
    deadline = time.monotonic() + RESUME_SECONDS
    while server.log_path.read_text(errors="replace").count(text) < count:
        assert time.monotonic() < deadline, f"the server did not log {text!r}: {server.log()}"
        time.sleep(0.1)


def resume(client: httpx.Client) -> PublishRequest:
    """Publish one new batch, retrying after 503 until the log takes it again."""
    request = PublishRequest(batch(MAX_REQUESTS), batch=True)
    deadline = time.monotonic() + RESUME_SECONDS
    while time.monotonic() < deadline:
        response = publish(client, request)
        if response.status_code == 201:
            return request
        assert response.status_code == 503, response.text
        time.sleep(0.1)
    raise AssertionError(f"publishing did not resume within {RESUME_SECONDS} s of freeing space")
