from __future__ import annotations

import re
import subprocess
import sys
import typing
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import annotated_types
import pytest
from pydantic import BaseModel

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
    assert "jobs.sync_whale_trades.timeout_s: must be shorter than interval_s (60.0)" in "\n".join(problems)


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
    with pytest.raises(ConfigError, match=r"web\.access_token: an access_token is required"):
        load_settings(None)


def problems_of(path: Path | None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    return caught.value.problems


UNKNOWN_KEY = "unknown key; check the spelling against config.example.toml"


def test_unknown_key_hides_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, f'[opinion]\napikey = "{FAKE_KEY}"\n')
    monkeypatch.setenv("WHALED_ALERTS__WEBHOOKSECRET", FAKE_KEY)
    monkeypatch.setenv("WHALED_SMTP__PASSWORT", FAKE_KEY)
    problems = problems_of(path)
    assert f"opinion.apikey: {UNKNOWN_KEY}" in problems
    assert f"alerts.webhooksecret: {UNKNOWN_KEY}" in problems
    assert f"smtp.passwort: {UNKNOWN_KEY}" in problems
    assert FAKE_KEY not in "\n".join(problems)


def test_unknown_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHALED_OPINION__APIKEY", FAKE_KEY)
    assert problems_of(None) == [f"opinion.apikey: {UNKNOWN_KEY}"]


def test_secret_named_keys_redacted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[web]\naccess_token = ["{FAKE_KEY}"]\n[log.levels]\nMy_Token_Log = "{FAKE_KEY}"\n'
        f'"whaled.api_KEY" = "{FAKE_KEY}"\nwhaled = "{FAKE_KEY}"\n',
    )
    problems = problems_of(path)
    joined = "\n".join(problems)
    assert "web.access_token: Input should be a valid string (received '***')" in problems
    assert any(p.startswith("log.levels.My_Token_Log: ") and p.endswith("(received '***')") for p in problems)
    assert any(p.startswith("log.levels.whaled.api_KEY: ") and p.endswith("(received '***')") for p in problems)
    # A key without a secret-like name still shows what was received.
    assert any(p.startswith("log.levels.whaled: ") and p.endswith(f"(received '{FAKE_KEY}')") for p in problems)
    assert joined.count(FAKE_KEY) == 1


def test_cross_field_errors_name_full_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHALED_SMTP__PASSWORD", FAKE_KEY)
    path = write(
        tmp_path,
        '[web]\nhost = "0.0.0.0"\n[opinion]\ntotal_timeout_s = 1\n[smtp]\nhost = "mail.example.com"\n'
        '[alerts]\nwebhook_urls = ["https://hooks.example.com/a"]\nretry_base_s = 10\nretry_max_s = 5\n'
        '[[alerts.whale_trades]]\nname = "a"\n[[alerts.whale_trades]]\nname = "a"\n'
        '[[alerts.whale_trades]]\nname = "price_move"\n'
        f'[[wallets]]\naddress = "{WALLET}"\n[[wallets]]\naddress = "{WALLET.upper().replace("0X", "0x")}"\n',
    )
    problems = problems_of(path)
    keys = [problem.partition(": ")[0] for problem in problems]
    assert keys == [
        "opinion.total_timeout_s",
        "wallets.1.address",
        "web.access_token",
        "smtp.tls",
        "alerts.whale_trades.1.name",
        "alerts.whale_trades.2.name",
        "alerts.retry_max_s",
        "alerts.webhook_secret",
    ]
    assert "opinion.total_timeout_s: must be at least connect_timeout_s (5.0)" in problems[0]
    assert problems[0].endswith("(received 1.0)")
    assert "(received" not in problems[2]
    assert FAKE_KEY not in "\n".join(problems)


def test_job_trigger_keys_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[jobs.sync_markets]\nhour = 3\nminute = 30\n[jobs.cleanup_old_activity]\ninterval_s = 10\n",
    )
    problems = problems_of(path)
    assert problems == [
        "jobs.sync_markets.hour: sync_markets runs every interval_s seconds and takes no hour; "
        "remove it and set interval_s instead (received 3)",
        "jobs.sync_markets.minute: sync_markets runs every interval_s seconds and takes no minute; "
        "remove it and set interval_s instead (received 30)",
        "jobs.cleanup_old_activity.interval_s: cleanup_old_activity runs once a day at hour:minute UTC and "
        "takes no interval_s; remove it and set hour and minute (received 10.0)",
    ]


def test_environment_json_error_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHALED_OPINION", "notjson")
    problems = problems_of(None)
    assert len(problems) == 1
    assert problems[0].startswith("opinion: environment variable WHALED_OPINION is not valid JSON;")


def test_nested_environment_json_error_names_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHALED_ALERTS__RECIPIENTS", f"[{FAKE_KEY}")
    problems = problems_of(None)
    assert len(problems) == 1
    assert problems[0].startswith("alerts: environment variable WHALED_ALERTS__RECIPIENTS is not valid JSON;")
    assert FAKE_KEY not in problems[0]


def test_unreadable_credential_is_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A folder where the file should be fails to read even as root, which ignores file modes; a
    # PermissionError takes the same OSError path.
    (tmp_path / "opinion_api_key").mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    problems = problems_of(None)
    assert len(problems) == 1
    assert problems[0].startswith(f"opinion.api_key: credential file '{tmp_path / 'opinion_api_key'}' cannot be read")


def test_non_utf8_credential_is_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = b"\xff\xfe" + FAKE_KEY.encode()
    (tmp_path / "smtp_password").write_bytes(secret)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    problems = problems_of(None)
    assert problems == [
        f"smtp.password: credential file '{tmp_path / 'smtp_password'}' is not UTF-8 text; write the secret as UTF-8"
    ]


def number_fields(model: type[BaseModel], table: str) -> Iterator[tuple[str, str, type]]:
    """Yield (table, key, type) for every float and Decimal field under ``model``, recursively."""
    for name, field in model.model_fields.items():
        types = set(typing.get_args(field.annotation)) | {field.annotation}
        nested = [kind for kind in nested_models(field.annotation)]
        if nested:
            yield from number_fields(nested[0], f"{table}.{name}".lstrip("."))
        for kind in (float, Decimal):
            if kind in types:
                yield table, name, kind


def nested_models(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from nested_models(argument)


NUMBER_FIELDS = list(number_fields(Settings, ""))


ARRAY_TABLES = {"alerts.whale_trades", "wallets"}


def table_header(table: str) -> str:
    return f"[[{table}]]" if table in ARRAY_TABLES else f"[{table}]"


def error_key(table: str, key: str) -> str:
    """The dotted key in an error line: an array of tables adds the index of its first entry."""
    return f"{table}.0.{key}" if table in ARRAY_TABLES else f"{table}.{key}"


@pytest.mark.parametrize("literal", ["inf", "-inf", "nan", '"inf"', '"NaN"'])
def test_non_finite_numbers_rejected(tmp_path: Path, literal: str) -> None:
    assert len(NUMBER_FIELDS) > 40
    for table, key, _kind in NUMBER_FIELDS:
        path = write(tmp_path, f"{table_header(table)}\n{key} = {literal}\n")
        problems = problems_of(path)
        assert any(p.startswith(f"{error_key(table, key)}: ") for p in problems), (table, key, problems)


def test_every_duration_has_upper_bound() -> None:
    for table, key, _kind in NUMBER_FIELDS:
        if not key.endswith(("_s", "_h", "_ms")):
            continue
        field = model_at(table).model_fields[key]
        bounds = [item for item in field.metadata if isinstance(item, annotated_types.Le | annotated_types.Lt)]
        assert bounds, f"{table}.{key} has no upper bound"


def model_at(table: str) -> type[BaseModel]:
    model: type[BaseModel] = Settings
    for name in table.split("."):
        model = next(nested_models(model.model_fields[name].annotation))
    return model


@pytest.mark.parametrize(
    ("text", "key", "limit"),
    [
        ("[jobs.sync_markets]\ninterval_s = 1e300\n", "jobs.sync_markets.interval_s", "604800"),
        ("[jobs.sync_markets]\nmisfire_grace_s = 1e300\n", "jobs.sync_markets.misfire_grace_s", "86400"),
        ("[jobs.sync_markets]\ninterval_s = 1e9\ntimeout_s = 1e6\n", "jobs.sync_markets.timeout_s", "86400"),
    ],
)
def test_job_durations_bounded(tmp_path: Path, text: str, key: str, limit: str) -> None:
    problems = problems_of(write(tmp_path, text))
    assert any(p.startswith(f"{key}: Input should be less than or equal to {limit}") for p in problems), problems


def test_empty_config_path_is_error() -> None:
    with pytest.raises(ConfigError, match="config path is empty"):
        load_settings("", environ={})


def test_empty_config_variable_is_unset() -> None:
    assert load_settings(None, environ={"WHALED_CONFIG": ""}) == Settings()


EXAMPLE = Path(__file__).parent.parent / "config.example.toml"
# A table header or a key, each possibly commented out: "[web]", "# [[wallets]]", "port = 1", "# api_key: ...".
HEADER_LINE = re.compile(r"^#?\s*\[\[?([\w.]+)\]\]?\s*$")
KEY_LINE = re.compile(r"^#?\s*\"?([\w.]+)\"?\s*[=:]")


def example_keys() -> set[str]:
    keys = set()
    table = ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if header := HEADER_LINE.match(line.strip()):
            table = header[1]
        elif key := KEY_LINE.match(line.strip()):
            keys.add(f"{table}.{key[1]}".lstrip("."))
    return keys


def setting_keys(model: type[BaseModel], table: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        nested = list(nested_models(field.annotation))
        if nested:
            yield from setting_keys(nested[0], f"{table}.{name}".lstrip("."))
        else:
            yield f"{table}.{name}".lstrip(".")


# Keys that JobSettings declares but a given job rejects, so the example leaves them out.
REJECTED_JOB_KEYS = {
    *(
        f"jobs.{job}.{key}"
        for job in ("sync_markets", "sync_whale_trades", "compute_whale_stats")
        for key in ("hour", "minute")
    ),
    "jobs.cleanup_old_activity.interval_s",
}


def test_example_lists_every_setting() -> None:
    missing = sorted(set(setting_keys(Settings, "")) - REJECTED_JOB_KEYS - example_keys())
    assert missing == []


def test_example_shows_defaults() -> None:
    assert load_settings(EXAMPLE, environ={}) == Settings()
