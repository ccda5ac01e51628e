"""The crash harness in its fast form: three SIGKILLs at random moments, then a clean run that loses nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CRASH_BENCH = Path(__file__).parent.parent / "bench" / "crash.py"


@pytest.mark.timeout(90)
def test_crash_restarts_lose_nothing() -> None:
    result = subprocess.run(
        [sys.executable, str(CRASH_BENCH), "--restarts", "3", "--max-kill-s", "1", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT crash ")]
    assert len(lines) == 1, result.stdout + result.stderr
    figures = dict(item.split("=", 1) for item in lines[0].split()[2:])

    assert result.returncode == 0, result.stdout + result.stderr
    assert figures["restarts"] == "3"
    assert figures["survived"] == "3"
    assert figures["startup_kills"] == "1"
    assert int(figures["trades"]) > 0
    assert figures["lost"] == "0"
    assert figures["duplicated"] == "0"
    assert figures["events_missing"] == "0"
    assert figures["events_duplicated"] == "0"
    assert figures.get("emails_lost", "0") == "0"
    assert figures.get("emails_duplicated", "0") == "0"
    assert figures.get("workflows_unfinished", "0") == "0"
    assert figures["log_problems"] == "0"
    assert figures["ratio"] == "1.00"
