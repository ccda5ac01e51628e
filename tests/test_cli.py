"""The ``whaled`` command line, run as a real subprocess where the exit code matters."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from whaled.cli import EXIT_USAGE
from whaled.config import EXIT_CONFIG
from whaled.jobs import JOBS
from whaled.store import Database

FAKE_KEY = "sk-live-FAKE-0a1b2c3d4e5f60718293"


def run_whaled(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m whaled`` with a clean environment: no WHALED_* variable leaks in from the test run."""
    clean = {"PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:
        clean["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        [sys.executable, "-m", "whaled", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **(env or {})},
    )


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "whaled.toml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_one_config_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "whaled: invalid configuration:"
    assert len(lines) == 2, lines
    assert expected in lines[1]


def test_environment_not_json_exits_78(tmp_path: Path) -> None:
    result = run_whaled("check-config", env={"WHALED_OPINION": "notjson"})
    assert_one_config_error(result, "environment variable WHALED_OPINION is not valid JSON")


def test_unreadable_credential_exits_78(tmp_path: Path) -> None:
    # Root can read a file whatever its mode, so the test uses a folder in place of an unreadable file.
    (tmp_path / "opinion_api_key").mkdir()
    result = run_whaled("check-config", env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert_one_config_error(result, "opinion.api_key: credential file")
    assert "cannot be read" in result.stderr


def test_huge_interval_exits_78(tmp_path: Path) -> None:
    # A 1e300 s interval used to pass check-config and raise OverflowError when the trigger was built.
    text = f'[jobs.sync_markets]\ninterval_s = 1e300\ntimeout_s = 60\n[store]\npath = "{tmp_path / "whaled.db"}"\n'
    result = run_whaled("jobs", "list", "--config", str(config_file(tmp_path, text)))
    assert_one_config_error(result, "jobs.sync_markets.interval_s: Input should be less than or equal to 604800")


def test_empty_config_option_exits_78() -> None:
    result = run_whaled("check-config", "--config", "")
    assert_one_config_error(result, "config path is empty")


def test_empty_config_variable_means_unset() -> None:
    result = run_whaled("check-config", env={"WHALED_CONFIG": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("configuration is valid")


def test_misspelt_secret_never_printed(tmp_path: Path) -> None:
    path = config_file(tmp_path, f'[opinion]\napikey = "{FAKE_KEY}"\n')
    env = {"WHALED_OPINION__APIKEY": FAKE_KEY + "-env", "WHALED_ALERTS__WEBHOOKSECRET": FAKE_KEY + "-hook"}
    result = run_whaled("check-config", "--config", str(path), env=env)
    assert result.returncode == EXIT_CONFIG
    assert "opinion.apikey: unknown key; check the spelling against config.example.toml" in result.stderr
    assert "alerts.webhooksecret: unknown key" in result.stderr
    assert FAKE_KEY not in result.stderr + result.stdout


def test_jobs_run_unknown_name_leaves_database_alone(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    path = config_file(tmp_path, f'[store]\npath = "{folder / "whaled.db"}"\n')
    result = run_whaled("jobs", "run", "sync_markets", "--config", str(path))
    assert result.returncode == EXIT_USAGE
    assert "unknown job 'sync_markets'" in result.stderr
    for name in JOBS:
        assert name in result.stderr
    assert not folder.exists()


def test_jobs_list_without_database_creates_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    path = config_file(tmp_path, f'[store]\npath = "{folder / "whaled.db"}"\n')

    result = run_whaled("jobs", "list", "--json", "--config", str(path))

    assert result.returncode == 0, result.stderr
    assert "does not exist yet" in result.stderr
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == list(JOBS)
    assert all(row["last_run"] is None for row in rows)
    assert all(row["next_run"] is not None for row in rows)
    assert not folder.exists()


def test_jobs_list_text_says_never(tmp_path: Path) -> None:
    path = config_file(tmp_path, f'[store]\npath = "{tmp_path / "absent.db"}"\n')
    result = run_whaled("jobs", "list", "--config", str(path))
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[1:]
    assert len(rows) == len(JOBS)
    assert all(row.endswith(" never") for row in rows)
    assert not (tmp_path / "absent.db").exists()


async def test_verbose_hides_aiosqlite_statements(db: Database, tmp_path: Path) -> None:
    path = config_file(tmp_path, f'[store]\npath = "{db.path}"\n')
    async with asyncio.timeout(30):
        result = await asyncio.to_thread(run_whaled, "-v", "jobs", "list", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert " DEBUG " in result.stderr
    assert "aiosqlite" not in result.stderr


def test_jobs_list_reports_skipped_apart(tmp_path: Path) -> None:
    """A skipped tick used to show as the job's last run, which reads like a failure."""
    database = tmp_path / "whaled.db"

    async def record_runs() -> None:
        db = await Database.open(database)
        try:
            async with db.transaction() as tx:
                await tx.executemany(
                    "INSERT INTO job_runs (job, trigger, started_ms, finished_ms, outcome) VALUES (?, ?, ?, ?, ?)",
                    [
                        ("sync-markets", "startup", 1_000, 2_000, "success"),
                        ("sync-markets", "schedule", 1_500, 1_500, "skipped"),
                    ],
                )
        finally:
            await db.close()

    asyncio.run(record_runs())
    config = config_file(tmp_path, f'[store]\npath = "{database}"\n')
    result = run_whaled("jobs", "list", "--json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["sync-markets"]["last_run"]["outcome"] == "success"
    assert rows["sync-markets"]["last_not_run"]["outcome"] == "skipped"
    assert rows["sync-whale-trades"]["last_run"] is None
