"""The live dashboard at `/`, driven in headless Chromium with Playwright."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import REPOSITORY, Server
from playwright.sync_api import Browser, Page, expect, sync_playwright

# Debian's browser: Playwright's own download (`playwright install`) does not
# work on these machines.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
BATCH = "application/cloudevents-batch+json"
ROWS = "#events tbody tr"

expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"The dashboard tests need Chromium at {CHROMIUM}; install it with "
            "'apt-get update && apt-get install -y chromium'."
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(f"{server.url}/")
    expect(opened.locator("#state")).to_have_text("live")
    yield opened
    context.close()
    assert errors == []


def make_event(
    number: int, type: str = "order.created", subject: str = "/party/1"
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"dashboard-{number}",
        "source": "https://orders.example.com/shop",
        "type": type,
        "subject": subject,
        "data": {"number": number},
    }


def publish(client: httpx.Client, events: list[dict[str, Any]]) -> list[int]:
    response = client.post("/events", content=orjson.dumps(events), headers={"Content-Type": BATCH})
    assert response.status_code == 201, response.text
    sequences: list[int] = response.json()["sequences"]
    return sequences


def shown_sequences(page: Page) -> list[int]:
    return [int(text) for text in page.locator(f"{ROWS} td:nth-child(1)").all_inner_texts()]


def test_dashboard_shows_new_events(page: Page, client: httpx.Client) -> None:
    sequences = publish(client, [make_event(n, subject=f"/party/{n}") for n in range(5)])

    expect(page.locator(ROWS)).to_have_count(5)
    assert shown_sequences(page) == sequences[::-1]
    newest = page.locator(ROWS).first.locator("td").all_inner_texts()
    assert newest[0] == str(sequences[-1])
    assert newest[1].endswith("Z") or "+" in newest[1]
    assert newest[2:] == ["order.created", "https://orders.example.com/shop", "/party/4"]
    expect(page.locator("#head")).to_have_text(str(sequences[-1]))

    page.locator(ROWS).first.click()
    expect(page.locator("#detail")).to_be_visible()
    detail = orjson.loads(page.locator("#detail-json").inner_text())
    assert detail["id"] == "dashboard-4"
    assert detail["sequence"] == str(sequences[-1])


def test_dashboard_filter_narrows(page: Page, client: httpx.Client) -> None:
    publish(client, [make_event(0, type="invoice.sent")])
    expect(page.locator(ROWS)).to_have_count(1)

    page.fill("input[name=type]", "order.*")
    page.press("input[name=type]", "Enter")
    expect(page.locator(ROWS)).to_have_count(0)
    expect(page.locator("#state")).to_have_text("live")
    sequences = publish(
        client,
        [
            make_event(1, type="order.created"),
            make_event(2, type="invoice.sent"),
            make_event(3, type="order.paid"),
        ],
    )

    expect(page.locator(ROWS)).to_have_count(2)
    assert shown_sequences(page) == [sequences[2], sequences[0]]
    types = page.locator(f"{ROWS} td:nth-child(3)").all_inner_texts()
    assert types == ["order.paid", "order.created"]


def test_dashboard_pause_and_resume(page: Page, client: httpx.Client) -> None:
    first = publish(client, [make_event(0)])
    expect(page.locator(ROWS)).to_have_count(1)

    page.click("#pause")
    later = publish(client, [make_event(n) for n in range(1, 4)])
    expect(page.locator("#paused-note")).to_have_text("(paused, 3 new)")
    assert shown_sequences(page) == first
    page.click("#pause")

    expect(page.locator(ROWS)).to_have_count(4)
    assert shown_sequences(page) == (first + later)[::-1]


def test_dashboard_resumes_after_restart(page: Page, server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        publish(client, [make_event(n) for n in range(3)])
    expect(page.locator(ROWS)).to_have_count(3)

    server.kill()
    expect(page.locator("#state")).not_to_have_text("live")
    server.start()
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        publish(client, [make_event(n) for n in range(3, 6)])

    expect(page.locator("#state")).to_have_text("live")
    expect(page.locator(ROWS)).to_have_count(6)
    assert shown_sequences(page) == [6, 5, 4, 3, 2, 1]


def test_dashboard_keeps_up_with_bursts(page: Page, client: httpx.Client) -> None:
    last = 0
    for burst in range(5):
        sequences = publish(client, [make_event(burst * 1000 + n) for n in range(1000)])
        last = sequences[-1]

    expect(page.locator(f"{ROWS} >> nth=0 >> td >> nth=0")).to_have_text(str(last))
    sequences_shown = shown_sequences(page)
    assert len(sequences_shown) == 500
    assert sequences_shown == list(range(last, last - 500, -1))


def test_dashboard_screenshot(page: Page, client: httpx.Client, tmp_path: Path) -> None:
    kinds = [
        ("order.created", "/party/50019855"),
        ("order.paid", "/party/50019855"),
        ("invoice.sent", "/party/50012345"),
        ("shipment.dispatched", "/party/50067890"),
    ]
    number = 0
    # Publish across several seconds, so that the chart shows more than one bar.
    for second in range(6):
        started = int(time.time())
        batch = []
        for _ in range(10 + 15 * (second % 3)):
            type, subject = kinds[number % len(kinds)]
            batch.append(make_event(number, type=type, subject=subject))
            number += 1
        publish(client, batch)
        expect(page.locator("#head")).to_have_text(str(number))
        while int(time.time()) == started:
            time.sleep(0.05)

    # Bars are blue (#1f6feb); the labels are grey, so only bars count here.
    bar_pixels = page.evaluate(
        """() => {
            const canvas = document.getElementById("chart");
            const context = canvas.getContext("2d");
            const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let count = 0;
            for (let i = 0; i < pixels.length; i += 4) {
                if (pixels[i + 3] > 0 && pixels[i + 2] > 200 && pixels[i] < 100) count += 1;
            }
            return count;
        }"""
    )
    assert bar_pixels > 20
    expect(page.locator(ROWS)).to_have_count(number)

    page.screenshot(path=str(tmp_path / "dashboard.png"))
    # The committed screenshot under docs/ is refreshed only on request, so a
    # test run leaves the work tree clean.
    if os.environ.get("EVENTLOG_UPDATE_SCREENSHOT") == "1":
        page.screenshot(path=str(REPOSITORY / "docs" / "dashboard.png"))
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
