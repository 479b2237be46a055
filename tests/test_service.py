"""The systemd unit: rendered for this venv, it passes `systemd-analyze verify` and has the key settings."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from musicbox.cli import main
from musicbox.commands import install_service


def _render(tmp_path: Path) -> Path:
    text = install_service.render_unit(install_service.exec_path(), "root", ["audio"], tmp_path / "rec")
    unit = tmp_path / "musicbox.service"
    unit.write_text(text)
    return unit


def _parse(unit: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(unit.read_text())
    return parser


def test_unit_has_notify_watchdog_restart_policy(tmp_path):
    unit = _parse(_render(tmp_path))
    service, section = unit["Service"], unit["Unit"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) > 0 and service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "78"
    assert "StartLimitIntervalSec" in section and "StartLimitBurst" in section
    assert service["ExecStart"].split()[0] == install_service.exec_path().split()[0]
    assert Path(service["ExecStart"].split()[0]).is_file()
    assert "@" not in _render(tmp_path).read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    unit = _render(tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    problems = [line for line in result.stderr.splitlines() if "musicbox.service" in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_dry_run_prints_the_unit_and_commands(capsys):
    assert main(["install-service", "--dry-run", "--user", "root"]) == 0
    out = capsys.readouterr().out
    assert "Type=notify" in out and "systemctl enable --now musicbox.service" in out


def test_not_root_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(install_service.os, "geteuid", lambda: 1000)
    assert main(["install-service", "--user", "root"]) == 1
    assert "needs root" in capsys.readouterr().err
