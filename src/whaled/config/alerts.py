"""The configuration of alerts: SMTP, alert rules, pacing and delivery retries."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from whaled.config._base import _DAY_S, Secret, _FieldProblem, _raise_problems, _Section, is_loopback_host

__all__ = [
    "AlertsSettings",
    "FirstEntryRule",
    "MarketResolvedRule",
    "NewMarketRule",
    "PriceMoveRule",
    "QuietHours",
    "SmtpSettings",
    "SystemHealthRule",
    "WhaleTradeRule",
]


class SmtpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    username: str | None = None
    password: Secret = None
    sender: str = "whaled <whaled@localhost>"
    tls: Literal["auto", "implicit", "starttls", "none"] = "auto"
    connect_timeout_s: float = Field(10.0, gt=0, le=600)
    command_timeout_s: float = Field(30.0, gt=0, le=600)
    validate_certs: bool = True
    # The name sent with EHLO; None means the domain of ``sender``, so that no DNS lookup is needed.
    helo_name: str | None = None

    @property
    def tls_mode(self) -> Literal["implicit", "starttls", "opportunistic", "none"]:
        """The TLS mode in force: ``auto`` follows the port (465 implicit, 587 STARTTLS).

        On any other port ``auto`` is ``opportunistic``: STARTTLS when the server offers it, plain otherwise.
        """
        if self.tls != "auto":
            return self.tls
        return {465: "implicit", 587: "starttls"}.get(self.port, "opportunistic")  # type: ignore[return-value]

    @model_validator(mode="after")
    def _tls_matches_port(self) -> SmtpSettings:
        expected = {465: "implicit", 587: "starttls"}.get(self.port)
        if expected is not None and self.tls not in ("auto", expected):
            message = (
                f"tls = {self.tls!r} contradicts port {self.port}, which uses {expected}; "
                f"set tls to 'auto' or {expected!r}, or change the port"
            )
            _raise_problems([_FieldProblem("tls", message)])
        clear = self.tls_mode in ("none", "opportunistic")
        if self.password is not None and clear and not is_loopback_host(self.host):
            message = (
                f"the SMTP password would cross the network to {self.host!r} without TLS (tls mode "
                f"{self.tls_mode!r}); set tls to 'starttls' or 'implicit'"
            )
            _raise_problems([_FieldProblem("tls", message)])
        return self


_RULE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


class WhaleTradeRule(_Section):
    """Alert on a whale trade at or above an amount, optionally only on some markets or wallet labels."""

    name: str = "whale_trade"
    # None means ``whales.whale_trade_usd``.
    min_notional_usd: Decimal | None = Field(None, gt=0)
    # Empty means every market (child or root market id) and every wallet label.
    market_ids: tuple[int, ...] = ()
    wallet_labels: tuple[str, ...] = ()
    cooldown_s: float = Field(3600.0, ge=0, le=30 * _DAY_S)
    # Inside the cooldown, a trade at least this many times the largest one alerted escalates.
    escalation_factor: Decimal = Field(Decimal("2"), ge=1)

    @field_validator("name")
    @classmethod
    def _rule_name(cls, value: str) -> str:
        if not value or not set(value) <= _RULE_NAME_CHARS:
            raise ValueError("must be lower-case letters, digits and underscores, such as 'big_trades'")
        return value


class FirstEntryRule(_Section):
    """Alert when a tracked wallet buys into a market it has never traded before."""

    enabled: bool = True
    cooldown_s: float = Field(3600.0, ge=0, le=30 * _DAY_S)


class PriceMoveRule(_Section):
    """Alert when the yes price of a market with a tracked wallet's position moves within a window.

    ``unit = "points"`` measures the move in percentage points of probability (0.40 to 0.50 is 10);
    ``"relative"`` measures it against the price at the start of the window (0.40 to 0.50 is 25).
    """

    enabled: bool = True
    min_change_pct: Decimal = Field(Decimal("10"), gt=0)
    unit: Literal["points", "relative"] = "points"
    window_s: float = Field(3600.0, gt=0, le=7 * _DAY_S)
    cooldown_s: float = Field(3600.0, ge=0, le=30 * _DAY_S)


class NewMarketRule(_Section):
    """Alert on every market seen for the first time. Off by default: the first sync finds hundreds."""

    enabled: bool = False
    cooldown_s: float = Field(0.0, ge=0, le=30 * _DAY_S)


class MarketResolvedRule(_Section):
    """Alert when a market resolves while tracked wallets hold positions in it."""

    enabled: bool = True
    cooldown_s: float = Field(0.0, ge=0, le=30 * _DAY_S)


class SystemHealthRule(_Section):
    """Alert when the stall alarm reports a health problem (a stale job, a paused governor, a stuck outbox
    or workflow, an unwritable database) and again when it clears."""

    enabled: bool = True


class QuietHours(_Section):
    """A daily span without emails (``"HH:MM"``, local to ``timezone``); held alerts go out after it."""

    start: str
    end: str
    timezone: str = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        hours, _, minutes = value.partition(":")
        if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
            raise ValueError("must be a time of day as HH:MM, such as '22:30'")
        return f"{int(hours):02d}:{int(minutes):02d}"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone name, such as 'UTC' or 'Europe/Berlin'") from None
        return value


class AlertsSettings(_Section):
    enabled: bool = True
    recipients: tuple[str, ...] = ()
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: Secret = None

    # Rules. Trades older than max_trade_age_s when evaluated (a backfill) raise no alert.
    whale_trades: tuple[WhaleTradeRule, ...] = (WhaleTradeRule(),)
    first_entry: FirstEntryRule = FirstEntryRule()
    price_move: PriceMoveRule = PriceMoveRule()
    new_market: NewMarketRule = NewMarketRule()
    market_resolved: MarketResolvedRule = MarketResolvedRule()
    system_health: SystemHealthRule = SystemHealthRule()
    max_trade_age_s: float = Field(3600.0, gt=0, le=30 * _DAY_S)

    # Email pacing per recipient: after digest_threshold alerts within digest_window_s, further alerts are
    # collected into one digest per window; max_emails_per_hour caps every email, digests included.
    digest_threshold: int = Field(5, ge=1)
    digest_window_s: float = Field(900.0, gt=0, le=_DAY_S)
    max_emails_per_hour: int = Field(12, ge=1)
    quiet_hours: QuietHours | None = None

    # Delivery retries (email before the server accepted the message, webhooks): exponential backoff
    # from retry_base_s up to retry_max_s, then the delivery is marked failed after max_attempts.
    retry_base_s: float = Field(5.0, gt=0, le=3600)
    retry_max_s: float = Field(900.0, gt=0, le=_DAY_S)
    max_attempts: int = Field(10, ge=1, le=100)
    webhook_timeout_s: float = Field(10.0, gt=0, le=600)

    # Workflows: finished runs older than the retention are pruned by the cleanup job.
    workflow_retention_days: int = Field(30, ge=1, le=3650)
    max_concurrent_workflows: int = Field(16, ge=1, le=1000)
    # How often the service looks for work written by another process (``whaled workflows retry``).
    poll_interval_s: float = Field(5.0, gt=0, le=3600)
    # On shutdown, in-flight steps get this long to finish before they are cancelled.
    shutdown_grace_s: float = Field(10.0, ge=0, le=600)

    @field_validator("recipients")
    @classmethod
    def _email_addresses(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if value.count("@") != 1 or any(char.isspace() for char in value):
                raise ValueError(f"{value!r} is not an email address such as 'ops@example.com'")
        return values

    @field_validator("webhook_urls")
    @classmethod
    def _webhook_urls(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if not value.startswith(("http://", "https://")):
                raise ValueError(f"webhook URL {value!r} must start with http:// or https://")
        return values

    @model_validator(mode="after")
    def _fields_fit(self) -> AlertsSettings:
        problems = _rule_name_problems(self.whale_trades)
        if self.retry_max_s < self.retry_base_s:
            message = f"must be at least retry_base_s ({self.retry_base_s})"
            problems.append(_FieldProblem("retry_max_s", message, self.retry_max_s))
        if self.webhook_urls and self.webhook_secret is None:
            message = (
                "is required because webhook_urls is set: it signs each POST (X-Whaled-Signature); set "
                "WHALED_ALERTS__WEBHOOK_SECRET or the webhook_secret credential"
            )
            problems.append(_FieldProblem("webhook_secret", message))
        _raise_problems(problems)
        return self


_FIXED_RULE_NAMES = ("first_entry", "market_resolved", "new_market", "price_move", "system_health")


def _rule_name_problems(rules: Sequence[WhaleTradeRule]) -> list[_FieldProblem]:
    problems = []
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        key = f"whale_trades.{index}.name"
        if rule.name in _FIXED_RULE_NAMES:
            message = f"rule name {rule.name!r} is reserved ({', '.join(_FIXED_RULE_NAMES)}); choose another name"
            problems.append(_FieldProblem(key, message))
        elif rule.name in seen:
            message = f"rule name {rule.name!r} is used twice; give each rule its own name"
            problems.append(_FieldProblem(key, message))
        seen.add(rule.name)
    return problems
