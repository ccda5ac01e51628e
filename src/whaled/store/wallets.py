"""Queries on the wallets table: the tracked set and where each wallet came from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from whaled.clock import now_ms
from whaled.store.db import Database, Transaction

__all__ = [
    "TrackedWallet",
    "list_wallets",
    "set_tracked",
    "sync_config_wallets",
    "tracked_wallets",
    "upsert_wallet",
]


@dataclass(frozen=True, slots=True)
class TrackedWallet:
    address: str
    label: str
    source: str


async def tracked_wallets(db: Database) -> list[TrackedWallet]:
    rows = await db.fetchall("SELECT address, label, source FROM wallets WHERE tracked = 1 ORDER BY address")
    return [TrackedWallet(row["address"], row["label"], row["source"]) for row in rows]


async def list_wallets(db: Database) -> list[dict[str, object]]:
    rows = await db.fetchall(
        "SELECT w.address, w.label, w.source, w.tracked, w.is_whale, c.last_synced_ms, c.last_error "
        "FROM wallets w LEFT JOIN sync_cursors c ON c.wallet = w.address ORDER BY w.address"
    )
    return [dict(row) for row in rows]


async def upsert_wallet(tx: Transaction, address: str, label: str, source: str) -> bool:
    """Track ``address``; return True when it was not tracked before. A config label wins over others."""
    before = await tx.fetchone("SELECT tracked, source FROM wallets WHERE address = ?", (address,))
    if before is None:
        await tx.execute(
            "INSERT INTO wallets (address, label, source, tracked, added_ms) VALUES (?, ?, ?, 1, ?)",
            (address, label, source, now_ms()),
        )
        return True
    if before["source"] == "config" and source != "config":
        await tx.execute("UPDATE wallets SET tracked = 1 WHERE address = ?", (address,))
    else:
        await tx.execute(
            "UPDATE wallets SET tracked = 1, label = ?, source = ? WHERE address = ?",
            (label, source, address),
        )
    return not before["tracked"]


async def set_tracked(tx: Transaction, address: str, tracked: bool) -> bool:
    """Change whether ``address`` is tracked; return True when that changed anything."""
    cursor = await tx.execute(
        "UPDATE wallets SET tracked = ? WHERE address = ? AND tracked != ?",
        (int(tracked), address, int(tracked)),
    )
    return cursor.rowcount > 0


async def sync_config_wallets(tx: Transaction, entries: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Make the config's wallet list the tracked ``config`` set; return (added, removed) addresses.

    Wallets that left the config stop being tracked but keep their history.
    """
    wanted = dict(entries)
    added = [address for address, label in wanted.items() if await upsert_wallet(tx, address, label, "config")]
    rows = await tx.fetchall("SELECT address FROM wallets WHERE source = 'config' AND tracked = 1")
    removed = []
    for row in rows:
        if row["address"] not in wanted and await set_tracked(tx, row["address"], False):
            removed.append(row["address"])
    return added, removed
