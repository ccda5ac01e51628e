"""The systemd unit: ``systemd-analyze verify`` and ``security`` on a copy whose ExecStart is this venv's whaled.

``verify`` needs the ExecStart program to exist, so the test writes a copy of ``systemd/whaled.service`` with
``/opt/whaled/bin/whaled`` replaced by the ``whaled`` script next to this interpreter. To check by hand::

    sed "s#/opt/whaled/bin/whaled#$PWD/.venv/bin/whaled#" systemd/whaled.service > /tmp/whaled.service
    systemd-analyze verify /tmp/whaled.service
    systemd-analyze security --offline=true /tmp/whaled.service
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from whaled.config import EXIT_CONFIG

UNIT = Path(__file__).parent.parent / "systemd" / "whaled.service"
INSTALLED_PROGRAM = "/opt/whaled/bin/whaled"
# systemd-analyze security rates exposure from 0 (locked down) to 10; the unit must stay at or below this.
MAX_EXPOSURE = 1.5


def unit_directives(text: str) -> dict[str, list[str]]:
    """Return every ``Key=value`` of the unit as ``{"Section.Key": [values in order]}``."""
    directives: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        directives.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return directives


def systemd_analyze() -> str:
    """Return the path of systemd-analyze; under CI=true its absence fails the test, elsewhere it skips."""
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing; scripts/install-system-deps.sh installs it")
        pytest.skip("systemd-analyze is not installed (scripts/install-system-deps.sh installs it)")
    return found


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    program = Path(sys.executable).with_name("whaled")
    assert program.is_file(), f"{program} is missing; install whaled into this venv (pip install -e .)"
    text = UNIT.read_text()
    assert INSTALLED_PROGRAM in text
    copy = tmp_path / "whaled.service"
    copy.write_text(text.replace(INSTALLED_PROGRAM, str(program)))
    return copy


def test_systemd_verify(unit_copy: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "verify", str(unit_copy)], capture_output=True, text=True, timeout=30, check=False
    )
    # verify exits 0 even after warnings such as "Invalid syntax, ignoring", so its output must be clean too.
    about_unit = [line for line in (result.stdout + result.stderr).splitlines() if unit_copy.name in line]

    assert result.returncode == 0, result.stderr
    assert about_unit == []


def test_systemd_security_exposure(unit_copy: Path) -> None:
    threshold = round(MAX_EXPOSURE * 10)
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", f"--threshold={threshold}", str(unit_copy)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)

    assert match is not None, result.stdout + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout


def test_systemd_unit_contract() -> None:
    unit = unit_directives(UNIT.read_text())

    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.NotifyAccess"] == ["main"]
    assert unit["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Service.Restart"] == ["on-failure"]
    assert unit["Service.RestartPreventExitStatus"] == [str(EXIT_CONFIG)]
    assert unit["Service.StateDirectory"] == ["whaled"]
    assert unit["Service.ConfigurationDirectory"] == ["whaled"]
    assert unit["Service.CapabilityBoundingSet"] == [""]
    assert "Service.WatchdogSec" in unit
    assert "Unit.StartLimitBurst" in unit
    assert unit["Service.ExecStart"] == [f"{INSTALLED_PROGRAM} run --config ${{CONFIGURATION_DIRECTORY}}/whaled.toml"]


def test_systemd_stop_timeout_covers_shutdown() -> None:
    from whaled.service import SHUTDOWN_TIMEOUT_S

    unit = unit_directives(UNIT.read_text())

    assert int(unit["Service.TimeoutStopSec"][0]) > SHUTDOWN_TIMEOUT_S


def test_systemd_credentials_match_config() -> None:
    """The unit passes exactly the credentials that config.py reads, each from the file of the same name."""
    from whaled.config._base import _CREDENTIAL_FILES

    named = re.findall(r"^LoadCredential=(\w+):/etc/whaled/credentials/(\w+)$", UNIT.read_text(), re.MULTILINE)

    assert sorted(name for name, _ in named) == sorted(_CREDENTIAL_FILES)
    assert all(name == file_name for name, file_name in named)


def test_empty_credential_leaves_secret_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from whaled.config import load_settings

    (tmp_path / "web_access_token").write_text("\n")
    (tmp_path / "smtp_password").write_text("")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))

    settings = load_settings(None, environ={})

    assert settings.web.access_token is None
    assert settings.smtp.password is None
