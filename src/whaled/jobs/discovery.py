"""Whale discovery: refresh the discovered part of the tracked set from the leaderboard, at most daily.

The leaderboard is an undocumented web-app endpoint that may fail or change without notice. A failed request
keeps the previous set, is stored as ``discovery.last_error`` in ``meta`` and logged, and does not fail the job.
Its user names become wallet labels, which appear in email subjects, logs and the dashboard, so each name is
cleaned first: control characters become spaces and the name is cut to ``MAX_LABEL_CHARS`` characters.
"""

from __future__ import annotations

import json

from whaled.clock import now_ms
from whaled.governor.opinion import REQUEST_ERRORS
from whaled.jobs.base import JobContext
from whaled.log import jobs_logger as logger
from whaled.notify.text import replace_control_characters
from whaled.store.db import Database, Transaction
from whaled.store.wallets import set_tracked, upsert_wallet

__all__ = ["MAX_LABEL_CHARS", "clean_user_name", "refresh_discovered_wallets"]

MAX_LABEL_CHARS = 64

_LAST_REFRESH = "discovery.last_refresh_ms"
_LAST_ERROR = "discovery.last_error"


async def _meta(db: Database, key: str) -> str | None:
    row = await db.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
    return None if row is None else str(row["value"])


async def _set_meta(tx: Transaction, key: str, value: str) -> None:
    await tx.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def clean_user_name(name: str) -> str:
    """Turn a leaderboard user name into a one-line label of at most ``MAX_LABEL_CHARS`` characters."""
    return replace_control_characters(name).strip()[:MAX_LABEL_CHARS].rstrip()


async def _fetch_candidates(ctx: JobContext) -> dict[str, tuple[int, str]]:
    """Return address → (best rank, user name) over every configured leaderboard."""
    settings = ctx.settings.discovery
    found: dict[str, tuple[int, str]] = {}
    for data_type in settings.data_types:
        for period in settings.periods_days:
            entries = await ctx.api.leaderboard(data_type, period, limit=settings.top_n)
            for rank, entry in enumerate(entries[: settings.top_n], start=1):
                address = entry.wallet_address.strip().lower()
                if len(address) != 42 or not address.startswith("0x"):
                    continue
                best = found.get(address)
                if best is None or rank < best[0]:
                    found[address] = (rank, clean_user_name(entry.user_name))
    ranked = sorted(found.items(), key=lambda item: item[1][0])
    return dict(ranked[: settings.max_wallets])


async def refresh_discovered_wallets(ctx: JobContext, *, force: bool = False) -> dict[str, object]:
    """Replace the discovered wallets with the current leaderboard's, if the last refresh is old enough."""
    last = await _meta(ctx.db, _LAST_REFRESH)
    interval_ms = int(ctx.settings.discovery.refresh_h * 3_600_000)
    if not force and last is not None and now_ms() - int(last) < interval_ms:
        return {"refreshed": False}
    try:
        candidates = await _fetch_candidates(ctx)
    except REQUEST_ERRORS as exc:
        logger.warning("Whale discovery degraded, keeping the previous wallets: %s", exc)
        async with ctx.db.transaction() as tx:
            await _set_meta(tx, _LAST_ERROR, json.dumps({"at_ms": now_ms(), "error": str(exc)}))
        return {"refreshed": False, "error": str(exc)}

    added, removed = [], []
    async with ctx.db.transaction() as tx:
        for address, (rank, name) in candidates.items():
            if await upsert_wallet(tx, address, name, "discovery"):
                added.append(address)
                await tx.append_event(
                    "wallet",
                    "wallet.added",
                    {"wallet": address, "label": name, "source": "discovery"},
                    wallet=address,
                )
            await tx.execute("UPDATE wallets SET discovered_rank = ? WHERE address = ?", (rank, address))
        rows = await tx.fetchall("SELECT address, label FROM wallets WHERE source = 'discovery' AND tracked = 1")
        for row in rows:
            if row["address"] not in candidates and await set_tracked(tx, row["address"], False):
                removed.append(row["address"])
                await tx.append_event(
                    "wallet",
                    "wallet.removed",
                    {"wallet": row["address"], "label": row["label"], "source": "discovery"},
                    wallet=row["address"],
                )
        await _set_meta(tx, _LAST_REFRESH, str(now_ms()))
        await tx.execute("DELETE FROM meta WHERE key = ?", (_LAST_ERROR,))
    logger.info(
        "Whale discovery refreshed: %d wallets, %d added, %d removed",
        len(candidates),
        len(added),
        len(removed),
    )
    return {"refreshed": True, "wallets": len(candidates), "added": len(added), "removed": len(removed)}
