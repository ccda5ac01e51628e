"""How many emails one recipient gets: singles, then digests, under an hourly cap and outside quiet hours.

The first ``digest_threshold`` alerts within ``digest_window_s`` go out one email each. Past that, the
alerts wait until the oldest of them has waited a window, and go out together as one digest. Later
digests follow at most one per window. Every email, digests included, counts against
``max_emails_per_hour``. During quiet hours nothing is sent, and what waits goes
out when they end. No alert is dropped: pacing only decides when and in which email it leaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from whaled.clock import ms_to_datetime
from whaled.config import AlertsSettings, QuietHours
from whaled.notify.outbox import Delivery, SentMessage

__all__ = ["HOUR_MS", "MAX_DIGEST_ALERTS", "PacingDecision", "PacingPolicy", "quiet_until_ms"]

HOUR_MS = 3_600_000
# A digest lists at most this many alerts; the rest go into the next one.
MAX_DIGEST_ALERTS = 500


@dataclass(frozen=True, slots=True)
class PacingDecision:
    """Send ``rows`` now as one email (``single`` or ``digest``), or ``defer`` them until ``until_ms``."""

    action: Literal["single", "digest", "defer"]
    rows: tuple[Delivery, ...]
    until_ms: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PacingPolicy:
    digest_threshold: int
    digest_window_ms: int
    max_per_hour: int
    quiet_hours: QuietHours | None = None

    @classmethod
    def from_settings(cls, alerts: AlertsSettings) -> PacingPolicy:
        return cls(
            digest_threshold=alerts.digest_threshold,
            digest_window_ms=int(alerts.digest_window_s * 1000),
            max_per_hour=alerts.max_emails_per_hour,
            quiet_hours=alerts.quiet_hours,
        )

    @property
    def history_ms(self) -> int:
        """How far back :meth:`decide` needs the sent history."""
        return max(HOUR_MS, self.digest_window_ms)

    def decide(self, due: Sequence[Delivery], history: Sequence[SentMessage], now: int) -> PacingDecision:
        """Decide the next email for one recipient.

        :param due: the recipient's due rows, oldest first (not empty).
        :param history: the messages sent to the recipient within :attr:`history_ms`, oldest first.
        """
        rows = tuple(due)
        if self.quiet_hours is not None:
            quiet_end = quiet_until_ms(self.quiet_hours, now)
            if quiet_end is not None:
                return PacingDecision("defer", rows, quiet_end, "held for quiet hours")
        last_hour = [message for message in history if message.sent_ms > now - HOUR_MS]
        if len(last_hour) >= self.max_per_hour:
            until = last_hour[-self.max_per_hour].sent_ms + HOUR_MS
            return PacingDecision("defer", rows, until, f"held by the limit of {self.max_per_hour} emails per hour")
        window_start = now - self.digest_window_ms
        in_window = [message for message in history if message.sent_ms > window_start]
        remaining = self.digest_threshold - sum(message.alerts for message in in_window)
        # A backlog (alerts that already waited a window) goes out as a digest, not as a run of singles.
        waited = now >= rows[0].created_ms + self.digest_window_ms
        if remaining > 0 and (len(rows) <= remaining or not waited):
            return PacingDecision("single", rows[:1])
        return self._digest(rows, in_window, waited=waited)

    def _digest(self, rows: tuple[Delivery, ...], in_window: Sequence[SentMessage], *, waited: bool) -> PacingDecision:
        """Past the threshold: one digest per window, once the oldest waiting alert has waited a window."""
        digests = [message for message in in_window if message.alerts > 1]
        if digests:
            until = digests[-1].sent_ms + self.digest_window_ms
            return PacingDecision("defer", rows, until, "held for the next digest")
        if in_window and not waited:
            until = rows[0].created_ms + self.digest_window_ms
            return PacingDecision("defer", rows, until, "held for the first digest")
        if len(rows) == 1:
            return PacingDecision("single", rows)
        return PacingDecision("digest", rows[:MAX_DIGEST_ALERTS])


def quiet_until_ms(quiet: QuietHours, now: int) -> int | None:
    """Return when the quiet span that contains ``now`` ends (Unix ms), or None outside quiet hours."""
    zone = ZoneInfo(quiet.timezone)
    local = ms_to_datetime(now).astimezone(zone)
    start = _at(local, quiet.start)
    end = _at(local, quiet.end)
    if start == end:
        return None
    # A span whose end comes before its start crosses midnight, such as 22:00-07:00.
    crosses_midnight = end < start
    inside = (local >= start or local < end) if crosses_midnight else (start <= local < end)
    if not inside:
        return None
    if end <= local:
        end = _at(local + timedelta(days=1), quiet.end)
    return int(end.timestamp() * 1000)


def _at(day: datetime, clock_time: str) -> datetime:
    hours, minutes = (int(part) for part in clock_time.split(":"))
    return day.replace(hour=hours, minute=minutes, second=0, microsecond=0)
