"""The instance lock: one whaled per database, with the holder's PID in the refusal."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.service import WAIT_S, NotifyListener, StartDaemon, daemon_config
from whaled.app import Daemon
from whaled.config import Settings
from whaled.lock import InstanceLock, InstanceLockedError, lock_holder, lock_path
from whaled.simulator import RunningSimulator


def test_lock_writes_pid(tmp_path: Path) -> None:
    database = tmp_path / "whaled.db"

    with InstanceLock(database) as lock:
        content = lock_path(database).read_text()
        holder = lock_holder(database)
        assert lock.held

    assert content == f"{os.getpid()}\n"
    assert holder == os.getpid()
    assert lock_holder(database) is None
    assert lock_path(database).read_text() == ""


def test_lock_rejects_second_holder(tmp_path: Path) -> None:
    database = tmp_path / "whaled.db"
    first = InstanceLock(database)
    first.acquire()
    try:
        with pytest.raises(InstanceLockedError) as caught:
            InstanceLock(database).acquire()
    finally:
        first.release()

    assert caught.value.pid == os.getpid()
    assert f"held by process {os.getpid()}" in str(caught.value)
    assert "systemctl stop whaled" in str(caught.value)


def test_lock_shared_through_symlink(tmp_path: Path) -> None:
    """A second config reaching the same database through a symbolic link used to get a lock of its own."""
    database = tmp_path / "real" / "whaled.db"
    database.parent.mkdir()
    database.touch()
    alias = tmp_path / "alias.db"
    alias.symlink_to(database)
    with InstanceLock(database), pytest.raises(InstanceLockedError):
        InstanceLock(alias).acquire()


def test_lock_ignores_stale_pid(tmp_path: Path) -> None:
    """A file left by a killed process names a dead PID but holds no lock, so the next start takes it."""
    database = tmp_path / "whaled.db"
    lock_path(database).write_text("4194303\n")

    with InstanceLock(database):
        content = lock_path(database).read_text()

    assert content == f"{os.getpid()}\n"


def test_lock_holder_without_file(tmp_path: Path) -> None:
    assert lock_holder(tmp_path / "missing.db") is None


def test_lock_release_twice(tmp_path: Path) -> None:
    lock = InstanceLock(tmp_path / "whaled.db")
    lock.acquire()
    lock.release()
    lock.release()

    assert not lock.held


async def test_lock_second_daemon_in_process(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(web={"port": 0})
    first = Daemon(settings)
    await first.start()
    try:
        with pytest.raises(InstanceLockedError):
            await Daemon(settings).start()
        running = lock_holder(settings.store.path)
    finally:
        await first.close()

    assert running == os.getpid()
    assert lock_holder(settings.store.path) is None


async def test_lock_second_daemon_refused(
    simulator: RunningSimulator, tmp_path: Path, start_daemon: StartDaemon, notify_listener: NotifyListener
) -> None:
    config = tmp_path / "whaled.toml"
    config.write_text(daemon_config(simulator, tmp_path))
    first = await start_daemon(config, notify=notify_listener)
    async with asyncio.timeout(WAIT_S):
        await notify_listener.wait_for("READY")
        second = await start_daemon(config)
        second_code = await second.wait()
        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "whaled", "db", "migrate", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, migrate_stderr = await migrate.communicate()
        first.send(signal.SIGTERM)
        first_code = await first.wait()

    assert second_code == 1
    assert f"is held by process {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert migrate.returncode == 1
    assert f"held by process {first.pid}" in migrate_stderr.decode()
    assert first_code == 0
    assert lock_holder(tmp_path / "whaled.db") is None
