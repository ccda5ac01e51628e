from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from whaled.config import EXIT_CONFIG, Settings, load_settings
from whaled.errors import ConfigError

FAKE_KEY = "sk-live-FAKE-7c1d2e3f4a5b6c7d8e9f"
WALLET = "0x" + "ab" * 20


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "whaled.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file() -> None:
    settings = load_settings(None, environ={})
    assert settings.jobs.sync_markets.interval_s == 300
    assert settings.jobs.cleanup_old_activity.hour == 3
    assert settings.web.host == "127.0.0.1"


def test_toml_values_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
[whales]
whale_trade_usd = "12500.50"
[[wallets]]
address = "{WALLET.upper().replace("0X", "0x")}"
label = "big one"
""",
    )
    settings = load_settings(path, environ={})
    assert settings.whales.whale_trade_usd == Decimal("12500.50")
    assert settings.wallets[0].address == WALLET
    assert settings.wallets[0].label == "big one"


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[web]\nport = 9000\n")
    monkeypatch.setenv("WHALED_WEB__PORT", "9100")
    assert load_settings(path).web.port == 9100


def test_config_env_var_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[web]\nport = 9200\n")
    assert load_settings(None, environ={"WHALED_CONFIG": str(path)}).web.port == 9200


def test_missing_named_file_is_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_job_table_keeps_other_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "[jobs.sync_markets]\ninterval_s = 600\n")
    job = load_settings(path, environ={}).jobs.sync_markets
    assert job.interval_s == 600
    assert job.timeout_s == 240


def test_invalid_values_name_key_value_and_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[opinion]
connect_timeout_s = -1
[[wallets]]
address = "0xnothex"
[jobs.sync_whale_trades]
timeout_s = 90
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    problems = caught.value.problems
    assert any(p.startswith("opinion.connect_timeout_s: ") and "-1" in p and "greater than 0" in p for p in problems)
    assert any(p.startswith("wallets.0.address: ") and "'0xnothex'" in p for p in problems)
    assert any("sync_whale_trades.timeout_s (90.0) must be shorter" in p for p in problems)


def test_secret_never_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, f'[opinion]\napi_key = "{FAKE_KEY}"\nread_timeout_s = "soon"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert FAKE_KEY not in str(caught.value)


def test_credentials_directory_supplies_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "opinion_api_key").write_text(FAKE_KEY + "\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = load_settings(None)
    assert settings.opinion.api_key is not None
    assert settings.opinion.api_key.get_secret_value() == FAKE_KEY
    assert FAKE_KEY not in repr(settings)


def test_non_loopback_bind_needs_token() -> None:
    with pytest.raises(ValueError, match="access_token is required"):
        Settings(web={"host": "0.0.0.0"})


def test_unknown_key_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "[store]\nretention_dayz = 3\n")
    with pytest.raises(ConfigError, match=r"store\.retention_dayz"):
        load_settings(path, environ={})


def test_cli_exits_78_naming_key(tmp_path: Path) -> None:
    path = write(tmp_path, f'[opinion]\napi_key = "{FAKE_KEY}"\n[store]\nretention_days = 0\n')
    result = subprocess.run(
        [sys.executable, "-m", "whaled", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == EXIT_CONFIG
    assert "store.retention_days" in result.stderr
    assert "received 0" in result.stderr
    assert FAKE_KEY not in result.stderr + result.stdout


def test_example_config_is_valid() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    settings = load_settings(example, environ={})
    assert settings.jobs.sync_whale_trades.interval_s == 60


def test_empty_secret_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHALED_WEB__ACCESS_TOKEN", "  ")
    monkeypatch.setenv("WHALED_WEB__HOST", "0.0.0.0")
    with pytest.raises(ConfigError, match="access_token is required"):
        load_settings(None)
