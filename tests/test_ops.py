"""The operations commands ``whaled db``, ``whaled wallets`` and ``whaled status``, run through their handlers.

Also the wallet labels that whale discovery takes from the leaderboard.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.service import free_port
from whaled.app import Daemon
from whaled.config import Settings
from whaled.errors import WhaledError
from whaled.jobs import JobContext, JobRunner
from whaled.jobs.discovery import refresh_discovered_wallets
from whaled.lock import InstanceLock, InstanceLockedError
from whaled.ops.common import DatabaseMissingError
from whaled.ops.db import BackupError, cmd_db_backup, cmd_db_migrate, cmd_db_stats, cmd_db_vacuum
from whaled.ops.status import cmd_status, collect_status
from whaled.ops.wallets import InvalidWalletError, cmd_wallets_add, cmd_wallets_list, cmd_wallets_remove
from whaled.simulator import RunningSimulator
from whaled.store.migrate import available_migrations

NEW_WALLET = "0x" + "AB" * 20


def args(**values: Any) -> argparse.Namespace:
    return argparse.Namespace(**values)


def rows(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        return list(conn.execute(sql))


def database_bytes(database: Path) -> int:
    wal = database.with_name(database.name + "-wal")
    return database.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(store={"path": str(tmp_path / "state" / "whaled.db")}, web={"port": free_port()})


async def test_ops_migrate_creates_database(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    latest = available_migrations()[-1].version

    first = await cmd_db_migrate(args(), settings)
    created = capsys.readouterr().out
    second = await cmd_db_migrate(args(), settings)
    again = capsys.readouterr().out

    assert first == 0
    assert f"migrated from schema version 0 to {latest}" in created
    assert "0001 initial" in created
    assert second == 0
    assert f"is at schema version {latest}, the latest; nothing to migrate" in again
    assert rows(settings.store.path, "SELECT max(version) FROM schema_migrations") == [(latest,)]


async def test_ops_migrate_refused_while_locked(settings: Settings) -> None:
    with InstanceLock(settings.store.path), pytest.raises(InstanceLockedError, match=f"process {os.getpid()}"):
        await cmd_db_migrate(args(), settings)


async def test_ops_read_commands_need_database(settings: Settings) -> None:
    with pytest.raises(DatabaseMissingError, match="whaled db migrate"):
        await cmd_db_stats(args(json=True), settings)

    assert not settings.store.path.exists()


async def test_ops_backup_copies_rows(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await cmd_db_migrate(args(), settings)
    await cmd_wallets_add(args(address=NEW_WALLET, label="big one"), settings)
    target = tmp_path / "backup.db"

    code = await cmd_db_backup(args(path=str(target), force=False), settings)
    output = capsys.readouterr().out

    assert code == 0
    assert "integrity ok" in output
    assert rows(target, "SELECT address, label, source FROM wallets") == [(NEW_WALLET.lower(), "big one", "cli")]
    assert rows(target, "PRAGMA journal_mode") == [("delete",)]
    assert await asyncio.to_thread(lambda: list(tmp_path.glob(".*.partial"))) == []


async def test_ops_backup_target_rules(settings: Settings, tmp_path: Path) -> None:
    await cmd_db_migrate(args(), settings)
    existing = tmp_path / "existing.db"
    existing.write_text("keep me")
    folder = tmp_path / "backups"
    folder.mkdir()

    with pytest.raises(BackupError, match="already exists"):
        await cmd_db_backup(args(path=str(existing), force=False), settings)
    with pytest.raises(BackupError, match="is the live database"):
        await cmd_db_backup(args(path=str(settings.store.path), force=True), settings)
    with pytest.raises(BackupError, match="does not exist"):
        await cmd_db_backup(args(path=str(tmp_path / "nowhere" / "b.db"), force=False), settings)
    forced = await cmd_db_backup(args(path=str(existing), force=True), settings)
    into_folder = await cmd_db_backup(args(path=str(folder), force=False), settings)

    assert existing.read_bytes().startswith(b"SQLite format 3")
    assert forced == 0
    assert into_folder == 0
    assert [path.name[:7] for path in folder.iterdir()] == ["whaled-"]


async def test_ops_vacuum_frees_pages(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    await cmd_db_migrate(args(), settings)
    with closing(sqlite3.connect(settings.store.path)) as conn, conn:
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)", [(f"filler-{n}", "x" * 4000) for n in range(500)]
        )
    with closing(sqlite3.connect(settings.store.path)) as conn, conn:
        conn.execute("DELETE FROM meta")
    before = database_bytes(settings.store.path)
    capsys.readouterr()

    code = await cmd_db_vacuum(args(), settings)
    output = capsys.readouterr().out

    assert code == 0
    assert output.startswith(f"vacuumed {settings.store.path}")
    assert database_bytes(settings.store.path) < before // 4
    with InstanceLock(settings.store.path), pytest.raises(InstanceLockedError):
        await cmd_db_vacuum(args(), settings)


async def test_ops_stats_json(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    await cmd_db_migrate(args(), settings)
    await cmd_wallets_add(args(address=NEW_WALLET, label=None), settings)
    capsys.readouterr()

    code = await cmd_db_stats(args(json=True), settings)
    stats = json.loads(capsys.readouterr().out)
    text_code = await cmd_db_stats(args(json=False), settings)
    text = capsys.readouterr().out

    assert code == 0
    assert stats["schema_version"] == available_migrations()[-1].version
    assert stats["journal_mode"] == "wal"
    assert stats["rows"]["wallets"] == 1
    assert stats["events"]["last_id"] == 1
    assert text_code == 0
    assert "schema version" in text
    assert "wallets" in text


async def test_ops_wallets_add_remove(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    await cmd_db_migrate(args(), settings)
    capsys.readouterr()

    added = await cmd_wallets_add(args(address=NEW_WALLET, label="whale x"), settings)
    again = await cmd_wallets_add(args(address=NEW_WALLET, label="whale x"), settings)
    removed = await cmd_wallets_remove(args(address=NEW_WALLET), settings)
    output = capsys.readouterr().out
    events = rows(settings.store.path, "SELECT type, wallet FROM events ORDER BY id")

    assert (added, again, removed) == (0, 0, 0)
    assert "is now tracked" in output
    assert "was already tracked" in output
    assert "is no longer tracked" in output
    assert events == [("wallet.added", NEW_WALLET.lower()), ("wallet.removed", NEW_WALLET.lower())]
    assert rows(settings.store.path, "SELECT tracked FROM wallets") == [(0,)]


async def test_ops_wallets_rejects_bad_input(settings: Settings) -> None:
    await cmd_db_migrate(args(), settings)

    with pytest.raises(InvalidWalletError, match="40-digit hex"):
        await cmd_wallets_add(args(address="0x1234", label=None), settings)
    with pytest.raises(WhaledError, match="is not in the database"):
        await cmd_wallets_remove(args(address=NEW_WALLET), settings)


async def test_ops_wallets_add_rejects_control_characters(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await cmd_db_migrate(args(), settings)
    capsys.readouterr()

    codes = [
        await cmd_wallets_add(args(address=NEW_WALLET, label=label), settings)
        for label in ("x\r\ny", "Orca\nBcc: spy@example.net", "tab\there", "nul\x00", "next\u2028line")
    ]
    output = capsys.readouterr()

    assert codes == [2, 2, 2, 2, 2]
    assert "invalid label 'x\\r\\ny': it contains the control character U+000D" in output.err
    assert "invalid label 'next\\u2028line': it contains the control character U+2028" in output.err
    assert "use printable characters only" in output.err
    assert output.out == ""
    assert rows(settings.store.path, "SELECT count(*) FROM wallets") == [(0,)]
    assert rows(settings.store.path, "SELECT count(*) FROM events") == [(0,)]


async def test_discovery_cleans_leaderboard_names(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    names = {
        "0x" + "e1" * 20: "Orca\r\nBcc: spy@example.net",
        "0x" + "e2" * 20: "\x1b[31mRed\x1b[0m\u2028 ",
        "0x" + "e3" * 20: "W" * 100,
    }
    for address, name in names.items():
        simulator.state.add_wallet(address, whale=True, name=name)
        simulator.state.add_trade(address, amount="50000000")
    context = JobContext(job_runner.db, job_runner.api, job_runner.settings, run_id=1)

    result = await refresh_discovered_wallets(context, force=True)

    assert result["refreshed"] is True
    labels = dict(await job_runner.db.fetchall("SELECT address, label FROM wallets WHERE source = 'discovery'"))
    assert labels["0x" + "e1" * 20] == "Orca Bcc: spy@example.net"
    assert labels["0x" + "e2" * 20] == "[31mRed [0m"
    assert labels["0x" + "e3" * 20] == "W" * 64
    for label in labels.values():
        assert label.isprintable()
        assert len(label) <= 64
    events = await job_runner.db.fetchall("SELECT payload FROM events WHERE type = 'wallet.added'")
    assert "Orca Bcc: spy@example.net" in [json.loads(row["payload"])["label"] for row in events]


async def test_ops_wallets_remove_config_wallet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    address = "0x" + "cd" * 20
    settings = Settings(store={"path": str(tmp_path / "whaled.db")}, wallets=[{"address": address}])
    await cmd_db_migrate(args(), settings)
    await cmd_wallets_add(args(address=address, label=None), settings)

    await cmd_wallets_remove(args(address=address), settings)

    assert "the next start or reload tracks it again" in capsys.readouterr().out


async def test_ops_wallets_list(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    await cmd_db_migrate(args(), settings)
    await cmd_wallets_add(args(address=NEW_WALLET, label="listed"), settings)
    await cmd_wallets_add(args(address="0x" + "ef" * 20, label=None), settings)
    await cmd_wallets_remove(args(address="0x" + "ef" * 20), settings)
    capsys.readouterr()

    await cmd_wallets_list(args(all=False, json=True), settings)
    tracked = json.loads(capsys.readouterr().out)
    await cmd_wallets_list(args(all=True, json=False), settings)
    table = capsys.readouterr().out

    assert [row["address"] for row in tracked] == [NEW_WALLET.lower()]
    assert tracked[0]["trades"] == 0
    assert "(untracked)" in table
    assert table.rstrip().endswith("1 tracked")


async def test_ops_status_after_runs(job_runner: JobRunner, capsys: pytest.CaptureFixture[str]) -> None:
    await job_runner.run("sync-markets", trigger="manual")
    await job_runner.run("sync-whale-trades", trigger="manual")
    settings = job_runner.settings

    status = await collect_status(settings)
    code = await cmd_status(args(json=False), settings)
    text = capsys.readouterr().out

    jobs = {job["name"]: job for job in status["jobs"]}
    assert jobs["sync-markets"]["last_run"]["outcome"] == "success"
    assert jobs["sync-whale-trades"]["last_run"]["items"] > 0
    assert jobs["cleanup-old-activity"]["last_run"] is None
    assert status["wallets"]["tracked"] == 3
    assert status["wallets"]["coverage"] == 1.0
    assert status["workflows"] == {}
    assert status["daemon"] == {"running": False, "pid": None}
    assert code == 1
    assert "daemon          not running" in text
    assert "3 tracked (3 config)" in text


async def test_ops_status_with_daemon(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(web={"port": free_port()})
    daemon = Daemon(settings)
    await daemon.start()
    try:
        code = await cmd_status(args(json=True), settings)
    finally:
        await daemon.close()
    status = json.loads(capsys.readouterr().out)

    assert code == 0
    assert status["daemon"] == {"running": True, "pid": os.getpid()}
    assert status["health"]["reachable"] is True
    assert status["health"]["governor"]["state"] == "running"
