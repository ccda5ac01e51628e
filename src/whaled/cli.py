"""The ``whaled`` command line. Every command takes ``--config PATH`` (or ``$WHALED_CONFIG``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whaled import __version__
from whaled.config import EXIT_CONFIG, Settings, load_settings
from whaled.errors import ConfigError, WhaledError
from whaled.web.errors import WebStartError

if TYPE_CHECKING:
    from whaled.jobs import JobSchedule

__all__ = ["main"]

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def configure_logging(settings: Settings, *, verbose: bool = False) -> None:
    """Send logs to stderr (journald adds its own timestamps): plain text, or JSON lines if configured."""
    from whaled.logformat import apply_log_levels, build_handler

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(build_handler(settings.log.format))
    apply_log_levels(settings.log, verbose=verbose)
    if "aiosqlite" not in settings.log.levels:
        # At DEBUG, aiosqlite logs every SQL statement with its parameters; log.levels can still ask for that.
        logging.getLogger("aiosqlite").setLevel(logging.INFO)


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the daemon until SIGTERM or SIGINT; SIGHUP rereads the configuration."""
    from whaled.service import run_service

    config_path = getattr(args, "config", None)
    closed = await run_service(settings, config_path=config_path, verbose=getattr(args, "verbose", False))
    if not closed:
        # The shutdown overran its bound with parts still open; a database thread left open would keep
        # the interpreter from exiting. SQLite's WAL and the kernel's release of the lock make this safe.
        logging.shutdown()
        os._exit(EXIT_FAILURE)
    return EXIT_OK


async def cmd_check_config(args: argparse.Namespace, settings: Settings) -> int:
    wallets = len(settings.wallets)
    print(f"configuration is valid: {wallets} tracked wallets, database {settings.store.path}")
    print(f"Opinion API {settings.opinion.base_url} (API key {'set' if settings.opinion.api_key else 'not set'})")
    if settings.web.enabled:
        print(f"web server http://{settings.web.host}:{settings.web.port}/")
    return EXIT_OK


def _format_ms(value: int | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1000, UTC).isoformat(timespec="seconds")


async def _job_table(settings: Settings) -> list[dict[str, Any]]:
    """List each job's schedule and last run; when the database file does not exist, no job has a last run."""
    from whaled.app import open_database
    from whaled.jobs import job_schedules

    if not settings.store.path.exists():
        return [_job_row(schedule, None, None) for schedule in job_schedules(settings)]
    db = await open_database(settings)
    try:
        rows = []
        for schedule in job_schedules(settings):
            # A missed or skipped run did not run, so it is reported apart from the last run that did.
            last = await db.fetchone(
                "SELECT * FROM job_runs WHERE job = ? AND outcome NOT IN ('running', 'missed', 'skipped') "
                "ORDER BY started_ms DESC LIMIT 1",
                (schedule.name,),
            )
            not_run = await db.fetchone(
                "SELECT * FROM job_runs WHERE job = ? AND outcome IN ('missed', 'skipped') "
                "ORDER BY started_ms DESC LIMIT 1",
                (schedule.name,),
            )
            success = await db.fetchone(
                "SELECT max(finished_ms) FROM job_runs WHERE job = ? AND outcome = 'success'", (schedule.name,)
            )
            row = _job_row(schedule, last, success[0] if success else None)
            row["last_not_run"] = None if not_run is None else _run_summary(not_run)
            rows.append(row)
        return rows
    finally:
        await db.close()


def _job_row(schedule: JobSchedule, last: Any, last_success_ms: int | None) -> dict[str, Any]:
    return {
        "name": schedule.name,
        "enabled": schedule.enabled,
        "trigger": schedule.trigger,
        "next_run": schedule.next_run.isoformat() if schedule.next_run else None,
        "last_run": None if last is None else _run_summary(last),
        "last_success": _format_ms(last_success_ms),
    }


def _run_summary(row: Any) -> dict[str, Any]:
    return {
        "run_id": row["id"],
        "trigger": row["trigger"],
        "outcome": row["outcome"],
        "started": _format_ms(row["started_ms"]),
        "finished": _format_ms(row["finished_ms"]),
        "duration_s": None if row["finished_ms"] is None else (row["finished_ms"] - row["started_ms"]) / 1000,
        "items": row["items"],
        "api_calls": row["api_calls"],
        "error": row["error"],
    }


async def cmd_jobs_list(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.store.path.exists():
        # On stderr, so that --json output stays valid JSON.
        print(
            f"database {str(settings.store.path)!r} does not exist yet, so no job has run; "
            "the daemon creates it at its first start",
            file=sys.stderr,
        )
    rows = await _job_table(settings)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    print(f"{'JOB':<22} {'TRIGGER':<34} {'NEXT RUN':<26} LAST RUN")
    for row in rows:
        last = row["last_run"]
        summary = "never" if last is None else f"{last['outcome']} at {last['started']} ({last['items']} items)"
        print(f"{row['name']:<22} {row['trigger']:<34} {row['next_run'] or 'disabled':<26} {summary}")
    return EXIT_OK


async def cmd_jobs_run(args: argparse.Namespace, settings: Settings) -> int:
    from whaled.app import apply_config_wallets, build_opinion, default_pruners, open_database
    from whaled.governor import Priority
    from whaled.jobs import JOBS, JobRunner, UnknownJobError

    # Checked before the database is opened, migrated or given the config's wallets.
    if args.name not in JOBS:
        print(f"whaled: {UnknownJobError(args.name)}", file=sys.stderr)
        return EXIT_USAGE
    db = await open_database(settings)
    client, governor, api = build_opinion(settings)
    try:
        await apply_config_wallets(db, settings)
        runner = JobRunner(db, api.with_priority(Priority.interactive), settings, pruners=default_pruners())
        record = await runner.run(args.name, trigger="manual")
    finally:
        await client.close()
        await governor.close()
        await db.close()
    print(json.dumps(_record_json(record), indent=2))
    return EXIT_OK if record.outcome == "success" else EXIT_FAILURE


def _record_json(record: Any) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "job": record.job,
        "outcome": record.outcome,
        "items": record.items,
        "api_calls": record.api_calls,
        "error": record.error,
        "duration_s": (record.finished_ms - record.started_ms) / 1000,
    }


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from whaled.demo import run_demo

    return await run_demo(state_dir=args.state_dir, port=args.port, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="TOML configuration file (default: $WHALED_CONFIG, else environment and defaults only)",
    )
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log at DEBUG level")
    parser = argparse.ArgumentParser(
        prog="whaled", description="Watch Opinion.Trade whales and alert when they move.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"whaled {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("run", parents=[common], help="run the daemon").set_defaults(handler=cmd_run)
    demo = commands.add_parser(
        "demo", parents=[common], help="run the daemon against the built-in Opinion simulator (no key, no internet)"
    )
    demo.add_argument(
        "--state-dir", type=Path, help="folder for the database, config and mail (default: a new temp folder)"
    )
    demo.add_argument("--port", type=int, default=8420, help="web server port on 127.0.0.1 (default: 8420)")
    demo.add_argument("--seed", type=int, default=7, help="simulator seed (default: 7)")
    demo.set_defaults(handler=cmd_demo, skip_config=True)
    commands.add_parser("check-config", parents=[common], help="validate the configuration and exit").set_defaults(
        handler=cmd_check_config
    )

    jobs = commands.add_parser("jobs", parents=[common], help="list or run jobs").add_subparsers(
        dest="jobs_command", required=True, metavar="ACTION"
    )
    listing = jobs.add_parser("list", parents=[common], help="jobs with trigger, next run and last run")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=cmd_jobs_list)
    run = jobs.add_parser("run", parents=[common], help="run one job once, now")
    run.add_argument("name", help="job name, for example sync-markets")
    run.set_defaults(handler=cmd_jobs_run)

    _add_area_commands(commands, common)
    return parser


def _add_area_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Commands that live beside the code they drive."""
    from whaled.commands import add_area_parsers

    add_area_parsers(commands, common)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        if getattr(args, "skip_config", False):
            # The demo writes its own config file; only WHALED_* variables apply to its logging here.
            settings = load_settings(None, environ={})
        else:
            settings = load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"whaled: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings, verbose=getattr(args, "verbose", False))
    try:
        return asyncio.run(handler(args, settings))
    except (ConfigError, WebStartError) as exc:
        # An unsafe or unusable listen address is a configuration problem: systemd must not restart on it.
        print(f"whaled: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except WhaledError as exc:
        print(f"whaled: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
