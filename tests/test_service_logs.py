"""Log output for journald: priority prefixes without timestamps when stderr is the journal, JSON lines as an option."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from whaled.config import LogSettings
from whaled.logformat import JournalFormatter, JsonFormatter, apply_log_levels, build_handler, journal_attached
from whaled.store.migrate import available_migrations


def record(level: int, message: str, name: str = "whaled.jobs") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[TextIO]:
    with (tmp_path / "stderr.log").open("w+") as file:
        yield file


def stream_id(stream: TextIO) -> str:
    status = os.fstat(stream.fileno())
    return f"{status.st_dev}:{status.st_ino}"


def test_journal_detected_by_device_and_inode(log_file: TextIO) -> None:
    assert journal_attached(log_file, {"JOURNAL_STREAM": stream_id(log_file)})
    assert not journal_attached(log_file, {"JOURNAL_STREAM": "1:2"})
    assert not journal_attached(log_file, {"JOURNAL_STREAM": "junk"})
    assert not journal_attached(log_file, {})
    assert not journal_attached(io.StringIO(), {"JOURNAL_STREAM": stream_id(log_file)})


def test_journal_format_priorities(log_file: TextIO) -> None:
    handler = build_handler("text", stream=log_file, environ={"JOURNAL_STREAM": stream_id(log_file)})
    formatter = handler.formatter

    assert isinstance(formatter, JournalFormatter)
    assert formatter.format(record(logging.WARNING, "late")) == "<4>WARNING whaled.jobs: late"
    assert formatter.format(record(logging.INFO, "ok")) == "<6>INFO    whaled.jobs: ok"
    assert formatter.format(record(logging.ERROR, "bad")).startswith("<3>ERROR")
    assert formatter.format(record(logging.DEBUG, "detail")).startswith("<7>DEBUG")
    assert formatter.format(record(logging.CRITICAL, "down")).startswith("<2>CRITICAL")


def test_journal_format_prefixes_every_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        entry = logging.LogRecord("whaled.app", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())

    lines = JournalFormatter().format(entry).splitlines()

    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: boom"


def test_text_format_outside_journal(log_file: TextIO) -> None:
    handler = build_handler("text", stream=log_file, environ={"JOURNAL_STREAM": "1:2"})
    assert handler.formatter is not None

    line = handler.formatter.format(record(logging.INFO, "hello"))

    assert line.endswith(" INFO    whaled.jobs: hello")
    assert line[:4].isdigit()


def test_json_format(log_file: TextIO) -> None:
    handler = build_handler("json", stream=log_file, environ={"JOURNAL_STREAM": stream_id(log_file)})
    assert isinstance(handler.formatter, JsonFormatter)

    entry = json.loads(handler.formatter.format(record(logging.WARNING, "slow")))

    assert entry["level"] == "WARNING"
    assert entry["logger"] == "whaled.jobs"
    assert entry["message"] == "slow"
    assert entry["time"].endswith("+00:00")


def test_log_levels_applied_and_reset() -> None:
    root, jobs, store = logging.getLogger(), logging.getLogger("whaled.jobs"), logging.getLogger("whaled.store")
    saved = root.level, jobs.level, store.level
    try:
        apply_log_levels(LogSettings(level="WARNING", levels={"whaled.jobs": "DEBUG", "whaled.store": "ERROR"}))
        first = root.level, jobs.level, store.level
        apply_log_levels(LogSettings(levels={"whaled.jobs": "INFO"}), verbose=True, previous=["whaled.store"])
        second = root.level, jobs.level, store.level
        quiet = logging.getLogger("apscheduler").level
    finally:
        root.setLevel(saved[0])
        jobs.setLevel(saved[1])
        store.setLevel(saved[2])

    assert first == (logging.WARNING, logging.DEBUG, logging.ERROR)
    assert second == (logging.DEBUG, logging.INFO, logging.NOTSET)
    assert quiet == logging.WARNING


def test_journal_output_of_command(tmp_path: Path) -> None:
    """A real ``whaled db migrate`` whose stderr is the stream named in JOURNAL_STREAM."""
    config = tmp_path / "whaled.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "whaled.db"}"\n')
    with (tmp_path / "stderr.log").open("w+") as stderr:
        environment = {**os.environ, "JOURNAL_STREAM": stream_id(stderr)}
        result = subprocess.run(
            [sys.executable, "-m", "whaled", "db", "migrate", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=environment,
            timeout=30,
            check=False,
        )
        stderr.seek(0)
        lines = stderr.read().splitlines()

    assert result.returncode == 0
    latest = available_migrations()[-1].version
    assert lines == [f"<6>INFO    whaled.store: Database {tmp_path / 'whaled.db'} migrated to version {latest}"]
