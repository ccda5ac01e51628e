"""``whaled wallets add|remove|list``: change or show the tracked wallets in the database.

A running daemon reads the tracked set at each ``sync-whale-trades`` run, so a change applies from the next
run without a reload. Wallets listed in the configuration are tracked again at every start and reload.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import ValidationError

from whaled.config import Settings, WalletEntry
from whaled.errors import WhaledError
from whaled.notify.text import find_control_character
from whaled.ops.common import emit, emit_json, format_ms, read_only, require_database
from whaled.store import Database
from whaled.store.wallets import set_tracked, upsert_wallet

__all__ = [
    "InvalidLabelError",
    "InvalidWalletError",
    "check_label",
    "cmd_wallets_add",
    "cmd_wallets_list",
    "cmd_wallets_remove",
    "parse_wallet",
]

# The exit status of a command-line usage error, as argparse uses it.
_EXIT_USAGE = 2


class InvalidWalletError(WhaledError, ValueError):
    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        super().__init__(f"invalid wallet address {address!r}: {reason}")


class InvalidLabelError(WhaledError, ValueError):
    def __init__(self, label: str, character: str) -> None:
        self.label = label
        super().__init__(
            f"invalid label {label!r}: it contains the control character U+{ord(character):04X}; "
            "use printable characters only (a label is one line in alert emails and on the dashboard)"
        )


def check_label(label: str) -> str:
    """Return ``label`` unchanged, or raise :class:`InvalidLabelError` if it contains a control character."""
    character = find_control_character(label)
    if character is not None:
        raise InvalidLabelError(label, character)
    return label


def parse_wallet(address: str, label: str = "") -> WalletEntry:
    """Validate ``address`` as the configuration does (0x plus 40 hex digits) and lower-case it."""
    try:
        return WalletEntry(address=address, label=label)
    except ValidationError as exc:
        reason = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        raise InvalidWalletError(address, reason) from None


async def _open(settings: Settings) -> Database:
    store = settings.store
    return await Database.open(require_database(settings), busy_timeout_ms=store.busy_timeout_ms, readers=1)


def _in_config(settings: Settings, address: str) -> bool:
    return any(entry.address == address for entry in settings.wallets)


async def cmd_wallets_add(args: argparse.Namespace, settings: Settings) -> int:
    try:
        label = check_label(args.label or "")
    except InvalidLabelError as exc:
        print(f"whaled: {exc}", file=sys.stderr)  # noqa: T201 (command output)
        return _EXIT_USAGE
    entry = parse_wallet(args.address, label)
    db = await _open(settings)
    try:
        async with db.transaction() as tx:
            added = await upsert_wallet(tx, entry.address, entry.label, "cli")
            if added:
                payload = {"wallet": entry.address, "label": entry.label, "source": "cli"}
                await tx.append_event("wallet", "wallet.added", payload, wallet=entry.address)
    finally:
        await db.close()
    if added:
        emit(f"wallet {entry.address} is now tracked; the daemon syncs it at the next sync-whale-trades run")
    else:
        emit(f"wallet {entry.address} was already tracked")
    return 0


async def cmd_wallets_remove(args: argparse.Namespace, settings: Settings) -> int:
    entry = parse_wallet(args.address)
    db = await _open(settings)
    try:
        async with db.transaction() as tx:
            row = await tx.fetchone("SELECT label, source FROM wallets WHERE address = ?", (entry.address,))
            removed = row is not None and await set_tracked(tx, entry.address, False)
            if removed and row is not None:
                payload = {"wallet": entry.address, "label": row["label"], "source": row["source"]}
                await tx.append_event("wallet", "wallet.removed", payload, wallet=entry.address)
    finally:
        await db.close()
    if row is None:
        raise WhaledError(f"wallet {entry.address} is not in the database; `whaled wallets list --all` shows them")
    emit(f"wallet {entry.address} is no longer tracked" if removed else f"wallet {entry.address} was not tracked")
    if _in_config(settings, entry.address):
        emit("note: the configuration lists this wallet, so the next start or reload tracks it again")
    return 0


async def _wallet_rows(settings: Settings, include_untracked: bool) -> list[dict[str, Any]]:
    where = "" if include_untracked else "WHERE w.tracked = 1"
    async with read_only(settings) as conn:
        cursor = await conn.execute(
            "SELECT w.address, w.label, w.source, w.tracked, w.is_whale, c.last_synced_ms, c.last_error, "
            "(SELECT count(*) FROM trades t WHERE t.wallet = w.address) AS trades "
            f"FROM wallets w LEFT JOIN sync_cursors c ON c.wallet = w.address {where} ORDER BY w.address"
        )
        rows = [dict(row) for row in await cursor.fetchall()]
        await cursor.close()
    return rows


async def cmd_wallets_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = await _wallet_rows(settings, args.all)
    if args.json:
        emit_json(rows)
        return 0
    emit(f"{'ADDRESS':<43} {'SOURCE':<9} {'WHALE':<5} {'TRADES':>7}  {'LAST SYNC':<25} LABEL")
    for row in rows:
        state = "" if row["tracked"] else " (untracked)"
        whale = "yes" if row["is_whale"] else "-"
        emit(
            f"{row['address']:<43} {row['source']:<9} {whale:<5} {row['trades']:>7}  "
            f"{format_ms(row['last_synced_ms']):<25} {row['label']}{state}"
        )
        if row["last_error"]:
            emit(f"{'':<43} last error: {row['last_error']}")
    emit(f"{sum(1 for row in rows if row['tracked'])} tracked")
    return 0
