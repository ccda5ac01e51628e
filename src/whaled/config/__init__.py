"""whaled's configuration: one pydantic-settings model (:class:`Settings`) loaded by :func:`load_settings`."""

from whaled.config._base import CONFIG_ENV_VAR, EXIT_CONFIG, is_loopback_host
from whaled.config.alerts import (
    AlertsSettings,
    FirstEntryRule,
    MarketResolvedRule,
    NewMarketRule,
    PriceMoveRule,
    QuietHours,
    SmtpSettings,
    SystemHealthRule,
    WhaleTradeRule,
)
from whaled.config.loading import Settings, load_settings
from whaled.config.sections import (
    DiscoverySettings,
    GovernorSettings,
    JobSettings,
    JobsSettings,
    LogSettings,
    MonitorSettings,
    OpinionSettings,
    StoreSettings,
    WalletEntry,
    WebSettings,
    WhaleSettings,
)

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
