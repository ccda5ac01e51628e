"""whaled's configuration: one pydantic-settings model read from a TOML file and ``WHALED_*`` variables.

Precedence, highest first: environment variables (``WHALED_OPINION__API_KEY``; nested keys joined with
``__``), secret files in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential``), the TOML file, defaults.
Every plain-number field carries its unit in its name (``timeout_s``, ``retention_days``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from whaled.errors import ConfigError

__all__ = [
    "CONFIG_ENV_VAR",
    "EXIT_CONFIG",
    "AlertsSettings",
    "DiscoverySettings",
    "FirstEntryRule",
    "GovernorSettings",
    "JobSettings",
    "JobsSettings",
    "LogSettings",
    "MarketResolvedRule",
    "MonitorSettings",
    "NewMarketRule",
    "OpinionSettings",
    "PriceMoveRule",
    "QuietHours",
    "Settings",
    "SmtpSettings",
    "StoreSettings",
    "SystemHealthRule",
    "WalletEntry",
    "WebSettings",
    "WhaleSettings",
    "WhaleTradeRule",
    "is_loopback_host",
    "load_settings",
]

CONFIG_ENV_VAR = "WHALED_CONFIG"
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h; the systemd unit does not restart on it.

# Secrets that may be given as files named after them in $CREDENTIALS_DIRECTORY.
_CREDENTIAL_FILES = {
    "opinion_api_key": ("opinion", "api_key"),
    "smtp_password": ("smtp", "password"),
    "web_access_token": ("web", "access_token"),
    "webhook_secret": ("alerts", "webhook_secret"),
}
# A key whose name contains one of these (case-insensitive) never has its value shown in an error.
_SECRET_NAME_PARTS = ("key", "secret", "token", "password")
_DAY_S = 86_400


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _empty_secret_is_unset(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


Secret = Annotated[SecretStr | None, BeforeValidator(_empty_secret_is_unset)]


def _lower_address(value: str) -> str:
    value = value.strip()
    if len(value) != 42 or not value.startswith("0x") or not _is_hex(value[2:]):
        raise ValueError("must be a 0x-prefixed 40-digit hex wallet address")
    return value.lower()


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdefABCDEF" for char in text)


WalletAddress = Annotated[str, AfterValidator(_lower_address)]


class _Section(BaseModel):
    # allow_inf_nan=False rejects inf and nan (TOML literals, or strings such as "inf") in every float and Decimal.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_FIELD_PROBLEMS = "whaled_field_problems"
_NO_VALUE = object()


@dataclass(frozen=True, slots=True)
class _FieldProblem:
    """A problem found by a cross-field validator; ``key`` is dotted and relative to the validated model."""

    key: str
    message: str
    value: object = _NO_VALUE


def _raise_problems(problems: Sequence[_FieldProblem]) -> None:
    """Raise the problems as one pydantic error that :func:`_describe_errors` expands to one line per key."""
    if problems:
        summary = "; ".join(f"{problem.key}: {problem.message}" for problem in problems)
        raise PydanticCustomError(_FIELD_PROBLEMS, "{summary}", {"summary": summary, "problems": tuple(problems)})


class OpinionSettings(_Section):
    base_url: str = "https://openapi.opinion.trade/openapi"
    leaderboard_url: str = "https://proxy.opinion.trade:8443/api/bsc/api"
    api_key: Secret = None
    chain_id: str = "56"
    connect_timeout_s: float = Field(5.0, gt=0, le=120)
    read_timeout_s: float = Field(15.0, gt=0, le=600)
    total_timeout_s: float = Field(30.0, gt=0, le=900)
    page_limit: int = Field(20, ge=1, le=20)
    max_pages: int = Field(50, ge=1, le=10_000)

    @field_validator("base_url", "leaderboard_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _timeouts_fit(self) -> OpinionSettings:
        if self.total_timeout_s < max(self.connect_timeout_s, self.read_timeout_s):
            message = (
                f"must be at least connect_timeout_s ({self.connect_timeout_s}) "
                f"and read_timeout_s ({self.read_timeout_s})"
            )
            _raise_problems([_FieldProblem("total_timeout_s", message, self.total_timeout_s)])
        return self


class GovernorSettings(_Section):
    """The API governor: pacing, retries and the failure pause for every request to Opinion.

    Opinion returns HTTP 429 above 15 requests/s per API key. A token bucket sends at most
    ``burst + rate_per_s * T`` requests in any span of ``T`` seconds, so the defaults (12/s, burst 3)
    keep every one-second span at or under 15 requests.

    - ``rate_per_s`` (requests/s, default 12): tokens added to the bucket per second.
    - ``burst`` (requests, default 3): bucket size: the max number of requests sent back to back after an idle spell.
    - ``max_in_flight`` (requests, default 8): the max number of requests awaiting a response at once.
    - ``deadline_s`` (s, default 120): how long a request may wait in the queue, counted from the call;
      a request still waiting then fails with ``GovernorDeadlineError`` and is never sent.
    - ``max_tries`` (attempts, default 5): attempts per request, the first one included.
    - ``max_retry_time_s`` (s, default 60): no retry starts later than this after the first attempt.
    - ``retry_base_s`` (s, default 0.5) and ``retry_max_delay_s`` (s, default 30): retry ``n`` waits a
      random time in ``[0, min(retry_base_s * 2**(n-1), retry_max_delay_s)]`` (full jitter).
    - ``retry_after_max_s`` (s, default 300): the longest pause a ``Retry-After`` header may impose.
    - ``failure_threshold`` (failures, default 10): consecutive transient failures that pause the governor.
    - ``pause_s`` (s, default 30): the length of that pause; then one probe request decides whether to resume.
    """

    rate_per_s: float = Field(12.0, gt=0, le=15)
    burst: int = Field(3, ge=1, le=100)
    max_in_flight: int = Field(8, ge=1, le=100)
    deadline_s: float = Field(120.0, gt=0, le=3600)
    max_tries: int = Field(5, ge=1, le=20)
    max_retry_time_s: float = Field(60.0, gt=0, le=3600)
    retry_base_s: float = Field(0.5, gt=0, le=60)
    retry_max_delay_s: float = Field(30.0, gt=0, le=600)
    retry_after_max_s: float = Field(300.0, gt=0, le=3600)
    failure_threshold: int = Field(10, ge=1)
    pause_s: float = Field(30.0, gt=0, le=3600)


class WalletEntry(_Section):
    address: WalletAddress
    label: str = ""


class DiscoverySettings(_Section):
    enabled: bool = False
    top_n: int = Field(25, ge=1, le=100)
    data_types: tuple[Literal["volume", "profit"], ...] = ("volume", "profit")
    periods_days: tuple[Literal[1, 7, 30], ...] = (1, 7, 30)
    refresh_h: float = Field(24.0, ge=1, le=30 * 24)
    max_wallets: int = Field(100, ge=1, le=1000)


class WhaleSettings(_Section):
    whale_trade_usd: Decimal = Field(Decimal("5000"), gt=0)
    whale_volume_24h_usd: Decimal = Field(Decimal("25000"), gt=0)
    whale_volume_30d_usd: Decimal = Field(Decimal("250000"), gt=0)
    market_price_change: Decimal = Field(Decimal("0.02"), ge=0, le=1)
    market_volume_change_pct: Decimal = Field(Decimal("5"), ge=0)
    price_lookups_max: int = Field(300, ge=0)
    resolved_lookback_pages: int = Field(3, ge=0, le=100)


class JobSettings(_Section):
    """One job's schedule. Interval jobs take only ``interval_s``; the daily job only ``hour``/``minute`` (UTC)."""

    enabled: bool = True
    interval_s: float | None = Field(None, gt=0, le=7 * _DAY_S)
    hour: int | None = Field(None, ge=0, le=23)
    minute: int | None = Field(None, ge=0, le=59)
    timeout_s: float = Field(..., gt=0, le=_DAY_S)
    misfire_grace_s: float = Field(..., gt=0, le=_DAY_S)


_INTERVAL_JOBS = ("sync_markets", "sync_whale_trades", "compute_whale_stats")
_DAILY_JOBS = ("cleanup_old_activity",)
_JOB_DEFAULTS: dict[str, dict[str, Any]] = {
    "sync_markets": {"interval_s": 300, "timeout_s": 240, "misfire_grace_s": 120},
    "sync_whale_trades": {"interval_s": 60, "timeout_s": 50, "misfire_grace_s": 30},
    "compute_whale_stats": {"interval_s": 3600, "timeout_s": 1800, "misfire_grace_s": 600},
    "cleanup_old_activity": {"hour": 3, "minute": 0, "timeout_s": 1800, "misfire_grace_s": 3600},
}


class JobsSettings(_Section):
    sync_markets: JobSettings = JobSettings(**_JOB_DEFAULTS["sync_markets"])
    sync_whale_trades: JobSettings = JobSettings(**_JOB_DEFAULTS["sync_whale_trades"])
    compute_whale_stats: JobSettings = JobSettings(**_JOB_DEFAULTS["compute_whale_stats"])
    cleanup_old_activity: JobSettings = JobSettings(**_JOB_DEFAULTS["cleanup_old_activity"])
    run_at_startup: bool = False

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        # A table that sets only ``interval_s`` keeps the other keys of that job's defaults.
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, defaults in _JOB_DEFAULTS.items():
            given = data.get(name)
            if isinstance(given, dict):
                merged[name] = {**defaults, **given}
        return merged

    @model_validator(mode="after")
    def _triggers_fit(self) -> JobsSettings:
        problems: list[_FieldProblem] = []
        for name in _INTERVAL_JOBS:
            problems += _interval_job_problems(name, getattr(self, name))
        for name in _DAILY_JOBS:
            problems += _daily_job_problems(name, getattr(self, name))
        _raise_problems(problems)
        return self


def _interval_job_problems(name: str, job: JobSettings) -> list[_FieldProblem]:
    problems = [
        _FieldProblem(
            f"{name}.{key}",
            f"{name} runs every interval_s seconds and takes no {key}; remove it and set interval_s instead",
            value,
        )
        for key, value in (("hour", job.hour), ("minute", job.minute))
        if value is not None
    ]
    if job.interval_s is None:
        problems.append(_FieldProblem(f"{name}.interval_s", "is required: the seconds between runs"))
    elif job.timeout_s >= job.interval_s:
        message = f"must be shorter than interval_s ({job.interval_s}) so that a hung run cannot block the next one"
        problems.append(_FieldProblem(f"{name}.timeout_s", message, job.timeout_s))
    return problems


def _daily_job_problems(name: str, job: JobSettings) -> list[_FieldProblem]:
    problems = []
    if job.interval_s is not None:
        message = (
            f"{name} runs once a day at hour:minute UTC and takes no interval_s; remove it and set hour and minute"
        )
        problems.append(_FieldProblem(f"{name}.interval_s", message, job.interval_s))
    for key, value in (("hour", job.hour), ("minute", job.minute)):
        if value is None:
            problems.append(_FieldProblem(f"{name}.{key}", "is required: the UTC time of day of the daily run"))
    if job.timeout_s >= _DAY_S:
        message = f"must be shorter than a day ({_DAY_S} s) so that a hung run cannot block the next one"
        problems.append(_FieldProblem(f"{name}.timeout_s", message, job.timeout_s))
    return problems


class StoreSettings(_Section):
    path: Path = Path("/var/lib/whaled/whaled.db")
    busy_timeout_ms: int = Field(5000, ge=0, le=600_000)
    retention_days: int = Field(90, ge=1, le=3650)
    readers: int = Field(4, ge=1, le=32)


class WebSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8420, ge=0, le=65535)
    access_token: Secret = None
    cors_origins: tuple[str, ...] = ()
    # The websocket feed (/ws); docs/feed.md describes each limit and the close code it leads to.
    heartbeat_s: float = Field(30.0, gt=0, le=3600)
    send_queue_max: int = Field(1000, ge=10, le=1_000_000)
    send_timeout_s: float = Field(10.0, gt=0, le=600)
    max_lag_events: int = Field(100_000, ge=1)
    max_message_bytes: int = Field(65_536, ge=1024, le=16 * 1024 * 1024)
    max_client_errors: int = Field(20, ge=1, le=100_000)
    max_clients: int = Field(10_000, ge=1)
    close_timeout_s: float = Field(2.0, gt=0, le=60)
    shutdown_timeout_s: float = Field(5.0, gt=0, le=600)

    @model_validator(mode="after")
    def _token_off_loopback(self) -> WebSettings:
        if self.enabled and not is_loopback_host(self.host) and self.access_token is None:
            message = (
                f"an access_token is required because host {self.host!r} is not a loopback address; set "
                "WHALED_WEB__ACCESS_TOKEN or the web_access_token credential, or bind to 127.0.0.1"
            )
            _raise_problems([_FieldProblem("access_token", message)])
        return self


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


_FIXED_RULE_NAMES = ("first_entry", "market_resolved", "new_market", "price_move")


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


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    levels: dict[str, Literal["DEBUG", "INFO", "WARNING", "ERROR"]] = {}


class MonitorSettings(_Section):
    """The health conditions behind ``/healthz``, ``/metrics``, the dashboard and the stall alarm.

    - ``check_interval_s`` (s, default 30): how often the stall alarm evaluates the conditions.
    - ``job_stale_factor`` (default 3): a job is stale when its last success is older than this many
      intervals; the daily cleanup job counts as an interval of one day.
    - ``startup_grace_s`` (s, default 300): after a start, a job is stale only once this grace plus its
      bound have passed without a success, so that a fresh daemon is not unhealthy.
    - ``governor_paused_max_s`` (s, default 600): a governor paused (or probing) for longer is a problem.
      The default is above the longest ``Retry-After`` pause that ``governor.retry_after_max_s`` allows.
    - ``outbox_stuck_s`` (s, default 900): a pending delivery due for longer than this is a stuck outbox.
    - ``workflow_stuck_s`` (s, default 1800): a pending or running workflow without progress for longer
      is stuck.
    - ``db_write_timeout_s`` (s, default 10): the write probe must commit within this time, or the
      database counts as not writable.
    - ``price_move_window_s`` (s, default 86400): the window of the dashboard's notable price moves.
    """

    check_interval_s: float = Field(30.0, gt=0, le=3600)
    job_stale_factor: float = Field(3.0, ge=1, le=1000)
    startup_grace_s: float = Field(300.0, ge=0, le=_DAY_S)
    governor_paused_max_s: float = Field(600.0, gt=0, le=_DAY_S)
    outbox_stuck_s: float = Field(900.0, gt=0, le=7 * _DAY_S)
    workflow_stuck_s: float = Field(1800.0, gt=0, le=7 * _DAY_S)
    db_write_timeout_s: float = Field(10.0, gt=0, le=600)
    price_move_window_s: float = Field(86_400.0, gt=0, le=30 * 86_400)


class Settings(BaseSettings):
    """The whole configuration. Sections mirror the TOML tables of ``config.example.toml``."""

    model_config = SettingsConfigDict(
        env_prefix="WHALED_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    opinion: OpinionSettings = Field(default_factory=OpinionSettings)
    governor: GovernorSettings = Field(default_factory=GovernorSettings)
    wallets: tuple[WalletEntry, ...] = ()
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    whales: WhaleSettings = Field(default_factory=WhaleSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)

    @field_validator("wallets")
    @classmethod
    def _unique_wallets(cls, wallets: tuple[WalletEntry, ...]) -> tuple[WalletEntry, ...]:
        seen: set[str] = set()
        problems = []
        for index, entry in enumerate(wallets):
            if entry.address in seen:
                message = f"wallet {entry.address} is listed twice; remove one of the entries"
                problems.append(_FieldProblem(f"{index}.address", message))
            seen.add(entry.address)
        _raise_problems(problems)
        return wallets

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs, so it must rank below the environment and credentials.
        return env_settings, _CredentialsSource(settings_cls), init_settings


class _CredentialsSource(PydanticBaseSettingsSource):
    """Secrets from ``$CREDENTIALS_DIRECTORY/<name>``, as systemd's ``LoadCredential=`` provides them."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return {}
        found: dict[str, Any] = {}
        for file_name, (section, key) in _CREDENTIAL_FILES.items():
            secret = _read_credential(Path(directory, file_name), f"{section}.{key}")
            # An empty credential file means "not set"; as an empty token it would switch authentication off.
            if secret:
                found.setdefault(section, {})[key] = secret
        return found


def _read_credential(path: Path, key: str) -> str | None:
    """Read one credential file, or return None when it does not exist.

    :raises ConfigError: when the file exists but cannot be read or is not UTF-8; the message never
        contains the file's content.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            [
                f"{key}: credential file {str(path)!r} cannot be read ({exc.strerror}); "
                "it must be a regular file that whaled's user can read"
            ]
        ) from None
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(
            [f"{key}: credential file {str(path)!r} is not UTF-8 text; write the secret as UTF-8"]
        ) from None


def load_settings(path: Path | str | None = None, *, environ: dict[str, str] | None = None) -> Settings:
    """Load the configuration from ``path`` (or ``$WHALED_CONFIG``) and the environment.

    :param path: the TOML file; when neither it nor ``$WHALED_CONFIG`` is set, only the environment and
        defaults apply. A file that is named but missing is an error, never silent defaults, and so is an
        empty string (an empty ``$WHALED_CONFIG`` counts as unset).
    :raises ConfigError: with one line per bad key: the key, the value received and what is allowed.
    """
    if isinstance(path, str) and not path.strip():
        raise ConfigError(["config path is empty; pass --config PATH, or leave --config out"])
    env = os.environ if environ is None else environ
    named = path if path is not None else env.get(CONFIG_ENV_VAR)
    data = _read_toml(Path(named)) if named else {}
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe_errors(exc)) from None
    except SettingsError as exc:
        raise ConfigError([_describe_settings_error(exc)]) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError([f"config file {str(path)!r} not found; check --config or ${CONFIG_ENV_VAR}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {str(path)!r} is not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise ConfigError([f"config file {str(path)!r} cannot be read: {exc.strerror}"]) from None


def _describe_errors(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        if error["type"] == _FIELD_PROBLEMS:
            lines += [_describe_problem(loc, problem) for problem in error["ctx"]["problems"]]
        elif error["type"] == "extra_forbidden":
            # The value of a misspelt key is never shown: the key may be a misspelt secret.
            lines.append(f"{_dotted(loc)}: unknown key; check the spelling against config.example.toml")
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{_dotted(loc)}: {message} (received {_redact(loc, error.get('input'))})")
    return lines


def _describe_problem(loc: list[str], problem: _FieldProblem) -> str:
    key = [*loc, *problem.key.split(".")]
    line = f"{_dotted(key)}: {problem.message}"
    if problem.value is not _NO_VALUE:
        line += f" (received {_redact(key, problem.value)})"
    return line


def _dotted(loc: list[str]) -> str:
    return ".".join(loc) or "(top level)"


def _redact(loc: list[str], value: Any) -> str:
    """Render ``value`` for an error line, with ``'***'`` for any key whose name marks it as a secret."""
    if any(part in name.lower() for name in loc for part in _SECRET_NAME_PARTS):
        return "'***'"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_redact([*loc, str(key)], item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_redact(loc, item) for item in value) + "]"
    return repr(value)


_ENV_PARSE_ERROR = re.compile(r'error parsing value for field "(?P<field>\w+)" from source "EnvSettingsSource"')


def _describe_settings_error(exc: SettingsError) -> str:
    """Describe a ``WHALED_*`` variable that pydantic-settings could not parse, without its value."""
    match = _ENV_PARSE_ERROR.search(str(exc))
    if match is None:
        return str(exc)
    field = match["field"]
    prefix = f"WHALED_{field}".upper()
    names = sorted(name for name in os.environ if name.upper() == prefix or name.upper().startswith(prefix + "__"))
    culprit = f"environment variable {names[0]}" if len(names) == 1 else f"one of {', '.join(names) or prefix}"
    return (
        f"{field}: {culprit} is not valid JSON; a table or list set in the environment must be JSON, "
        f"such as WHALED_ALERTS__RECIPIENTS='[\"ops@example.com\"]', or set single keys as {prefix}__<KEY>"
    )
