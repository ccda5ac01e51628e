"""The configuration sections of the daemon itself: Opinion, governor, wallets, jobs, store, web, logs."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from whaled.config._base import (
    _DAY_S,
    Secret,
    WalletAddress,
    _FieldProblem,
    _raise_problems,
    _Section,
    is_loopback_host,
)

__all__ = [
    "DiscoverySettings",
    "GovernorSettings",
    "JobSettings",
    "JobsSettings",
    "LogSettings",
    "MonitorSettings",
    "OpinionSettings",
    "StoreSettings",
    "WalletEntry",
    "WebSettings",
    "WhaleSettings",
]


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
    - ``deadline_s`` (s, default 120): how long a request may wait in the queue, counted from the call.
      A request still waiting then fails with ``GovernorDeadlineError`` and is never sent.
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
    max_client_topics: int = Field(64, ge=1, le=10_000)
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
        # Failed token checks are not rate-limited, so a token must be too long to guess by trying.
        min_token_chars = 16
        if self.access_token is not None and len(self.access_token.get_secret_value()) < min_token_chars:
            message = (
                f"must be at least {min_token_chars} characters long; generate one with "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
            _raise_problems([_FieldProblem("access_token", message)])
        return self


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    levels: dict[str, Literal["DEBUG", "INFO", "WARNING", "ERROR"]] = Field(default_factory=dict)


class MonitorSettings(_Section):
    """The health conditions behind ``/healthz``, ``/metrics``, the dashboard and the stall alarm.

    - ``check_interval_s`` (s, default 30): how often the stall alarm evaluates the conditions.
    - ``job_stale_factor`` (default 3): a job is stale when its last success is older than this many
      intervals. The daily cleanup job counts as an interval of one day.
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
