"""Running whaled as a systemd service: readiness and watchdog notifications, signals, and config reloads.

``sd_notify`` is a datagram with ``KEY=value`` lines sent to the Unix socket named by ``$NOTIFY_SOCKET``
(a leading ``@`` means the abstract namespace); see sd_notify(3). Outside systemd the variable is unset and
every notification is skipped.

Signals: SIGTERM and SIGINT stop the daemon (:meth:`whaled.app.Daemon.close` gives the order); SIGHUP reloads
the configuration file. A reload that fails validation keeps the running configuration and logs one line per
invalid key. Keys that only take effect at a restart (:data:`RESTART_ONLY`) keep their running values and
are logged as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from whaled.app import Daemon
from whaled.config import Settings, load_settings
from whaled.errors import ConfigError
from whaled.jobs import JOBS
from whaled.log import app_logger as logger
from whaled.logformat import apply_log_levels

__all__ = [
    "RESTART_ONLY",
    "SHUTDOWN_TIMEOUT_S",
    "ReloadPlan",
    "SystemdNotifier",
    "Watchdog",
    "plan_reload",
    "run_service",
    "watchdog_interval_s",
]

# The whole shutdown must end within this bound; the unit's TimeoutStopSec is longer.
SHUTDOWN_TIMEOUT_S = 30.0

# Settings read only at startup: a change is logged and takes effect at the next restart. ``web`` contains the
# listening address and the access token, ``opinion`` and ``governor`` build the one API client, and the
# scheduler adds only the jobs enabled at startup.
RESTART_ONLY = (
    "store",
    "web",
    "opinion",
    "governor",
    "smtp",
    "alerts",
    "log.format",
    "jobs.run_at_startup",
    *(f"jobs.{definition.settings_key}.enabled" for definition in JOBS.values()),
)

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class SystemdNotifier:
    """Sends ``sd_notify`` messages; a no-op when ``address`` is None (not started by systemd)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._socket: socket.socket | None = None
        self._failures = 0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` as one message; return False when it was not sent (an OSError is logged, not raised)."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(fields).encode("utf-8"), target)
        except OSError as exc:
            self._failures += 1
            # The first failure and then every 100th, so that a vanished socket cannot flood the log.
            if self._failures % 100 == 1:
                logger.warning("sd_notify to %s failed (%d failures so far): %s", self.address, self._failures, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def reloading(self) -> bool:
        # MONOTONIC_USEC is required by Type=notify-reload (systemd 253+) and ignored by Type=notify.
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self, status: str) -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Return the ping interval (half of ``$WATCHDOG_USEC``), or None when systemd set no watchdog for us."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


class Watchdog:
    """Pings the systemd watchdog every ``interval_s`` from a named task on the event loop.

    The ping runs on the loop itself, so a loop blocked for longer than ``WatchdogSec`` misses its pings
    and systemd restarts the service.
    """

    def __init__(self, notifier: SystemdNotifier, interval_s: float) -> None:
        self.notifier = notifier
        self.interval_s = interval_s
        self.pings = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._ping_forever(), name="whaled-watchdog")
            logger.info("systemd watchdog on: a ping every %.1f s", self.interval_s)

    async def _ping_forever(self) -> None:
        while True:
            if self.notifier.watchdog():
                self.pings += 1
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The changes a reload applies: ``effective`` is the new configuration with restart-only keys as running.

    :param live: changed keys that apply now.
    :param restart: changed keys that keep their running value until a restart, as ``(key, old, new)``
        texts with secrets masked.
    """

    effective: Settings
    live: tuple[str, ...]
    restart: tuple[tuple[str, str, str], ...]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Map each field of nested settings models to its dotted key; lists and dicts stay whole values."""
    if not isinstance(value, BaseModel):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for name in type(value).model_fields:
        flat.update(_flatten(getattr(value, name), f"{prefix}.{name}" if prefix else name))
    return flat


def _shown(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "'***'"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _matches(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def _replace(model: BaseModel, path: list[str], value: Any) -> BaseModel:
    head, *rest = path
    inner = value if not rest else _replace(getattr(model, head), rest, value)
    return model.model_copy(update={head: inner})


def _keep_running_values(old: Settings, new: Settings, restart_only: Iterable[str]) -> Settings:
    """Return ``new`` with the value of every restart-only key (a section or a dotted key) taken from ``old``."""
    effective: BaseModel = new
    for key in restart_only:
        value: Any = old
        for part in key.split("."):
            value = getattr(value, part)
        effective = _replace(effective, key.split("."), value)
    assert isinstance(effective, Settings)
    return effective


def plan_reload(old: Settings, new: Settings, *, live_sections: Iterable[str] = ()) -> ReloadPlan:
    """Compare two configurations key by key and decide what a reload applies now.

    :param live_sections: sections of :data:`RESTART_ONLY` that a running part applies live after all
        (the daemon's ``reload_hooks``, such as ``alerts`` for the alert service).
    """
    restart_only = tuple(prefix for prefix in RESTART_ONLY if prefix not in set(live_sections))
    before, after = _flatten(old), _flatten(new)
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    restart = [key for key in changed if _matches(key, restart_only)]
    return ReloadPlan(
        effective=_keep_running_values(old, new, restart_only),
        live=tuple(key for key in changed if key not in restart),
        restart=tuple((key, _shown(before.get(key)), _shown(after.get(key))) for key in restart),
    )


class _Signals:
    """SIGTERM, SIGINT and SIGHUP delivered to a queue, in the order they arrived."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[signal.Signals] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def install(self) -> None:
        for signum in _SIGNALS:
            self._loop.add_signal_handler(signum, self.queue.put_nowait, signum)

    def remove(self) -> None:
        for signum in _SIGNALS:
            self._loop.remove_signal_handler(signum)


async def _reload(daemon: Daemon, config_path: Path | str | None, notifier: SystemdNotifier, verbose: bool) -> None:
    notifier.reloading()
    logger.info("Received SIGHUP: reloading the configuration")
    try:
        new = await asyncio.to_thread(load_settings, config_path)
    except ConfigError as exc:
        daemon.reloads["failed"] += 1
        logger.error(
            "Configuration reload rejected, so the running configuration stays: %d problems", len(exc.problems)
        )
        for line in exc.problems:
            logger.error("Invalid configuration: %s", line)
        notifier.ready("running; the last reload was rejected (invalid configuration)")
        return
    previous_levels = list(daemon.settings.log.levels)
    plan = plan_reload(daemon.settings, new, live_sections=daemon.reload_hooks)
    for key, old_value, new_value in plan.restart:
        logger.warning(
            "Configuration key %s changed from %s to %s; it takes effect at the next restart", key, old_value, new_value
        )
    try:
        await daemon.reload(plan.effective)
    except Exception:
        daemon.reloads["failed"] += 1
        logger.exception("Applying the reloaded configuration failed; the running configuration stays")
        notifier.ready("running; the last reload failed")
        return
    apply_log_levels(plan.effective.log, verbose=verbose, previous=previous_levels)
    logger.info(
        "Configuration reloaded: %d keys applied (%s), %d waiting for a restart",
        len(plan.live), ", ".join(plan.live) or "none", len(plan.restart),
    )  # fmt: skip
    notifier.ready(daemon.status_line())


async def _serve(
    daemon: Daemon, signals: _Signals, config_path: Path | str | None, notifier: SystemdNotifier, verbose: bool
) -> str:
    """Handle signals until SIGTERM or SIGINT arrives; return that signal's name."""
    while True:
        signum = await signals.queue.get()
        if signum == signal.SIGHUP:
            await _reload(daemon, config_path, notifier, verbose)
            continue
        return signum.name


async def _close(daemon: Daemon, reason: str) -> bool:
    """Close the daemon within :data:`SHUTDOWN_TIMEOUT_S`; return False when the bound was hit."""
    try:
        async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
            await daemon.close()
    except TimeoutError:
        logger.error("Shutdown (%s) did not finish within %.0f s", reason, SHUTDOWN_TIMEOUT_S)
        return False
    return True


async def run_service(
    settings: Settings,
    *,
    config_path: Path | str | None,
    verbose: bool = False,
    notifier: SystemdNotifier | None = None,
) -> bool:
    """Run the daemon until SIGTERM or SIGINT; return False when its shutdown overran its bound.

    :param config_path: the file SIGHUP rereads (None: ``$WHALED_CONFIG`` or the environment only).
    :raises WhaledError: the daemon could not start (for example, another whaled has locked the database).
    """
    notifier = notifier or SystemdNotifier.from_environment()
    signals = _Signals()
    signals.install()
    daemon = Daemon(settings)
    watchdog: Watchdog | None = None
    try:
        try:
            await daemon.start()
        except BaseException:
            notifier.stopping("startup failed")
            raise
        interval_s = watchdog_interval_s()
        if interval_s is not None:
            watchdog = Watchdog(notifier, interval_s)
            watchdog.start()
        notifier.ready(daemon.status_line())
        reason = "error"
        try:
            reason = await _serve(daemon, signals, config_path, notifier, verbose)
            logger.info("Received %s: shutting down", reason)
        finally:
            # Signals that arrive from here on stay queued: the shutdown is already under way.
            notifier.stopping(f"stopping ({reason})")
            closed = await _close(daemon, reason)
        return closed
    finally:
        if watchdog is not None:
            await watchdog.close()
        signals.remove()
        notifier.close()
