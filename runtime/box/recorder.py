"""What the box played, kept for the SAVE button: recent PCM and notes, written as WAV + MIDI.

The supervisor hands over each bar as it starts playing (:meth:`Recorder.add_bar`, main thread, never
the audio callback). PCM is kept as int16 in a preallocated circular buffer of ``minutes_kept`` minutes
(memory: 10.1 MiB per minute at 44.1 kHz stereo, counted in the box's memory check), notes as long.

:meth:`Recorder.save` snapshots both on the calling thread (a copy of the PCM, milliseconds) and writes
the files on a background thread, each to a temporary name in the recordings folder and then
``os.replace``-d into place, so a file either appears whole or not at all. A save that cannot be written
(too little free space, checked first; a read-only or failing disk: an OSError or libsndfile's error) is
one log line saying what to free or fix, and is counted; the temporary file is removed; earlier recordings
are untouched and playback never waits for the disk. Temporary files left by a box that was killed while
saving are removed at the next start (:meth:`Recorder.remove_leftovers`).
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musicbox.runtime.controls import Controls
from musicbox.runtime.meter import COMMON, Meter

log = logging.getLogger("musicbox.recorder")

STEM = "musicbox-"  # saves are musicbox-YYYYmmdd-HHMMSS[-n].wav/.mid; their temporary files .<name>.tmp


class SaveError(OSError):
    """A save could not be written; the message says what to free or fix."""


@dataclass(frozen=True)
class PlayedBar:
    """A bar as played: its notes (``pianoroll.Note``, steps from the bar line), controls, frames and
    meter (its time signature and length in steps in the saved MIDI file); turn: ``(step, controls
    before)`` when a knob turned at that beat line inside it; played: its notes as the synth played them
    (``arrangement.Played``: velocities, micro-timing, drums), what the saved MIDI file holds; stretch: how
    much longer than its tempo says the performance made it (its MIDI tempo is ``bpm / stretch``)."""

    notes: list
    controls: Controls
    frames: int
    meter: Meter = COMMON
    turn: tuple[int, Controls] | None = None
    played: list = field(default_factory=list)
    stretch: float = 1.0


def played_bar(pcm: np.ndarray, notes: list, info, turn=None, played: list | None = None) -> PlayedBar:
    """The :class:`PlayedBar` of PCM ``[frames, channels]`` played with ``notes`` as the worker's
    ``Written`` ``info`` says (None: unknown), a knob ``turn`` inside it and its notes as played."""
    controls = info.controls if info is not None else Controls()
    meter = info.meter if info is not None else COMMON
    stretch = float(getattr(info, "stretch", 1.0)) if info is not None else 1.0
    return PlayedBar(list(notes), controls, pcm.shape[0], meter, turn, list(played or []), stretch)


class Recorder:
    """Recent music of the box. ``folder``: where saves go; ``minutes_kept``: minutes of music kept (audio
    and notes); ``sample_rate``: Hz; ``pcm_minutes``: minutes of audio kept if fewer (tests)."""

    def __init__(
        self,
        folder: Path,
        minutes_kept: float = 10.0,
        sample_rate: int = 44100,
        pcm_minutes: float | None = None,
        channels: int = 2,
        styles=None,
    ):
        self.folder = Path(folder).expanduser()
        self.styles = styles  # the manifest's controls: each saved bar's instruments (None: GM piano)
        self.sample_rate = sample_rate
        self.keep_s = minutes_kept * 60.0
        frames = int(min(pcm_minutes or minutes_kept, minutes_kept) * 60.0 * sample_rate)
        self._pcm = np.zeros((frames, channels), np.int16)
        self._pcm.fill(0)  # commit the pages now: the resident size stays flat while playing
        self._pos = 0
        self._filled = 0
        self._bars: collections.deque[PlayedBar] = collections.deque()
        self._kept_s = 0.0
        self._threads: list[threading.Thread] = []
        self.saves = 0
        self.failures = 0
        self.last_error = ""
        self.last_saved: tuple[Path, ...] = ()
        self.last_event = ""  # what the last save did, for the UI: where the files went, or why not

    def remove_leftovers(self) -> list[Path]:
        """Delete the temporary files of saves a killed box never finished (they hold no whole file);
        returns them. Call at start, before the first save."""
        gone = []
        for tmp in sorted(self.folder.glob(f".{STEM}*.tmp")) if self.folder.is_dir() else []:
            try:
                tmp.unlink()
            except OSError as exc:
                log.warning("cannot remove %s, left by an interrupted save: %s", tmp, exc)
                continue
            gone.append(tmp)
            log.warning("removed %s, an unfinished save left by a box that was stopped while saving", tmp)
        return gone

    def add_bar(
        self,
        pcm: np.ndarray,
        notes: list,
        info,
        turn: tuple[int, Controls] | None = None,
        played: list | None = None,
    ) -> None:
        """Append one played bar: float32 PCM ``[frames, channels]``, its notes, the worker's
        :class:`~musicbox.runtime.box.worker.Written` (for its controls and meter; None if unknown),
        the ``(step, controls before)`` of a knob turn inside it and its notes as played (``Played``)."""
        self._append_pcm(pcm)
        self._bars.append(played_bar(pcm, notes, info, turn, played))
        self._kept_s += pcm.shape[0] / self.sample_rate
        while len(self._bars) > 1 and self._kept_s - self._bars[0].frames / self.sample_rate >= self.keep_s:
            self._kept_s -= self._bars.popleft().frames / self.sample_rate

    def _append_pcm(self, pcm: np.ndarray) -> None:
        size = self._pcm.shape[0]
        pcm = pcm[-size:]
        data = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16)
        first = min(data.shape[0], size - self._pos)
        self._pcm[self._pos : self._pos + first] = data[:first]
        self._pcm[: data.shape[0] - first] = data[first:]
        self._pos = (self._pos + data.shape[0]) % size
        self._filled = min(size, self._filled + data.shape[0])

    def last_bar(self) -> PlayedBar | None:
        """The bar played most recently (None before the first); safe to call from another thread."""
        return self._bars[-1] if self._bars else None

    def snapshot(self) -> tuple[np.ndarray, list[PlayedBar]]:
        """A copy of the kept PCM (oldest first) and the kept bars."""
        if self._filled < self._pcm.shape[0]:
            pcm = self._pcm[: self._filled].copy()
        else:
            pcm = np.concatenate([self._pcm[self._pos :], self._pcm[: self._pos]])
        return pcm, list(self._bars)

    def save(self, playing: tuple[np.ndarray, PlayedBar] | None = None) -> threading.Thread | None:
        """Write the recent music in the background; returns the writing thread (None: nothing yet).
        ``playing``: the bar playing, as far as it has played (float32 PCM and its bar): the files end
        where the music is now (the MIDI file is cut there)."""
        pcm, bars = self.snapshot()
        seconds = None  # the MIDI file ends at its last bar line
        if playing is not None and len(playing[0]):
            pcm = np.concatenate([pcm, (np.clip(playing[0], -1.0, 1.0) * 32767.0).astype(np.int16)])
            bars = [*bars, playing[1]]
            seconds = sum(b.frames for b in bars) / self.sample_rate  # ... or where the partial bar ends
        if not bars:
            log.info("save: nothing played yet")
            return None
        stem = time.strftime(f"{STEM}%Y%m%d-%H%M%S")
        thread = threading.Thread(
            target=self._write, args=(stem, pcm, bars, seconds), name="musicbox-save", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def wait(self, timeout_s: float = 30.0) -> None:
        """Wait (up to ``timeout_s`` seconds each) for saves in progress."""
        for thread in self._threads:
            thread.join(timeout_s)

    def _write(self, stem: str, pcm: np.ndarray, bars: list[PlayedBar], seconds: float | None = None) -> None:
        import soundfile

        need = pcm.nbytes + 64 * 1024  # the WAV, its header and the MIDI file
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _check_room(self.folder, need)
            wav = _unique(self.folder, stem, ".wav")
            _atomic(wav, lambda tmp: _write_wav(tmp, pcm, self.sample_rate))
            mid = wav.with_suffix(".mid")
            _atomic(mid, lambda tmp: _write_midi(tmp, bars, self.styles, seconds))
        except (OSError, soundfile.SoundFileError) as exc:
            self.failures += 1
            self.last_error = str(exc) if isinstance(exc, SaveError) else _explain(self.folder, need, exc)
            log.error("save failed, playing on: %s", self.last_error)
            self.last_event = f"save failed: {self.last_error}"
            return
        self.saves += 1
        self.last_saved = (wav, mid)
        self.last_event = f"saved {wav} and {mid.name}"
        log.info(
            "saved %s and %s (%.0f s of audio, %d bars)",
            wav,
            mid.name,
            len(pcm) / self.sample_rate,
            len(bars),
        )


def _check_room(folder: Path, need: int) -> None:
    """Raise SaveError when ``folder``'s disk has fewer than ``need`` bytes free (nothing is written)."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise SaveError(
            f"{folder} is full: {free / 2**20:.1f} MiB free, a save needs {need / 2**20:.1f} MiB; free space "
            "there, set [recording] folder to a bigger disk, or lower [recording] minutes_kept"
        )


def _explain(folder: Path, need: int, exc: Exception) -> str:
    """One line for a failed write: what went wrong and what to do (libsndfile only says "System error")."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if (folder.is_dir() and not os.access(folder, os.W_OK)) or getattr(exc, "errno", None) == errno.EROFS:
        return (
            f"{folder} is not writable ({reason}): remount it read-write, fix its permissions, or set "
            "[recording] folder to a writable folder"
        )
    if free is not None and free < need:
        return (
            f"{folder} ran full while saving ({free / 2**20:.1f} MiB free, a save needs {need / 2**20:.1f} "
            "MiB): free space there or lower [recording] minutes_kept"
        )
    return f"cannot write to {folder}: {reason}; check that disk (`dmesg`, `df -h {folder}`)"


def _unique(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem.suffix``, or with ``-1``, ``-2``... when a recording of that name exists."""
    path, n = folder / f"{stem}{suffix}", 0
    while path.exists() or path.with_suffix(".mid").exists():
        n += 1
        path = folder / f"{stem}-{n}{suffix}"
    return path


def _atomic(path: Path, write) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, fsync it, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_wav(path: Path, pcm: np.ndarray, sample_rate: int) -> None:
    import soundfile

    soundfile.write(str(path), pcm, sample_rate, subtype="PCM_16", format="WAV")


def _write_midi(path: Path, bars: list[PlayedBar], styles, seconds: float | None = None) -> None:
    """The bars as one MIDI file with their tempo map, time signatures and instruments
    (``midi.played_to_midi``), cut at ``seconds`` (the WAV's end)."""
    from musicbox.runtime.midi import played_to_midi

    played_to_midi(bars, path, styles, seconds=seconds)
