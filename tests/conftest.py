"""Shared fixtures. Fixture modules per area live in tests/fixtures/ and are registered here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from whaled.store import Database

pytest_plugins: list[str] = [
    "tests.fixtures.browser",
    "tests.fixtures.governor",
    "tests.fixtures.jobs",
    "tests.fixtures.service",
    "tests.fixtures.simulator",
    "tests.fixtures.smtp",
    "tests.fixtures.web",
]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database in a real SQLite file."""
    database = await Database.open(tmp_path / "whaled.db")
    try:
        yield database
    finally:
        await database.close()
