"""What the remote lists and keeps: presets (knob settings with the seed) and the recordings folder.

Presets live in ``presets.json`` in the remote's state folder: a list of ``{"name", "style",
"tempo_bpm", "mood", "seed", "variation", "meter"}``, written atomically. The page saves and recalls
them; the box steps through the same file (:class:`PresetStepper`), with the remote on or off. Recordings are the WAV/MIDI pairs the SAVE button
writes; a request names a file by its bare name only, which must match :data:`FILE_NAME` and resolve to
a regular file directly inside the recordings folder, so no request reaches any other file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from musicbox.runtime.controls import VARIATION, Controls

log = logging.getLogger("musicbox.remote")

FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.(wav|mid)")
RECORDING_TYPES = {"wav": "audio/wav", "mid": "audio/midi"}
MAX_PRESETS = 64


@dataclass(frozen=True)
class Preset:
    """Knob settings and the generator seed under a ``name`` (1..40 printable characters); ``meter`` as
    ``Controls.meter`` ("" = the style's own)."""

    name: str
    style: float
    tempo_bpm: float
    mood: float
    seed: int
    variation: float = VARIATION
    meter: str = ""

    @property
    def controls(self) -> Controls:
        """The knob settings it keeps."""
        return Controls(self.style, self.tempo_bpm, self.mood, self.variation, self.meter)


class Presets:
    """The presets file; thread-safe. ``path``: ``presets.json``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def saved(self) -> list[Preset]:
        """The saved presets, in saving order (an unreadable file is logged and reads as empty)."""
        try:
            data = json.loads(self.path.read_text())
            return [Preset(**item) for item in data]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError) as exc:
            log.warning("remote: presets file %s unreadable (%s); starting a new one", self.path, exc)
            return []

    def save(self, preset: Preset) -> None:
        """Add ``preset`` (replacing one of the same name)."""
        with self._lock:
            presets = [p for p in self.saved() if p.name != preset.name] + [preset]
            self._write(presets[-MAX_PRESETS:])

    def delete(self, name: str) -> bool:
        """Remove the preset called ``name``; False when there is none."""
        with self._lock:
            presets = self.saved()
            kept = [p for p in presets if p.name != name]
            if len(kept) != len(presets):
                self._write(kept)
            return len(kept) != len(presets)

    def get(self, name: str) -> Preset | None:
        return next((p for p in self.saved() if p.name == name), None)

    def _write(self, presets: list[Preset]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps([asdict(p) for p in presets], indent=1) + "\n")
        os.replace(tmp, self.path)


class PresetStepper:
    """The box's own way through the presets the page saved (a button or a key on the box): each
    :meth:`step` gives the preset after the last one stepped to, in saving order, the first again after
    the last. The file is read at every step, so a preset saved or deleted on the page counts at once."""

    def __init__(self, presets: Presets):
        self.presets = presets
        self.current: str | None = None  # the name of the preset stepped to last

    def step(self) -> Preset | None:
        """The next preset (None when none is saved)."""
        saved = self.presets.saved()
        if not saved:
            return None
        names = [p.name for p in saved]
        at = names.index(self.current) + 1 if self.current in names else 0
        preset = saved[at % len(saved)]
        self.current = preset.name
        return preset


def valid_preset_name(name) -> bool:
    return isinstance(name, str) and 1 <= len(name) <= 40 and name.isprintable() and name.strip() == name


class Recordings:
    """The recordings folder (``[recording] folder``), read-only but for :meth:`delete`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).expanduser()

    def listing(self) -> list[dict]:
        """One entry per recording stem, newest first: ``name`` (stem), ``files`` (bare file names),
        ``bytes`` (total), ``mtime`` (seconds since the epoch)."""
        entries: dict[str, dict] = {}
        try:
            scan = list(os.scandir(self.folder))
        except FileNotFoundError:
            return []
        for item in scan:
            if not FILE_NAME.fullmatch(item.name) or not item.is_file(follow_symlinks=False):
                continue
            stat = item.stat(follow_symlinks=False)
            stem = item.name.rsplit(".", 1)[0]
            entry = entries.setdefault(stem, {"name": stem, "files": [], "bytes": 0, "mtime": 0.0})
            entry["files"].append(item.name)
            entry["bytes"] += stat.st_size
            entry["mtime"] = max(entry["mtime"], stat.st_mtime)
        for entry in entries.values():
            entry["files"].sort()
        return sorted(entries.values(), key=lambda e: e["mtime"], reverse=True)

    def file(self, name: str) -> Path | None:
        """The recording file called ``name`` (a bare name like ``musicbox-20260101-120000.wav``), or
        None when the name is not one (a path, a dot file, another type) or no such regular file sits
        directly in the folder."""
        if not isinstance(name, str) or not FILE_NAME.fullmatch(name):
            return None
        path = self.folder / name
        try:
            if path.is_symlink() or not path.is_file() or path.resolve().parent != self.folder.resolve():
                return None
        except OSError:
            return None
        return path

    def delete(self, stem: str) -> list[str]:
        """Delete the WAV and MIDI of recording ``stem``; the names deleted (empty: none found)."""
        gone = []
        for ext in RECORDING_TYPES:
            path = self.file(f"{stem}.{ext}")
            if path is not None:
                path.unlink()
                gone.append(path.name)
        if gone:
            log.info("remote: deleted recording %s", ", ".join(gone))
        return gone
