"""`musicbox install-service`: install and enable the systemd unit that runs `musicbox play` at boot.

The unit is ``firmware_config/systemd/musicbox.service`` with its placeholders filled in: ``@EXEC@`` (this
installation's ``musicbox`` command, so the service runs the same virtual environment), ``@USER@`` (a
dedicated system user, created when missing), ``@GROUPS@`` (audio, gpio, spi: those that exist here) and
``@RECORDINGS@`` (the recordings folder, the one path besides its state directory it may write); the
unit runs ``play --config FILE`` with the file given here, or the one found now.

It refuses, naming the folder and the way out, when the service user could not reach this installation
or the config (a clone in a 0700 home folder), and when the Debian package already runs the service
(packaging/build_deb.sh): one service path per box.

With ``[remote] enabled = true`` it also installs the drop-in ``musicbox.service.d/remote.conf`` (IP
sockets, the LAN's network and addresses for the web remote) and, where avahi-daemon is installed, the
mDNS announcement of the page (``firmware_config/avahi/musicbox.service`` with ``[remote] port``, as
``/etc/avahi/services/musicbox.service``); with the remote off it removes both.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from musicbox.firmware import firmware_dir

UNIT_PATH = Path("/etc/systemd/system/musicbox.service")
REMOTE_DROPIN_PATH = Path("/etc/systemd/system/musicbox.service.d/remote.conf")
AVAHI_SERVICE_PATH = Path("/etc/avahi/services/musicbox.service")  # read by avahi-daemon when it exists
PACKAGE_UNIT = Path("/lib/systemd/system/musicbox.service")  # installed by the Debian package
PACKAGE_PREFIX = Path("/opt/musicbox")
GROUPS = ("audio", "gpio", "spi")
STATE_DIR = Path("/var/lib/musicbox")
PACKAGE_HINT = (
    "install the Debian package instead (`sudo apt install ./musicbox_<version>_<arch>.deb`, built by "
    'packaging/build_deb.sh; see README "On a Raspberry Pi"), or move the clone to a folder every user '
    "can enter (e.g. /opt/musicbox-src) and run scripts/setup.sh there"
)


def register(sub):
    p = sub.add_parser("install-service", help="install and enable the systemd service (as root)")
    p.add_argument("--user", default="musicbox", help="user the service runs as (default: musicbox, created)")
    p.add_argument(
        "--config", type=Path, help="musicbox.toml the service will read (for the recordings folder)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the unit and the commands, change nothing")
    p.set_defaults(run=run)


def run(args) -> int:
    from musicbox.config import find_config_file, load_config
    from musicbox.errors import MusicBoxError

    config_file = args.config if args.config is not None else find_config_file()
    config_file = Path(config_file).resolve() if config_file is not None else None
    if PACKAGE_UNIT.is_file() and exec_path().startswith(f"{PACKAGE_PREFIX}/"):
        return _package_service(load_config(config_file), args.dry_run)
    _defer_to_package(exec_path())
    config = load_config(config_file)
    _check_reachable(args.user, [Path(sys.executable).parent / "musicbox", _source_dir(), config_file])
    home = _home_of(args.user)
    folder = _recordings_folder(config.recording.folder, home)
    unit = render_unit(exec_path(), args.user, existing_groups(), folder, config_file)
    dropin = remote_dropin() if config.remote.enabled else None
    commands = _commands(args.user)
    if args.dry_run:
        print(unit)
        if dropin is not None:
            print(f"# {REMOTE_DROPIN_PATH}\n{dropin}")
        print("\n".join(" ".join(c) for c in commands))
        return 0
    if os.geteuid() != 0:
        raise MusicBoxError("install-service needs root: run it with sudo (or use --dry-run to see the unit)")
    for cmd in commands[:-2]:
        _run(cmd)
    UNIT_PATH.write_text(unit)
    _write_dropin(dropin)
    _write_announcement(config)
    for cmd in commands[-2:]:
        _run(cmd)
    print(f"installed {UNIT_PATH} and started it; follow it with `journalctl -u musicbox -f`")
    return 0


def _package_service(config, dry_run: bool) -> int:
    """The Debian package installed and enabled the unit: only the web remote's drop-in follows the
    config (``[remote] enabled``), then systemd reloads and the box restarts."""
    from musicbox.errors import MusicBoxError

    dropin = remote_dropin() if config.remote.enabled else None
    state = "on: the drop-in allows its LAN sockets" if dropin else "off: no drop-in"
    print(f"the Debian package installed and enabled the service ({PACKAGE_UNIT}); the web remote is {state}")
    if dry_run:
        if dropin is not None:
            print(f"# {REMOTE_DROPIN_PATH}\n{dropin}")
        return 0
    if os.geteuid() != 0:
        raise MusicBoxError("install-service needs root: run it with sudo (or use --dry-run to see the unit)")
    _write_dropin(dropin)
    _write_announcement(config)
    for cmd in (["systemctl", "daemon-reload"], ["systemctl", "try-restart", "musicbox.service"]):
        _run(cmd)
    return 0


def _write_dropin(dropin: str | None) -> None:
    """Install the web remote's drop-in, or remove it when the remote is off."""
    if dropin is not None:
        REMOTE_DROPIN_PATH.parent.mkdir(parents=True, exist_ok=True)
        REMOTE_DROPIN_PATH.write_text(dropin)
    else:
        REMOTE_DROPIN_PATH.unlink(missing_ok=True)


def avahi_service(port: int) -> str:
    """The mDNS announcement of the page on ``port`` (``firmware_config/avahi/musicbox.service``)."""
    return (firmware_dir() / "avahi" / "musicbox.service").read_text().replace("@PORT@", str(port))


def _write_announcement(config) -> None:
    """Announce the page over mDNS while the remote is on (where avahi-daemon is installed); else stop."""
    if config.remote.enabled and AVAHI_SERVICE_PATH.parent.is_dir():
        AVAHI_SERVICE_PATH.write_text(avahi_service(config.remote.port))
        print(f"announced the page over mDNS ({AVAHI_SERVICE_PATH}): phones find `musicbox on <hostname>`")
    elif config.remote.enabled:
        print("no avahi-daemon here: `sudo apt install avahi-daemon` to reach the box as <hostname>.local")
    else:
        AVAHI_SERVICE_PATH.unlink(missing_ok=True)


def exec_path() -> str:
    """The absolute command that runs this installation's ``musicbox``."""
    script = Path(sys.executable).parent / "musicbox"
    return str(script) if script.is_file() else f"{sys.executable} -m musicbox.cli"


def _defer_to_package(exec_cmd: str) -> None:
    """Refuse when the Debian package's unit is installed and this is another installation."""
    from musicbox.errors import MusicBoxError

    if PACKAGE_UNIT.is_file() and not exec_cmd.startswith(f"{PACKAGE_PREFIX}/"):
        raise MusicBoxError(
            f"the musicbox Debian package already installs the service ({PACKAGE_UNIT}, running "
            f"{PACKAGE_PREFIX}/bin/musicbox with /etc/musicbox/musicbox.toml): edit that file and run "
            "`sudo systemctl restart musicbox`, or `sudo apt remove musicbox` first to run this clone instead"
        )


def _source_dir() -> Path:
    """The folder of the ``musicbox`` package this command runs from (in the clone for an editable
    install)."""
    import musicbox

    return Path(musicbox.__file__).resolve().parent


def _check_reachable(user: str, paths: list[Path | None]) -> None:
    """Raise when ``user`` (the service user, or a new system user in :func:`existing_groups`) could not
    read ``paths``: every folder above them must let that user through."""
    from musicbox.errors import MusicBoxError

    try:
        entry = pwd.getpwnam(user)
        uid = entry.pw_uid
        gids = {entry.pw_gid, *os.getgrouplist(user, entry.pw_gid)}
    except KeyError:  # created by this command: no file is its own yet; only its groups count
        uid, gids = -1, {grp.getgrnam(g).gr_gid for g in existing_groups()}
    for path in paths:
        if path is None:
            continue
        blocked = unreachable(path, uid, gids)
        if blocked is not None:
            mode = stat.S_IMODE(blocked.stat().st_mode)
            raise MusicBoxError(
                f"the service user {user!r} cannot enter {blocked} (mode {mode:04o}), so the service could "
                f"not start {path}: {PACKAGE_HINT}"
            )


def unreachable(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first folder on the way to ``path`` (or ``path`` itself, which must be readable) that user
    ``uid`` with groups ``gids`` may not pass; None when the way is open. Root passes everywhere."""
    if uid == 0:
        return None
    path = Path(os.path.abspath(path))
    for step in [*reversed(path.parents), path]:
        st = step.stat()
        need = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH) if step != path or step.is_dir() else None
        if need is None:
            need = (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)
        bit = need[0] if st.st_uid == uid else need[1] if st.st_gid in gids else need[2]
        if not st.st_mode & bit:
            return step
    return None


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
    template = (firmware_dir() / "systemd" / "musicbox.service").read_text()
    command = f"{exec_cmd} play" + (f" --config {config}" if config is not None else "")
    text = (
        template.replace("@EXEC@ play", command)
        .replace("@USER@", user)
        .replace("@RECORDINGS@", str(recordings))
    )
    line = f"SupplementaryGroups={' '.join(groups)}\n" if groups else ""
    return text.replace("SupplementaryGroups=@GROUPS@\n", line)


def remote_dropin() -> str:
    """The web remote's drop-in for the unit (``firmware_config/systemd/musicbox.service.d/remote.conf``)."""
    return (firmware_dir() / "systemd" / "musicbox.service.d" / "remote.conf").read_text()


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
