"""`musicbox install-service`: install and enable the systemd unit that runs `musicbox play` at boot.

The unit is ``firmware_config/systemd/musicbox.service`` with its placeholders filled in: ``@EXEC@`` (this
installation's ``musicbox`` command, so the service runs the same virtual environment), ``@USER@`` (a
dedicated system user, created when missing), ``@GROUPS@`` (audio, gpio, spi: those that exist here) and
``@RECORDINGS@`` (the recordings folder, the one path besides its state directory it may write).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

UNIT_PATH = Path("/etc/systemd/system/musicbox.service")
GROUPS = ("audio", "gpio", "spi")
STATE_DIR = Path("/var/lib/musicbox")


def register(sub):
    p = sub.add_parser("install-service", help="install and enable the systemd service (as root)")
    p.add_argument("--user", default="musicbox", help="user the service runs as (default: musicbox, created)")
    p.add_argument(
        "--config", type=Path, help="musicbox.toml the service will read (for the recordings folder)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the unit and the commands, change nothing")
    p.set_defaults(run=run)


def run(args) -> int:
    from musicbox.config import load_config
    from musicbox.errors import MusicBoxError

    home = _home_of(args.user)
    folder = _recordings_folder(load_config(args.config).recording.folder, home)
    unit = render_unit(exec_path(), args.user, existing_groups(), folder)
    commands = _commands(args.user)
    if args.dry_run:
        print(unit)
        print("\n".join(" ".join(c) for c in commands))
        return 0
    if os.geteuid() != 0:
        raise MusicBoxError("install-service needs root: run it with sudo (or use --dry-run to see the unit)")
    for cmd in commands[:-2]:
        _run(cmd)
    UNIT_PATH.write_text(unit)
    for cmd in commands[-2:]:
        _run(cmd)
    print(f"installed {UNIT_PATH} and started it; follow it with `journalctl -u musicbox -f`")
    return 0


def exec_path() -> str:
    """The absolute command that runs this installation's ``musicbox``."""
    script = Path(sys.executable).parent / "musicbox"
    return str(script) if script.is_file() else f"{sys.executable} -m musicbox.cli"


def existing_groups() -> list[str]:
    """The groups of :data:`GROUPS` that exist on this machine (a PC has no gpio/spi groups)."""
    found = []
    for name in GROUPS:
        try:
            grp.getgrnam(name)
        except KeyError:
            continue
        found.append(name)
    return found


def render_unit(
    exec_cmd: str, user: str, groups: list[str], recordings: Path, config: Path | None = None
) -> str:
    """The unit file text with its placeholders filled in; ``config`` is the musicbox.toml the service
    reads (None: the search path of :func:`musicbox.config.find_config_file`)."""
    template = (_firmware_dir() / "systemd" / "musicbox.service").read_text()
    command = f"{exec_cmd} play" + (f" --config {config}" if config is not None else "")
    text = (
        template.replace("@EXEC@ play", command)
        .replace("@USER@", user)
        .replace("@RECORDINGS@", str(recordings))
    )
    line = f"SupplementaryGroups={' '.join(groups)}\n" if groups else ""
    return text.replace("SupplementaryGroups=@GROUPS@\n", line)


def _firmware_dir() -> Path:
    from musicbox.config import firmware_dir

    return firmware_dir()


def _home_of(user: str) -> Path:
    try:
        return Path(pwd.getpwnam(user).pw_dir)
    except KeyError:
        return STATE_DIR


def _recordings_folder(folder: Path, home: Path) -> Path:
    """The recordings folder as the service user sees it: a folder in the home of whoever runs this
    command (the config expands ``~`` for them) moves to the service user's home."""
    try:
        return home / folder.relative_to(Path.home())
    except ValueError:
        return folder


def _commands(user: str) -> list[list[str]]:
    """Create the user when missing, then reload systemd and enable + start the unit."""
    commands = []
    try:
        pwd.getpwnam(user)
    except KeyError:
        groups = ",".join(existing_groups())
        useradd = ["useradd", "--system", "--home-dir", str(STATE_DIR), "--shell", "/usr/sbin/nologin"]
        commands.append([*useradd, *(["--groups", groups] if groups else []), user])
    return [*commands, ["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "musicbox.service"]]


def _run(cmd: list[str]) -> None:
    from musicbox.errors import MusicBoxError

    if shutil.which(cmd[0]) is None:
        raise MusicBoxError(f"`{cmd[0]}` not found: install-service needs systemd and shadow-utils")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise MusicBoxError(f"`{' '.join(cmd)}` failed ({result.returncode}): {result.stderr.strip()}")
