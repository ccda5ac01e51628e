"""The argument parsers of ``whaled db``, ``whaled wallets`` and ``whaled status``."""

from __future__ import annotations

import argparse
from typing import Any

from whaled.ops.db import cmd_db_backup, cmd_db_migrate, cmd_db_stats, cmd_db_vacuum
from whaled.ops.status import cmd_status
from whaled.ops.wallets import cmd_wallets_add, cmd_wallets_list, cmd_wallets_remove

__all__ = ["add_parsers"]


def _add_db(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", parents=parents, help="migrate, back up, compact or inspect the database")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    actions.add_parser(
        "migrate", parents=parents, help="create the database if needed and apply pending migrations (daemon stopped)"
    ).set_defaults(handler=cmd_db_migrate)
    backup = actions.add_parser(
        "backup", parents=parents, help="write a consistent copy of the database; safe while the daemon runs"
    )
    backup.add_argument("path", help="the backup file, or a folder to create whaled-<UTC time>.db in")
    backup.add_argument("--force", action="store_true", help="replace the file if it exists")
    backup.set_defaults(handler=cmd_db_backup)
    actions.add_parser(
        "vacuum",
        parents=parents,
        help="rebuild the database file to free unused space (daemon stopped; needs free disk about its size)",
    ).set_defaults(handler=cmd_db_vacuum)
    stats = actions.add_parser("stats", parents=parents, help="file sizes, schema version and row counts")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(handler=cmd_db_stats)


def _add_wallets(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    wallets = commands.add_parser("wallets", parents=parents, help="add, remove or list tracked wallets")
    actions = wallets.add_subparsers(dest="wallets_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=parents, help="track a wallet from the next trade sync on")
    add.add_argument("address", help="the wallet address: 0x and 40 hex digits")
    add.add_argument("--label", help="a name shown on the dashboard and in alerts")
    add.set_defaults(handler=cmd_wallets_add)
    remove = actions.add_parser("remove", parents=parents, help="stop tracking a wallet; its history stays")
    remove.add_argument("address", help="the wallet address: 0x and 40 hex digits")
    remove.set_defaults(handler=cmd_wallets_remove)
    listing = actions.add_parser("list", parents=parents, help="tracked wallets with source, trades and last sync")
    listing.add_argument("--all", action="store_true", help="include wallets no longer tracked")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=cmd_wallets_list)


def add_parsers(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``db``, ``wallets`` and ``status``; each leaf sets ``handler(args, settings) -> exit status``."""
    _add_db(commands, parents)
    _add_wallets(commands, parents)
    status = commands.add_parser(
        "status",
        parents=parents,
        help="jobs, governor, wallet coverage and alert queues; exit 1 when the daemon is down or unhealthy",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=cmd_status)
