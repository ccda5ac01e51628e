"""sd_notify, the watchdog ping and the reload plan, each on its own (the signal tests run the whole daemon)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.fixtures.service import NotifyListener
from whaled.app import Daemon
from whaled.config import Settings
from whaled.service import SystemdNotifier, Watchdog, plan_reload, watchdog_interval_s
from whaled.web.context import WEB_CONTEXT

WALLET_A = "0x" + "a1" * 20
WALLET_B = "0x" + "b2" * 20


def test_notifier_without_socket() -> None:
    notifier = SystemdNotifier.from_environment({})

    assert not notifier.enabled
    assert notifier.ready("running") is False


async def test_notifier_abstract_socket(notify_listener: NotifyListener) -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": notify_listener.address})
    try:
        sent = notifier.ready("running: 4 jobs")
        async with asyncio.timeout(5):
            message = await notify_listener.next_message()
    finally:
        notifier.close()

    assert sent is True
    assert message == {"READY": "1", "STATUS": "running: 4 jobs"}


async def test_notifier_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        receiver.setblocking(False)
        notifier = SystemdNotifier(str(path))
        notifier.reloading()
        notifier.stopping("stopping (SIGTERM)")
        notifier.close()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            reloading = (await loop.sock_recv(receiver, 4096)).decode().splitlines()
            stopping = (await loop.sock_recv(receiver, 4096)).decode().splitlines()

    assert reloading[0] == "RELOADING=1"
    assert reloading[1].startswith("MONOTONIC_USEC=")
    assert stopping == ["STOPPING=1", "STATUS=stopping (SIGTERM)"]


def test_notifier_failure_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier(str(tmp_path / "no-such-socket"))
    with caplog.at_level(logging.WARNING, logger="whaled.app"):
        results = [notifier.watchdog() for _ in range(5)]
    notifier.close()

    assert results == [False] * 5
    assert len(caplog.records) == 1
    assert "sd_notify to" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval_s(environ) == expected


async def test_watchdog_pings(notify_listener: NotifyListener) -> None:
    notifier = SystemdNotifier(notify_listener.address)
    watchdog = Watchdog(notifier, interval_s=0.01)
    watchdog.start()
    try:
        async with asyncio.timeout(5):
            pings = [await notify_listener.wait_for("WATCHDOG") for _ in range(3)]
    finally:
        await watchdog.close()
        notifier.close()
    tasks = {task.get_name() for task in asyncio.all_tasks()}

    assert pings == [{"WATCHDOG": "1"}] * 3
    assert watchdog.pings >= 3
    assert "whaled-watchdog" not in tasks


def settings(**values: Any) -> Settings:
    base: dict[str, Any] = {"wallets": [{"address": WALLET_A}], "store": {"path": "/tmp/a.db"}}
    return Settings(**{**base, **values})


def test_reload_plan_live_keys() -> None:
    old = settings()
    new = settings(
        wallets=[{"address": WALLET_A}, {"address": WALLET_B}],
        whales={"whale_trade_usd": "777"},
        jobs={"sync_markets": {"interval_s": 600, "timeout_s": 300}},
        log={"levels": {"whaled.jobs": "DEBUG"}},
    )

    plan = plan_reload(old, new)

    assert plan.live == (
        "jobs.sync_markets.interval_s",
        "jobs.sync_markets.timeout_s",
        "log.levels",
        "wallets",
        "whales.whale_trade_usd",
    )
    assert plan.restart == ()
    assert plan.effective == new


def test_reload_plan_restart_keys() -> None:
    old = settings()
    new = settings(
        store={"path": "/tmp/b.db"},
        web={"port": 9000},
        opinion={"api_key": "new-secret-key"},
        jobs={"cleanup_old_activity": {"enabled": False}},
        log={"format": "json", "level": "DEBUG"},
    )

    plan = plan_reload(old, new)
    restart = {key: (before, after) for key, before, after in plan.restart}

    assert restart == {
        "jobs.cleanup_old_activity.enabled": ("True", "False"),
        "log.format": ("'text'", "'json'"),
        "opinion.api_key": ("None", "'***'"),
        "store.path": ("PosixPath('/tmp/a.db')", "PosixPath('/tmp/b.db')"),
        "web.port": ("8420", "9000"),
    }
    assert plan.live == ("log.level",)
    assert plan.effective.store == old.store
    assert plan.effective.web == old.web
    assert plan.effective.opinion.api_key is None
    assert plan.effective.jobs.cleanup_old_activity.enabled is True
    assert plan.effective.log.format == "text"
    assert plan.effective.log.level == "DEBUG"
    assert "new-secret-key" not in repr(plan.restart)


def test_reload_plan_sections_with_hooks() -> None:
    old = settings(alerts={"recipients": ["a@example.com"]})
    new = settings(alerts={"recipients": ["b@example.com"], "webhook_secret": "s3cret"})

    without_hook = plan_reload(old, new)
    with_hook = plan_reload(old, new, live_sections=["alerts"])

    assert [key for key, _, _ in without_hook.restart] == ["alerts.recipients", "alerts.webhook_secret"]
    assert without_hook.effective.alerts == old.alerts
    assert with_hook.live == ("alerts.recipients", "alerts.webhook_secret")
    assert with_hook.effective.alerts.webhook_secret == SecretStr("s3cret")


async def test_daemon_reload_applies_live(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(wallets=1, web={"port": 0})
    daemon = Daemon(settings)
    await daemon.start()
    try:
        new = make_settings(wallets=2, web={"port": 0}, jobs={"sync_markets": {"interval_s": 600, "timeout_s": 300}})
        plan = plan_reload(daemon.settings, new, live_sections=daemon.reload_hooks)
        await daemon.reload(plan.effective)
        assert daemon.db is not None and daemon.scheduler is not None
        assert daemon.runner is not None and daemon.web is not None
        trigger = daemon.scheduler._scheduler.get_job("sync-markets").trigger
        runner_settings = daemon.runner.settings
        web_settings = daemon.web.app[WEB_CONTEXT].settings
        tracked = await daemon.db.fetchall("SELECT address FROM wallets WHERE tracked = 1")
    finally:
        await daemon.close()

    assert trigger.interval.total_seconds() == 600
    assert runner_settings is plan.effective
    assert web_settings is plan.effective
    assert len(tracked) == 2
    assert daemon.reloads["applied"] == 1
    assert set(daemon.reload_hooks) >= {"alerts"}
