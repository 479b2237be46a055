"""The web remote's row of ``musicbox doctor``: off, or on with the page's address and the pairing code
of the running box (read from its ``pairing.json``)."""

from __future__ import annotations

import os
from pathlib import Path

from musicbox.config import BoxConfig
from musicbox.device.doctor import FAIL, OK, WARN, Check
from musicbox.remote.auth import read_pairing
from musicbox.remote.server import page_url, state_dir


def check_remote(config: BoxConfig) -> Check:
    """Off; on with the running box's address and pairing code; or on with what keeps it from working."""
    if not config.remote.enabled:
        return Check("remote", OK, "off (turn it on: [remote] enabled = true, or `musicbox play --remote`)")
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return Check("remote", FAIL, "on, but aiohttp is not installed", "pip install 'musicbox[device]'")
    folders = [state_dir(config.remote.state_dir)]
    if config.remote.state_dir is None:
        folders.append(Path("/var/lib/musicbox"))  # the service's StateDirectory
    for folder in folders:
        path = folder / "pairing.json"
        if path.exists() and not os.access(path, os.R_OK):
            fix = "run `sudo musicbox doctor` to see the pairing code (the file is the service's)"
            return Check("remote", WARN, f"on; {path} is not readable here", fix)
        info = read_pairing(folder)
        if info and Path(f"/proc/{info.get('pid')}").exists():
            return Check("remote", OK, f"open {info['url']} and pair with code {info['code']}")
    url = page_url(config.remote.bind, config.remote.port)
    return Check("remote", OK, f"on at {url}; the pairing code shows here while the box plays")
