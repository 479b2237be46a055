"""The ``firmware_config`` folder and strict reading of the TOML files in it.

``firmware_config/`` holds the defaults (``musicbox.toml``), the board pin maps (``boards/<name>.toml``),
the systemd unit and the ALSA example. Reading one of its TOML files (or the box's own ``musicbox.toml``)
fails with a :class:`~musicbox.errors.ConfigError` (exit status 78) that names the file, the key and what
is allowed; :func:`fail` is that message's one format.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6 / Ubuntu 22.04)
    import tomli as tomllib

from musicbox.errors import ConfigError


def firmware_dir() -> Path:
    """The ``firmware_config`` folder: $MUSICBOX_FIRMWARE_DIR, the source tree, or ``<prefix>/share``."""
    candidates: list[str | Path] = [
        os.environ.get("MUSICBOX_FIRMWARE_DIR", ""),
        Path(__file__).resolve().parent.parent / "firmware_config",
        Path(sys.prefix) / "share" / "musicbox" / "firmware_config",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "musicbox.toml").is_file():
            return Path(candidate)
    raise ConfigError(
        "firmware_config/musicbox.toml (the defaults) not found; set MUSICBOX_FIRMWARE_DIR to the "
        "firmware_config folder of the musicbox sources"
    )


def read_toml(path: Path) -> dict:
    """The TOML document at ``path``; a ConfigError when it is missing, unreadable or not TOML."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None


def show(value: Any) -> str:
    """A value as an error message quotes it: its repr (cut at 40 characters) and its type."""
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def fail(source: Path, key: str, problem: str, allowed: str) -> NoReturn:
    """Raise the ConfigError "``source``: ``key``: ``problem``; allowed: ``allowed``"."""
    raise ConfigError(f"{source}: {key}: {problem}; allowed: {allowed}")
