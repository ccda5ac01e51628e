"""The dashboard in a real headless Chromium: against ``whaled demo``, and against an in-process daemon whose
simulator the test controls, so that a whale trade can be made to arrive at a known moment."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, ViewportSize, WebSocketRoute

from tests.fixtures.browser import PHONE, PageLog, watch_page
from tests.test_demo import free_port
from whaled.app import Daemon
from whaled.config import Settings
from whaled.simulator import RunningSimulator
from whaled.store import Database
from whaled.web.feed import FEED_HUB

JOBS = ["sync-markets", "sync-whale-trades", "compute-whale-stats", "cleanup-old-activity"]
WAIT_MS = 15_000
DESKTOP: ViewportSize = {"width": 1440, "height": 1000}


async def open_dashboard(browser: Browser, url: str, viewport: ViewportSize) -> tuple[Page, PageLog]:
    context = await browser.new_context(viewport=viewport, is_mobile=viewport == PHONE, device_scale_factor=1)
    page = await context.new_page()
    log = watch_page(page)
    await page.goto(url)
    await page.wait_for_selector("body[data-loaded='true'][data-feed='live']", timeout=WAIT_MS)
    return page, log


async def job_rows(page: Page) -> dict[str, dict[str, str]]:
    rows: list[dict[str, str]] = await page.eval_on_selector_all(
        "#jobs-body tr",
        """rows => rows.map(row => ({
            name: row.dataset.job,
            outcome: row.children[1].textContent.trim(),
            lastSuccess: row.querySelector('.last-success').textContent.trim(),
        }))""",
    )
    return {row["name"]: row for row in rows}


def assert_jobs_succeeded(rows: dict[str, dict[str, str]]) -> None:
    assert list(rows) == JOBS
    for name, row in rows.items():
        # A scheduled run may be going on at this moment; the page then shows it as running.
        assert row["outcome"] in ("success", "running"), (name, row)
        assert "never" not in row["lastSuccess"], (name, row)
        assert "stale" not in row["lastSuccess"], (name, row)


# Against the demo.


async def wait_for_demo_jobs(url: str, demo: asyncio.subprocess.Process) -> None:
    """Poll the dashboard's status until every job has succeeded once."""
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(60):
            while True:
                assert demo.returncode is None, "the demo exited early"
                try:
                    async with http.get(f"{url}/api/v1/dashboard/status") as response:
                        body = await response.json()
                except aiohttp.ClientError:
                    body = {"jobs": []}
                jobs = body["jobs"]
                if jobs and all(job["last_success_ms"] for job in jobs):
                    return
                await asyncio.sleep(0.1)


@pytest.fixture
async def demo_url(tmp_path: Path) -> AsyncIterator[str]:
    """A running ``whaled demo`` process; stopped with SIGTERM, which must end it cleanly."""
    port = free_port()
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "whaled", "demo", "--state-dir", str(tmp_path / "demo"), "--port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_for_demo_jobs(url, demo)
        yield url
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            _, stderr = await demo.communicate()
    assert demo.returncode == 0, stderr.decode()[-2000:]


@pytest.mark.timeout(90)
async def test_demo_dashboard_shows_jobs_on_desktop_and_phone(browser: Browser, demo_url: str, artifacts: Path) -> None:
    page, log = await open_dashboard(browser, demo_url, DESKTOP)
    assert_jobs_succeeded(await job_rows(page))
    assert await page.locator("#health").text_content() == "Healthy"
    assert await page.locator("#trades-body tr[data-trade-id]").count() > 0
    assert await page.locator("#leaderboard-body tr").count() > 0
    await page.screenshot(path=artifacts / "dashboard-desktop.png", full_page=True)
    assert log.errors == []

    phone, phone_log = await open_dashboard(browser, demo_url, PHONE)
    assert_jobs_succeeded(await job_rows(phone))
    overflow = await phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a phone screen"
    await phone.screenshot(path=artifacts / "dashboard-phone.png", full_page=True)
    assert phone_log.errors == []


# Against an in-process daemon and a simulator the test controls.


@pytest.fixture
async def daemon(make_settings: Callable[..., Settings]) -> AsyncIterator[Daemon]:
    """A daemon on the simulator with every job run once; its web server listens on a free port."""
    running = Daemon(make_settings(web={"host": "127.0.0.1", "port": 0}), run_jobs_at_startup=True)
    await running.start()
    try:
        assert running.db is not None
        await wait_for_runs(running.db)
        yield running
    finally:
        await running.close()


async def wait_for_runs(db: Database) -> None:
    async with asyncio.timeout(30):
        while True:
            rows = await db.fetchall("SELECT DISTINCT job FROM job_runs WHERE outcome = 'success'")
            if {row["job"] for row in rows} == set(JOBS):
                return
            await asyncio.sleep(0.05)


async def add_whale_trade(daemon: Daemon, simulator: RunningSimulator, amount: str) -> int:
    """Make a tracked whale trade in the simulator, sync it, and return the id of its trade.whale event."""
    assert daemon.runner is not None and daemon.db is not None
    simulator.state.add_trade(simulator.state.whale_wallets[0], amount=amount)
    record = await daemon.runner.run("sync-whale-trades", trigger="manual")
    assert record.outcome == "success"
    row = await daemon.db.fetchone("SELECT max(id) FROM events WHERE type = 'trade.whale'")
    assert row is not None and row[0] is not None
    return int(row[0])


async def test_whale_trade_appears_live_and_after_reconnect(
    browser: Browser, daemon: Daemon, simulator: RunningSimulator, artifacts: Path
) -> None:
    assert daemon.web is not None
    page = await (await browser.new_context(viewport=DESKTOP)).new_page()
    log = watch_page(page)
    # The second connection to /ws waits for the gate, so that a trade can be stored while the page is away.
    gate = asyncio.Event()
    connections: list[WebSocketRoute] = []

    async def hold_reconnect(route: WebSocketRoute) -> None:
        connections.append(route)
        if len(connections) > 1:
            await gate.wait()
        route.connect_to_server()

    await page.route_web_socket("**/ws", hold_reconnect)
    await page.goto(daemon.web.url)
    # The trade list from the JSON API must be in place first, or it could bring the new trade before the feed.
    await page.wait_for_selector("body[data-loaded='true'][data-feed='live'][data-trades='loaded']", timeout=WAIT_MS)
    assert_jobs_succeeded(await job_rows(page))
    await page.evaluate("window.loadedOnce = true")

    # Live: the trade arrives over the open websocket.
    await add_whale_trade(daemon, simulator, "54321")
    await page.locator("#trades-body tr.fresh", has_text="$54,321").wait_for(timeout=WAIT_MS)

    # Resume: the server drops the page, a trade is stored meanwhile, and the page gets it on reconnecting.
    await daemon.web.app[FEED_HUB].close_clients()
    await page.wait_for_selector("body[data-feed='reconnecting']", timeout=WAIT_MS)
    event_id = await add_whale_trade(daemon, simulator, "65432")
    gate.set()
    await page.locator("#trades-body tr", has_text="$65,432").wait_for(timeout=WAIT_MS)
    await page.wait_for_selector("body[data-feed='live']", timeout=WAIT_MS)
    feed = await page.evaluate("({connections: whaledFeed.connections, helloId: whaledFeed.helloId})")
    assert feed["connections"] == 2
    # The new connection started live after the trade's event, so the event came from the resume.
    assert feed["helloId"] >= event_id

    assert await page.evaluate("window.loadedOnce") is True
    await page.screenshot(path=artifacts / "dashboard-live-trade.png")
    assert log.errors == []
