"""Log record formatting for the command line: plain text for journald, or one JSON object per line.

Under systemd, stderr goes to journald, which stamps each line itself and reads a ``<N>`` syslog priority
prefix (SyslogLevelPrefix=, on by default). When ``$JOURNAL_STREAM`` names the stream's device and inode,
text lines therefore carry that prefix and no timestamp, so that ``journalctl -p warning`` works.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal, TextIO

from whaled.config import LogSettings

__all__ = ["JournalFormatter", "JsonFormatter", "apply_log_levels", "build_handler", "journal_attached"]

_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_JOURNAL_FORMAT = "%(levelname)-7s %(name)s: %(message)s"
# Third-party loggers that are too chatty at INFO; log.levels can still lower them.
_QUIET_LOGGERS = {"apscheduler": "WARNING", "aiohttp.access": "WARNING"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class JournalFormatter(logging.Formatter):
    """Text without a timestamp, each line prefixed with the record's syslog priority (``<4>`` for WARNING).

    Every line of a traceback gets the prefix too, because journald reads each line as its own entry.
    """

    def __init__(self) -> None:
        super().__init__(_JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def syslog_priority(levelno: int) -> int:
    """Map a logging level to a syslog priority: 2 critical, 3 error, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    return 6 if levelno >= logging.INFO else 7


def journal_attached(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Return True when ``stream`` is the journald stream that ``$JOURNAL_STREAM`` (``device:inode``) names."""
    env = os.environ if environ is None else environ
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        # A stream without a file descriptor (a test's capture buffer) is not the journal.
        return False
    return status.st_dev == int(device) and status.st_ino == int(inode)


def build_handler(
    kind: Literal["text", "json"], *, stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> logging.Handler:
    """Build the stderr handler: JSON lines, journald text, or timestamped text."""
    target = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(target)
    if kind == "json":
        handler.setFormatter(JsonFormatter())
    elif journal_attached(target, environ):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    return handler


def apply_log_levels(log: LogSettings, *, verbose: bool = False, previous: Iterable[str] = ()) -> None:
    """Set the root level and each subsystem's level from ``log``; ``verbose`` forces DEBUG on the root.

    :param previous: loggers that an earlier configuration set; those missing from ``log.levels`` go back
        to inheriting from their parent.
    """
    logging.getLogger().setLevel(logging.DEBUG if verbose else log.level)
    for name in previous:
        if name not in log.levels:
            logging.getLogger(name).setLevel(_QUIET_LOGGERS.get(name, logging.NOTSET))
    for name, level in {**_QUIET_LOGGERS, **log.levels}.items():
        logging.getLogger(name).setLevel(level)
