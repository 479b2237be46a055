"""Finding the General MIDI SoundFont the synth plays.

Search order: the configured file (``musicbox.toml`` ``[synth] soundfont``), then the Debian packages'
fonts (:data:`DEBIAN_SOUNDFONTS`), then a font shipped inside a pip package (:data:`PACKAGE_SOUNDFONTS`,
pretty_midi's TimGM6mb.sf2), located with ``importlib.util.find_spec`` so the package is never imported
(pretty_midi is a workstation dependency; on the device it is usually absent).

A file is accepted when it starts like a SoundFont: a RIFF container of form ``sfbk`` (.sf2 and the
Ogg-compressed .sf3 share it). Whether the synth can load it is checked by ``render.Renderer``.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from musicbox.errors import SoundFontError

log = logging.getLogger(__name__)

DEBIAN_SOUNDFONTS: tuple[tuple[Path, str], ...] = (
    (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), "fluid-soundfont-gm"),
    (Path("/usr/share/sounds/sf3/MuseScore_General_Full.sf3"), "musescore-general-soundfont"),
    (Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"), "musescore-general-soundfont-small"),
    (Path("/usr/share/sounds/sf2/TimGM6mb.sf2"), "timgm6mb-soundfont"),
)
"""(file, Debian package that installs it), in order of preference; the Debian package depends on the
first and accepts the others (``packaging/debian/control``). Measured on every board class's behalf in
docs/instruments.md (load s, RSS, synth CPU per minute of music with reverb, each style's programs and
balance, loudness after the leveler): FluidR3 comes first because its samples load with no decoding
(12-27 ms of CPU for a style's first bar against 50-100 ms for MuseScore General's Ogg-compressed .sf3:
a faster first sound and worker recovery, which matters most on a Zero 2 W), its styles are the best
balanced before the leveler (2.9 LU apart against 4.3 and 6.9) and its CPU per minute is the same as the
others' within the noise. MuseScore General (HQ, then Lite) follows: a richer sound some prefer, at the
price of the decoding. TimGM6mb, the smallest (31 MB RSS), is the last resort."""

PACKAGE_SOUNDFONTS: tuple[tuple[str, str], ...] = (("pretty_midi", "TimGM6mb.sf2"),)
"""(pip package, file inside the package folder), searched after the Debian fonts."""


def find_soundfont(configured: str | Path | None = None) -> Path:
    """The SoundFont to play with, as an absolute path.

    ``configured`` (a path, ``~`` allowed; ``None`` or ``""`` = search) wins and must exist and look like
    a SoundFont; otherwise the first usable file of :func:`search_paths`. Raises ``SoundFontError``
    saying what to install or fix when nothing usable is found.
    """
    if configured not in (None, ""):
        path = Path(configured).expanduser()
        if not path.is_file():
            raise SoundFontError(
                f"the configured SoundFont {path} does not exist; fix [synth] soundfont in musicbox.toml "
                'or set it to "" to search the usual places'
            )
        _check_header(path)
        return path.resolve()
    for path in search_paths():
        if not path.is_file():
            continue
        try:
            _check_header(path)
        except SoundFontError as err:
            log.warning("skipping %s", err)
            continue
        return path.resolve()
    raise SoundFontError(_missing_message())


def search_paths() -> list[Path]:
    """Candidate files in search order (they may not exist): Debian fonts, then pip packages' fonts."""
    paths = [path for path, _ in DEBIAN_SOUNDFONTS]
    for package, filename in PACKAGE_SOUNDFONTS:
        folder = _package_folder(package)
        if folder is not None:
            paths.append(folder / filename)
    return paths


def _package_folder(package: str) -> Path | None:
    """Folder of an installed top-level package, found without importing it; None if not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _check_header(path: Path) -> None:
    """Raise ``SoundFontError`` unless ``path`` starts with a RIFF ``sfbk`` header (.sf2 / .sf3)."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError as err:
        raise SoundFontError(f"cannot read the SoundFont {path}: {err}") from err
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise SoundFontError(
            f"{path} is not a SoundFont (.sf2/.sf3 files start with a RIFF 'sfbk' header); "
            "point [synth] soundfont in musicbox.toml at a General MIDI .sf2 or .sf3 file"
        )


def _missing_message() -> str:
    debian = ", ".join(f"{path} ({package})" for path, package in DEBIAN_SOUNDFONTS)
    pip = ", ".join(f"{filename} from pip package {package}" for package, filename in PACKAGE_SOUNDFONTS)
    apt = " or ".join(f"`sudo apt install {package}`" for _, package in DEBIAN_SOUNDFONTS)
    pips = " or ".join(f"`pip install {package}`" for package, _ in PACKAGE_SOUNDFONTS)
    return (
        f"no General MIDI SoundFont found; looked for {debian}, then {pip}. "
        f"Install one: {apt} (Debian/Raspberry Pi OS), or {pips}, "
        "or set [synth] soundfont in musicbox.toml to a .sf2/.sf3 file"
    )
