"""The systemd unit: rendered for this venv, it passes `systemd-analyze verify` and has the key settings."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from musicbox.cli import main
from musicbox.commands import install_service


def _has_seccomp() -> bool:
    """Debian's python3-seccomp for the system Python (tests/helpers/unit_sandbox.py uses it)."""
    check = ["/usr/bin/python3", "-c", "import seccomp"]
    return Path(check[0]).is_file() and subprocess.run(check, capture_output=True).returncode == 0


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
    assert not re.search(r"@[A-Z]+@", _render(tmp_path).read_text())  # every placeholder filled in


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


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_security_rates_the_unit_at_most_3(tmp_path):
    unit = _render(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for musicbox.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 3.0, result.stdout


def _sandboxed(unit: Path, *command: str) -> list[str]:
    """``command`` run under the unit's SystemCallFilter= and RestrictAddressFamilies= (seccomp)."""
    helper = Path(__file__).parent / "helpers" / "unit_sandbox.py"
    return ["/usr/bin/python3", str(helper), str(unit), "--", *command]


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("jackd") is None or shutil.which("systemd-analyze") is None or not _has_seccomp(),
    reason="needs jackd, systemd-analyze and Debian's python3-seccomp",
)
def test_the_box_plays_under_the_units_system_call_and_socket_filters(tmp_path):
    from musicbox.runtime.box.soak import JackDummy
    from tests.helpers.synthetic_bundle import build_bundle

    unit = _render(tmp_path)
    denied = subprocess.run(  # the filter is really there: a network socket is refused
        _sandboxed(unit, sys.executable, "-c", "import socket; socket.socket(socket.AF_INET)"),
        capture_output=True,
        text=True,
    )
    assert denied.returncode != 0 and "Operation not permitted" in denied.stderr, denied.stderr
    bundle = build_bundle(tmp_path / "bundle")
    config = tmp_path / "box.toml"
    config.write_text(f'[knobs]\nbackend = "none"\n[recording]\nfolder = "{tmp_path}/rec"\n')
    stats = tmp_path / "stats.json"
    play = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--bundle", str(bundle)]
    play += ["--seconds", "12", "--stats", str(stats)]
    with JackDummy(name=f"mbunit{os.getpid()}"):
        result = subprocess.run(_sandboxed(unit, *play), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    final = json.loads(stats.read_text())
    assert final["bars_played"] >= 3 and final["underruns"] == 0, final


def test_unit_reads_the_config_it_was_installed_with(tmp_path, capsys):
    config = tmp_path / "my.toml"
    config.write_text('[recording]\nfolder = "/srv/rec"\n')
    assert main(["install-service", "--dry-run", "--user", "root", "--config", str(config)]) == 0
    unit = capsys.readouterr().out
    assert f"play --config {config.resolve()}\n" in unit and "-/srv/rec" in unit


def test_unreachable_names_the_closed_folder():
    with tempfile.TemporaryDirectory() as tmp:  # under /tmp (1777), not pytest's 0700 folder
        _check_way(Path(tmp).resolve())


def _check_way(top: Path) -> None:
    home = top / "home"
    (home / "clone").mkdir(parents=True)
    (home / "clone" / "my.toml").write_text("")
    home.chmod(0o700)
    top.chmod(0o755)
    nobody = 65534
    assert install_service.unreachable(home / "clone" / "my.toml", nobody, set()) == home
    assert install_service.unreachable(home / "clone" / "my.toml", 0, set()) is None
    home.chmod(0o755)
    assert install_service.unreachable(home / "clone" / "my.toml", nobody, set()) is None


def test_clone_the_service_user_cannot_enter_is_refused(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "my.toml").write_text("")
    assert main(["install-service", "--dry-run", "--user", "nobody", "--config", str(home / "my.toml")]) == 1
    err = capsys.readouterr().err
    assert "'nobody' cannot enter" in err and "Debian package" in err


def test_installed_package_owns_the_service(tmp_path, monkeypatch, capsys):
    unit = tmp_path / "musicbox.service"
    unit.write_text("[Unit]\n")
    monkeypatch.setattr(install_service, "PACKAGE_UNIT", unit)
    assert main(["install-service", "--dry-run", "--user", "root"]) == 1
    assert "/etc/musicbox/musicbox.toml" in capsys.readouterr().err


def test_doctor_hint_names_the_full_command(monkeypatch):
    from musicbox.device import doctor

    monkeypatch.setattr(doctor, "SERVICE_FILES", ())
    check = doctor.check_service()
    assert check.fix == f"sudo {Path(sys.executable).parent / 'musicbox'} install-service"
    assert Path(check.fix.split()[1]).is_file()


def test_the_package_own_command_keeps_the_remote_drop_in_with_the_config(tmp_path, monkeypatch, capsys):
    """From the package, install-service only follows ``[remote] enabled`` with the drop-in."""
    unit = tmp_path / "musicbox.service"
    unit.write_text("[Unit]\n")
    dropin = tmp_path / "musicbox.service.d" / "remote.conf"
    announcement = tmp_path / "avahi" / "services" / "musicbox.service"
    announcement.parent.mkdir(parents=True)
    ran: list[list[str]] = []
    monkeypatch.setattr(install_service, "PACKAGE_UNIT", unit)
    monkeypatch.setattr(install_service, "REMOTE_DROPIN_PATH", dropin)
    monkeypatch.setattr(install_service, "AVAHI_SERVICE_PATH", announcement)
    monkeypatch.setattr(install_service, "exec_path", lambda: "/opt/musicbox/bin/musicbox")
    monkeypatch.setattr(install_service, "_run", ran.append)
    config = tmp_path / "box.toml"
    config.write_text("[remote]\nenabled = true\nport = 8123\n")
    assert main(["install-service", "--config", str(config)]) == 0
    assert dropin.read_text() == install_service.remote_dropin() and "IPAddressAllow" in dropin.read_text()
    assert announcement.read_text() == install_service.avahi_service(8123)
    assert ran == [["systemctl", "daemon-reload"], ["systemctl", "try-restart", "musicbox.service"]]
    assert "the web remote is on" in capsys.readouterr().out
    config.write_text("[remote]\nenabled = false\n")
    assert main(["install-service", "--config", str(config)]) == 0
    assert not dropin.exists() and "the web remote is off" in capsys.readouterr().out
    assert not announcement.exists()


def test_the_mdns_announcement_is_a_valid_avahi_service_for_the_page():
    """avahi-daemon reads /etc/avahi/services/*.service (XML, avahi.service(5)); a DNS-SD _http._tcp record
    on the remote's port, named after the host, points a phone at the page."""
    import xml.etree.ElementTree as ET

    group = ET.fromstring(install_service.avahi_service(8047))
    assert group.tag == "service-group" and "%h" in group.findtext("name")
    assert group.find("name").get("replace-wildcards") == "yes"
    service = group.find("service")
    assert service.findtext("type") == "_http._tcp" and service.findtext("port") == "8047"
    assert service.findtext("txt-record") == "path=/"


SERVE_ONCE = """
import socket, sys
s = socket.socket(socket.AF_INET)
s.bind(("127.0.0.1", 0)); s.listen(1); s.settimeout(20)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1])); __import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
try:
    conn, _ = s.accept(); conn.sendall(b"page")
except TimeoutError:
    sys.exit(3)
"""


def _reachable_under(unit: Path, tmp_path: Path) -> bool:
    """Start a TCP server under ``unit``'s sandbox (filters and network namespace) and try to reach it from
    here, as a phone on the LAN would the page."""
    import socket
    import time

    ready = tmp_path / f"port-{unit.name}"
    server = subprocess.Popen(
        _sandboxed(unit, sys.executable, "-c", SERVE_ONCE, str(ready)), stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
            time.sleep(0.02)
        try:
            with socket.create_connection(("127.0.0.1", int(ready.read_text())), timeout=5) as conn:
                return conn.recv(4) == b"page"
        except OSError:
            return False
    finally:
        server.kill()
        server.wait()


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not _has_seccomp(),
    reason="needs systemd-analyze and Debian's python3-seccomp",
)
def test_the_remote_dropin_lets_the_lan_reach_the_page(tmp_path):
    """Issue 32: the drop-in allowed IP sockets but left PrivateNetwork=yes, so the page was listening in a
    namespace nobody could reach. The effective settings (unit, then drop-in) and a server run under them."""
    sys.path.insert(0, str(Path(__file__).parent / "helpers"))
    from unit_sandbox import address_families, private_network, unit_settings

    unit = _render(tmp_path)
    with_dropin = tmp_path / "with-remote.service"
    with_dropin.write_text(unit.read_text() + "\n" + install_service.remote_dropin())
    effective = unit_settings(str(with_dropin))
    assert private_network(unit_settings(str(unit))) and not private_network(effective)
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(address_families(effective))
    assert _reachable_under(with_dropin, tmp_path)
    # The check can fail: the same drop-in without its PrivateNetwork=no leaves the page unreachable.
    leaky = tmp_path / "leaky.service"
    dropin = "\n".join(
        line for line in install_service.remote_dropin().splitlines() if "PrivateNetwork" not in line
    )
    leaky.write_text(unit.read_text() + "\n" + dropin)
    assert private_network(unit_settings(str(leaky)))
    assert not _reachable_under(leaky, tmp_path)
