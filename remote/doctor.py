"""The web remote's row of ``musicbox doctor``: what the running box's remote is doing, from the box itself.

A box whose remote listens writes ``pairing.json`` (address, current pairing code, its pid; remote/auth.py)
in its state folder: the configured ``[remote] state_dir``, else the service's ``/var/lib/musicbox`` or a
terminal box's ``~/.local/state/musicbox``. The row reads it whatever the config says (``play --remote``
turns the remote on from the command line), checks that the process is alive and that the page answers at
its address, and shows the code. Without a running box it says whether the config turns the remote on.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from musicbox.config import BoxConfig
from musicbox.device.doctor import FAIL, OK, WARN, Check
from musicbox.remote.auth import read_pairing
from musicbox.remote.server import page_url, state_dir

SERVICE_STATE = Path("/var/lib/musicbox")
"""The service's ``StateDirectory=`` (firmware_config/systemd/musicbox.service)."""
CONNECT_S = 1.0
"""How long the row waits for the page's port to accept a connection."""


def state_folders(config: BoxConfig) -> list[Path]:
    """Where a running box's remote may have written ``pairing.json``, most specific first."""
    if config.remote.state_dir is not None:
        return [Path(config.remote.state_dir)]
    folders = [state_dir(None), SERVICE_STATE, Path("~/.local/state/musicbox").expanduser()]
    return list(dict.fromkeys(folders))


def check_remote(config: BoxConfig) -> Check:
    """On (the running box's address, code and whether the page answers), off, or what keeps it from
    working."""
    unreadable = None
    for folder in state_folders(config):
        path = folder / "pairing.json"
        if path.exists() and not os.access(path, os.R_OK):
            unreadable = path
            continue
        info = read_pairing(folder)
        if info and _alive(info.get("pid")):
            return _running(info)
    if unreadable is not None:
        fix = "run `sudo musicbox doctor` to see the pairing code (the file is the service's)"
        return Check("remote", WARN, f"{unreadable} is not readable here", fix)
    if not config.remote.enabled:
        return Check("remote", OK, "off (turn it on: [remote] enabled = true, or `musicbox play --remote`)")
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return Check("remote", FAIL, "on, but aiohttp is not installed", "pip install 'musicbox[device]'")
    url = page_url(config.remote.bind, config.remote.port)
    return Check("remote", OK, f"on at {url} once the box plays; the pairing code shows here then")


def _running(info: dict) -> Check:
    url, code, pid = str(info.get("url", "")), str(info.get("code", "")), info.get("pid")
    detail = f"running (pid {pid}): open {url} and pair with code {code}"
    if answers(url):
        return Check("remote", OK, detail)
    fix = (
        "the page's port does not answer from here: under the service, run `sudo musicbox install-service` "
        "again (its remote.conf drop-in gives the box the network); else check a firewall"
    )
    return Check("remote", WARN, f"{detail}; but {url} does not answer", fix)


def _alive(pid) -> bool:
    return isinstance(pid, int) and pid > 0 and Path(f"/proc/{pid}").exists()


def answers(url: str, timeout_s: float = CONNECT_S) -> bool:
    """Whether a TCP connection to ``url``'s host and port opens within ``timeout_s``."""
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s):
            return True
    except OSError:
        return False
