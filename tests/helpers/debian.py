"""Build the Debian package with packaging/build_deb.sh for a test (the package and arm64 checks)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from musicbox import __version__

REPO = Path(__file__).resolve().parents[2]


def build_deb(arch: str, revision: int = 1) -> Path:
    """``dist/musicbox_<version>-<revision>_<arch>.deb``, built now (about 2-4 minutes)."""
    env = {**os.environ, "MUSICBOX_DEB_REVISION": str(revision)}
    script = REPO / "packaging" / "build_deb.sh"
    result = subprocess.run([str(script), arch], capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    deb = REPO / "dist" / f"musicbox_{__version__}-{revision}_{arch}.deb"
    assert deb.is_file(), result.stdout
    return deb
