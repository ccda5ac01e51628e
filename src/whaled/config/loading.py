"""Loading the configuration: the ``Settings`` model, its sources, and errors that name each bad key.

Precedence, highest first: environment variables (``WHALED_OPINION__API_KEY``; nested keys joined with
``__``), secret files in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential``), the TOML file, defaults.
Every plain-number field carries its unit in its name (``timeout_s``, ``retention_days``).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from whaled.config._base import (
    _CREDENTIAL_FILES,
    _FIELD_PROBLEMS,
    _NO_VALUE,
    _SECRET_NAME_PARTS,
    CONFIG_ENV_VAR,
    _FieldProblem,
    _raise_problems,
)
from whaled.config.alerts import AlertsSettings, SmtpSettings
from whaled.config.sections import (
    DiscoverySettings,
    GovernorSettings,
    JobsSettings,
    LogSettings,
    MonitorSettings,
    OpinionSettings,
    StoreSettings,
    WalletEntry,
    WebSettings,
    WhaleSettings,
)
from whaled.errors import ConfigError

__all__ = [
    "Settings",
    "load_settings",
]


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
