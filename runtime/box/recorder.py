"""What the box played, kept for the SAVE button: recent PCM and notes, written as WAV + MIDI.

The supervisor hands over each bar as it ends (:meth:`Recorder.add_bar`, main thread, never the audio
callback). PCM is kept as int16 in a preallocated circular buffer of ``minutes_kept`` minutes (memory:
10.1 MiB per minute at 44.1 kHz stereo, counted in the box's memory check, ``runtime/buffering.py``),
notes as :class:`PlayedBar` objects.

SAVE copies nothing. :meth:`Recorder.save` freezes the extent at the press: views of the ring (oldest
first), the bars' list and the bar playing as far as it has played (one bar, converted to int16); a
background writer thread writes the WAV from those views in blocks and then the MIDI file. While any save
is pending (queued or writing) it holds a lease on the ring: new bars go to a side buffer instead of the
ring, and are moved into the ring once the last save is done, so the frozen frames are never overwritten
while they are written. Saves pressed at once each get their own extent (sharing the ring and the side
buffer) and their own files, written one after another (so the free-space check of each is right). Should
the disk be so slow that the side buffer reaches :data:`SIDE_S` seconds, the leases are revoked: the ring
takes new bars again and the saves still writing fail, saying so (the box never waits for the disk and its
memory stays bounded).

Each file goes to a temporary name in the recordings folder and is then ``os.replace``-d into place, so a
file either appears whole or not at all. A save that cannot be written (too little free space, checked
first; a read-only or failing disk: an OSError or libsndfile's error) is one log line saying what to free
or fix, and is counted; the temporary file is removed; earlier recordings are untouched and playback never
waits for the disk. Temporary files left by a box that was killed while saving are removed at the next
start (:meth:`Recorder.remove_leftovers`).
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

from musicbox.runtime.buffering import SIDE_S  # the side buffer's seconds, counted in the memory check
from musicbox.runtime.controls import Controls
from musicbox.runtime.heap import trim_heap
from musicbox.runtime.meter import COMMON, Meter

log = logging.getLogger("musicbox.recorder")

STEM = "musicbox-"  # saves are musicbox-YYYYmmdd-HHMMSS[-n].wav/.mid; their temporary files .<name>.tmp
BLOCK_FRAMES = 65536  # frames a WAV is written at a time (256 KiB of 16-bit stereo)


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


class Save:
    """One SAVE press: the extent frozen at the press (``parts``: int16 views of the ring, side-buffer
    blocks and the bar playing, oldest first; the bars; where the MIDI file ends), written by the
    recorder's writer thread. :meth:`join` waits for it; ``ok``/``error`` say how it went."""

    def __init__(self, stem: str, parts: list[np.ndarray], bars: list[PlayedBar], seconds: float | None):
        self.stem = stem
        self.parts = parts
        self.frames = sum(len(p) for p in parts)
        self.bars = bars
        self.seconds = seconds
        self.revoked = False  # set by the main thread before it writes the ring again (see SIDE_S)
        self.ok = False
        self.error = ""
        self.files: tuple[Path, ...] = ()
        self._done = threading.Event()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the files (or the failure); True when done."""
        return self._done.wait(timeout)

    def done(self) -> bool:
        return self._done.is_set()


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
        # saves pending (queued or writing): while one holds its lease, new PCM goes to the side buffer
        self._lock = threading.Lock()
        self._pending: list[Save] = []
        self._queue: collections.deque[Save] = collections.deque()
        self._writing = False  # a writer thread runs (it ends when the queue is empty)
        self._side: list[np.ndarray] = []
        self._side_frames = 0
        self.side_limit = min(frames, int(SIDE_S * sample_rate))  # frames the side buffer may hold
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
        self._append_pcm(_int16(pcm[-self._pcm.shape[0] :]))
        self._bars.append(played_bar(pcm, notes, info, turn, played))
        self._kept_s += pcm.shape[0] / self.sample_rate
        while len(self._bars) > 1 and self._kept_s - self._bars[0].frames / self.sample_rate >= self.keep_s:
            self._kept_s -= self._bars.popleft().frames / self.sample_rate

    def _append_pcm(self, data: np.ndarray) -> None:
        """Main thread: into the side buffer while a save holds its lease, else (after the side buffer)
        into the ring."""
        with self._lock:
            leased = [s for s in self._pending if not s.revoked]
            if leased and self._side_frames + len(data) > self.side_limit:
                for save in leased:  # the disk is too slow: the ring is taken back, these saves fail
                    save.revoked = True
                leased = []
            if leased:
                self._side.append(data)
                self._side_frames += len(data)
                return
            side, self._side, self._side_frames = self._side, [], 0
        for block in side:
            self._put(block)
        self._put(data)

    def _put(self, data: np.ndarray) -> None:
        size = self._pcm.shape[0]
        data = data[-size:]
        first = min(data.shape[0], size - self._pos)
        self._pcm[self._pos : self._pos + first] = data[:first]
        self._pcm[: data.shape[0] - first] = data[first:]
        self._pos = (self._pos + data.shape[0]) % size
        self._filled = min(size, self._filled + data.shape[0])

    def last_bar(self) -> PlayedBar | None:
        """The bar played most recently (None before the first); safe to call from another thread."""
        return self._bars[-1] if self._bars else None

    def _extent(self) -> list[np.ndarray]:
        """Main thread, under the lock: the kept PCM as views, oldest first (the ring, then the side
        buffer), at most the ring's length. Nothing is copied."""
        if self._filled < self._pcm.shape[0]:
            parts = [self._pcm[: self._filled]]
        else:
            parts = [self._pcm[self._pos :], self._pcm[: self._pos]]
        parts += self._side
        extra = sum(len(p) for p in parts) - self._pcm.shape[0]
        while extra > 0 and parts:  # more than the ring holds (the side buffer grew): drop the oldest
            cut = min(extra, len(parts[0]))
            parts[0] = parts[0][cut:]
            extra -= cut
            if not len(parts[0]):
                parts.pop(0)
        return [p for p in parts if len(p)]

    def save(self, playing: tuple[np.ndarray, PlayedBar] | None = None) -> Save | None:
        """SAVE (main thread): freeze the recent music and write it in the background; returns the
        :class:`Save` (None: nothing played yet). ``playing``: the bar playing, as far as it has played
        (float32 PCM and its bar): the files end where the music is now (the MIDI file is cut there).
        Saves pressed while others are pending each get their own files, written after those."""
        bars = list(self._bars)
        seconds = None  # the MIDI file ends at its last bar line
        tail: list[np.ndarray] = []
        if playing is not None and len(playing[0]):
            tail = [_int16(playing[0])]
            bars.append(playing[1])
            seconds = sum(b.frames for b in bars) / self.sample_rate  # ... or where the partial bar ends
        if not bars:
            log.info("save: nothing played yet")
            return None
        stem = time.strftime(f"{STEM}%Y%m%d-%H%M%S")
        with self._lock:
            job = Save(stem, self._extent() + tail, bars, seconds)
            self._pending.append(job)
            self._queue.append(job)
            start = not self._writing
            self._writing = True
        if start:
            threading.Thread(target=self._writer, name="musicbox-save", daemon=True).start()
        return job

    def pending(self) -> int:
        """Saves queued or being written."""
        with self._lock:
            return len(self._pending)

    def wait(self, timeout_s: float = 30.0) -> None:
        """Wait (up to ``timeout_s`` seconds each) for saves in progress."""
        with self._lock:
            jobs = list(self._pending)
        for job in jobs:
            job.join(timeout_s)

    def _writer(self) -> None:
        """The writer thread: the queued saves, one after another; ends when none is left."""
        while True:
            with self._lock:
                if not self._queue:
                    self._writing = False
                    return
                job = self._queue.popleft()
            try:
                self._write(job)
            except Exception as exc:  # a bug, not the disk: said once, and the next saves still run
                self.failures += 1
                job.error = self.last_error = f"{type(exc).__name__}: {exc}"
                self.last_event = f"save failed: {job.error}"
                log.exception("save failed, playing on")
            finally:
                with self._lock:
                    self._pending.remove(job)
                job.parts = []  # the views and side blocks go with it
                job._done.set()
            trim_heap()  # the MIDI file's objects were freed in this thread's arena: hand them back

    def _write(self, job: Save) -> None:
        import soundfile

        channels = self._pcm.shape[1]
        need = job.frames * channels * 2 + 64 * 1024  # the WAV, its header and the MIDI file
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _check_room(self.folder, need)
            wav = _unique(self.folder, job.stem, ".wav")
            _atomic(wav, lambda tmp: _write_wav(tmp, job, self.sample_rate, channels))
            mid = wav.with_suffix(".mid")
            _atomic(mid, lambda tmp: _write_midi(tmp, job.bars, self.styles, job.seconds))
        except (OSError, soundfile.SoundFileError) as exc:
            self.failures += 1
            self.last_error = str(exc) if isinstance(exc, SaveError) else _explain(self.folder, need, exc)
            job.error = self.last_error
            log.error("save failed, playing on: %s", self.last_error)
            self.last_event = f"save failed: {self.last_error}"
            return
        self.saves += 1
        job.ok, job.files = True, (wav, mid)
        self.last_saved = (wav, mid)
        self.last_event = f"saved {wav} and {mid.name}"
        log.info(
            "saved %s and %s (%.0f s of audio, %d bars)",
            wav,
            mid.name,
            job.frames / self.sample_rate,
            len(job.bars),
        )


def _int16(pcm: np.ndarray) -> np.ndarray:
    return (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16)


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


def _write_wav(path: Path, job: Save, sample_rate: int, channels: int) -> None:
    """The save's PCM into a 16-bit WAV file at ``path``, a block at a time straight from its views;
    fails when its lease was revoked (the ring may have been overwritten under it)."""
    import soundfile

    with soundfile.SoundFile(
        str(path), "w", samplerate=sample_rate, channels=channels, subtype="PCM_16", format="WAV"
    ) as out:
        for part in job.parts:
            for at in range(0, len(part), BLOCK_FRAMES):
                out.write(part[at : at + BLOCK_FRAMES])
                if job.revoked:  # checked after the read: a block read before it was set is intact
                    raise SaveError(
                        f"{path.parent} wrote too slowly: {SIDE_S:.0f} s of new music came while this "
                        f"save was pending, so it was given up; check that disk (`dmesg`, `df -h "
                        f"{path.parent}`) or set [recording] folder to a faster one"
                    )


def _write_midi(path: Path, bars: list[PlayedBar], styles, seconds: float | None = None) -> None:
    """The bars as one MIDI file with their tempo map, time signatures and instruments
    (``midi.played_to_midi``), cut at ``seconds`` (the WAV's end)."""
    from musicbox.runtime.midi import played_to_midi

    played_to_midi(bars, path, styles, seconds=seconds)
