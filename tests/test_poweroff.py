"""Holding play with ``[buttons] hold_action = "poweroff"``: the box stops, its save is written, then it asks
logind to power off (``systemctl poweroff``, here a stand-in first on PATH that records the call and what
the recordings folder held at that moment); the polkit rule grants exactly that to the service user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from musicbox.commands import play
from musicbox.runtime.box.soak import JackDummy
from tests.helpers.synthetic_bundle import build_bundle

REPO = Path(__file__).resolve().parent.parent
RULE = REPO / "packaging" / "polkit" / "50-musicbox.rules"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed")
@pytest.mark.parametrize("action", ["poweroff", "quit"])
def test_hold_powers_off_after_the_save_is_written(action, tmp_path):
    bundle = build_bundle(tmp_path / "bundle")
    rec, bin_dir = tmp_path / "rec", tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/called\nls -a {rec} > {tmp_path}/listing\n')
    fake.chmod(0o755)
    script = tmp_path / "knobs.json"
    script.write_text(json.dumps([{"at": 3, "button": "save"}, {"at": 3.5, "button": "shutdown"}]))
    config = tmp_path / "box.toml"
    config.write_text(
        f'[knobs]\nbackend = "scripted"\nscript = "{script}"\n[recording]\nfolder = "{rec}"\n'
        f'[buttons]\nhold_action = "{action}"\n'
    )
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--bundle", str(bundle)]
    with JackDummy(name=f"mbhold{os.getpid()}"):  # sets JACK_DEFAULT_SERVER for the child
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        result = subprocess.run(
            [*cmd, "--seconds", "30"], capture_output=True, text=True, env=env, timeout=90
        )
    assert result.returncode == 0, result.stderr
    assert "30 s played" not in result.stderr  # the hold stopped it, not the time limit
    if action == "quit":
        assert not (tmp_path / "called").exists()
        return
    assert (tmp_path / "called").read_text().split() == ["poweroff"]
    listing = (tmp_path / "listing").read_text().split()
    assert any(name.endswith(".wav") for name in listing), listing
    assert not any(name.endswith(".tmp") for name in listing), listing


def test_refused_power_off_exits_1_and_says_why(monkeypatch, caplog):
    monkeypatch.setattr(play, "POWEROFF_COMMAND", ("sh", "-c", "echo 'Access denied' >&2; exit 1"))
    assert play.power_off() == 1
    assert "Access denied" in caplog.text and "50-musicbox.rules" in caplog.text
    monkeypatch.setattr(play, "POWEROFF_COMMAND", ("/nonexistent/systemctl", "poweroff"))
    assert play.power_off() == 1


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (evaluates the polkit rule)")
def test_polkit_rule_allows_only_power_off_for_musicbox():
    """Evaluate the rule file as polkitd would (its JS calls polkit.addRule) for a table of requests."""
    cases = [
        ("musicbox", "org.freedesktop.login1.power-off", "yes"),
        ("musicbox", "org.freedesktop.login1.power-off-multiple-sessions", "yes"),
        ("musicbox", "org.freedesktop.login1.reboot", "undefined"),
        ("musicbox", "org.freedesktop.login1.suspend", "undefined"),
        ("musicbox", "org.freedesktop.systemd1.manage-units", "undefined"),
        ("pi", "org.freedesktop.login1.power-off", "undefined"),
    ]
    program = (
        "const rules = []; const polkit = {Result: {YES: 'yes'}, addRule: (f) => rules.push(f)};\n"
        + RULE.read_text()
        + f"\nconst cases = {json.dumps(cases)};\n"
        "console.log(JSON.stringify(cases.map(([user, id]) => String(rules[0]({id}, {user})))));"
    )
    out = subprocess.run(["node", "-e", program], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [expected for _, _, expected in cases]
