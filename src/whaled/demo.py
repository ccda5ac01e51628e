"""``whaled demo``: the daemon against the built-in Opinion simulator and a mail sink, all on 127.0.0.1.

The demo writes its configuration to ``STATE_DIR/whaled.toml``, so every other command works on it with
``--config STATE_DIR/whaled.toml``. Each job runs once at startup, then keeps to its schedule.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from whaled.app import Daemon
from whaled.config import load_settings
from whaled.simulator import start_simulator

__all__ = ["demo_config", "run_demo"]

logger = logging.getLogger("whaled.app")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    # A JSON string is a valid TOML basic string.
    return json.dumps(str(value))


def _render_toml(tables: dict[str, dict[str, Any]], wallets: list[dict[str, str]]) -> str:
    lines = ["# Written by `whaled demo`; rewritten at each start because the simulator's port changes.", ""]
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    for wallet in wallets:
        lines.append("[[wallets]]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in wallet.items())
        lines.append("")
    return "\n".join(lines)


def demo_config(
    state_dir: Path,
    *,
    base_url: str,
    leaderboard_url: str,
    web_port: int,
    wallets: list[str],
    smtp_port: int | None,
) -> str:
    """Render the demo's configuration file."""
    tables: dict[str, dict[str, Any]] = {
        "opinion": {"base_url": base_url, "leaderboard_url": leaderboard_url},
        "discovery": {"enabled": True, "top_n": 10, "max_wallets": 20},
        "store": {"path": str(state_dir / "whaled.db")},
        "web": {"host": "127.0.0.1", "port": web_port},
    }
    if smtp_port is not None:
        tables["smtp"] = {"host": "127.0.0.1", "port": smtp_port, "tls": "none"}
        tables["alerts"] = {"recipients": ["operator@demo.invalid"]}
    labelled = [{"address": address, "label": f"demo whale {index}"} for index, address in enumerate(wallets, 1)]
    return _render_toml(tables, labelled)


async def _start_mail_sink(stack: AsyncExitStack, folder: Path) -> int | None:
    try:
        from whaled.simulator.mailsink import start_mail_sink
    except ImportError:
        return None
    sink = await start_mail_sink(folder)
    stack.push_async_callback(sink.close)
    port: int = sink.port
    return port


async def run_demo(*, state_dir: Path | None, port: int, seed: int) -> int:
    folder = state_dir or Path(tempfile.mkdtemp(prefix="whaled-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        simulator = await start_simulator(seed=seed, evolve_every_s=2.0)
        stack.push_async_callback(simulator.close)
        smtp_port = await _start_mail_sink(stack, folder / "mail")
        config_path = folder / "whaled.toml"
        config_path.write_text(
            demo_config(
                folder,
                base_url=simulator.base_url,
                leaderboard_url=simulator.leaderboard_url,
                web_port=port,
                wallets=list(simulator.state.whale_wallets[:4]),
                smtp_port=smtp_port,
            ),
            encoding="utf-8",
        )
        settings = load_settings(config_path)
        daemon = Daemon(settings, run_jobs_at_startup=True)
        await daemon.start()
        stack.push_async_callback(daemon.close)
        _print_banner(folder, config_path, simulator.base_url, port, smtp_port)
        await _wait_for_stop()
    return 0


def _print_banner(folder: Path, config_path: Path, base_url: str, port: int, smtp_port: int | None) -> None:
    lines = [
        "whaled demo is running (Ctrl-C to stop)",
        f"  dashboard        http://127.0.0.1:{port}/",
        f"  JSON API         http://127.0.0.1:{port}/api/v1/openapi.json",
        f"  live feed        ws://127.0.0.1:{port}/ws",
        f"  simulator        {base_url}",
        f"  state folder     {folder}",
        f"  jobs             whaled jobs list --config {config_path}",
    ]
    if smtp_port is not None:
        lines.append(f"  alert e-mails    {folder / 'mail'} (SMTP sink on 127.0.0.1:{smtp_port})")
    print("\n".join(lines), file=sys.stderr, flush=True)


async def _wait_for_stop() -> None:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
