"""A shared-memory ring of PCM bars between the worker process (producer) and the player (consumer).

Single producer, single consumer, no locks. Each *slot* holds one published *entry*: a rendered bar, or
the rest of a bar from one of its beat lines (a *splice*, written after a knob turn), with its ``bar``
number, the ``gen``eration id it was made under, its length in frames, the grid step it starts at and
the bar's beat lines. Entries are numbered in publishing order. The player chooses what to play:

- at a bar line, the smallest bar number after the one playing among entries that start at the bar line
  (a bar the worker skipped is skipped, never waited for); among those, the highest generation, then the
  latest entry;
- at a beat line inside the bar, an entry of the *same* bar from a newer generation that starts at or
  before that beat line: the rest of the bar as the turned knobs want it (a splice, crossfaded by the
  player).

A control change raises the generation; the worker then writes the rest of the playing bar and the
following bars again. Stale entries stay playable until a newer one replaces them (old music beats
silence). Slots are handed back and forth with a per-slot FREE flag: the player (the only reader) marks a
slot free once its entry can never play again (its bar has passed, or a newer entry of its bar was
published before the player's current pass); the worker (the only writer) only writes into free slots
and clears the flag last. So the player never reads a slot being written, and however many generations a
swept knob makes, superseded entries free their slots at once: the ring never clogs.

The header also holds the worker's heartbeat (a counter and a ``time.monotonic()`` stamp, which is the
system-wide CLOCK_MONOTONIC on Linux and so comparable between processes; stamped by the worker's
heartbeat thread, so it stops only when the whole process does), its main thread's progress stamp (each
loop turn and bar) and the player's position.

Publishing order: the writer copies the PCM, fences, writes the slot's metadata, fences, clears FREE,
fences, then raises the entry count. The fence (a lock release followed by an acquire, i.e. a full barrier
with glibc) keeps those stores in order on weakly ordered CPUs (ARM). The player only reads slots that
are not free and whose entry is below the count it read.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

from musicbox.errors import MusicBoxError

# int64 header fields
_WRITTEN = 0  # entries published so far (the next entry number)
_PLAYING_ENTRY = 1  # entry the player is in, -1 before the first bar
_PLAYING_BAR = 2  # bar number of that entry, -1 before the first bar
_PLAYING_GEN = 3  # generation of that entry
_BEATS = 4  # worker heartbeat counter
_WORKER_PID = 5  # pid of the worker that beat last
_BARS_PLAYED = 6  # bars the player has started
_SPLICES = 7  # splices the player has made (a newer entry of the playing bar taken at a beat line)
_N_INTS = 8
# float64 header fields
_BEAT_TIME = 0  # time.monotonic() of the last heartbeat, seconds
_PROGRESS_TIME = 1  # time.monotonic() when the worker's main thread last made progress, seconds
_N_FLOATS = 2
# per-slot metadata
_M_ENTRY, _M_BAR, _M_GEN, _M_FRAMES, _M_FIRST, _M_STEPS, _M_BEATS, _M_FREE = range(8)
_N_META = 8


class RingError(MusicBoxError, ValueError):
    """A bar does not fit the ring (too long for a slot, wrong channel count, no free slot)."""


@dataclass(frozen=True)
class RingSpec:
    """How to find and read a ring; picklable, sent to the worker.

    name: shared-memory block name (``/dev/shm/<name>``).
    n_slots: entries the ring holds (written ahead, the playing one, the one a splice fades out of, and
    stale ones after a change).
    slot_frames: capacity of one slot in audio frames (the longest bar at the slowest tempo).
    channels: interleaved channels per frame (2, stereo).
    """

    name: str
    n_slots: int
    slot_frames: int
    channels: int = 2

    @property
    def nbytes(self) -> int:
        """Total size of the shared block in bytes."""
        header = 8 * (_N_INTS + _N_FLOATS + self.n_slots * _N_META)
        return header + 4 * self.n_slots * self.slot_frames * self.channels


@dataclass(frozen=True)
class Span:
    """Where an entry lies in its bar, in grid steps: it starts at step ``first`` of a bar of ``steps``
    steps whose beat lines are the steps set in ``beats`` (bit s = step s)."""

    first: int = 0
    steps: int = 16
    beats: int = 0x1111  # 4/4: steps 0, 4, 8, 12

    @classmethod
    def of(cls, beat_steps: tuple[int, ...], steps: int, first: int = 0) -> Span:
        """The span from step ``first`` of a bar of ``steps`` steps beating at ``beat_steps``."""
        return cls(first, steps, sum(1 << s for s in beat_steps))


def _fence(lock: threading.Lock) -> None:
    """A full memory barrier (glibc's mutex unlock/lock are release/acquire operations)."""
    lock.acquire()
    lock.release()
    lock.acquire()
    lock.release()


class BarRing:
    """Views onto one shared block; ``create`` in the main process, ``attach`` in the worker."""

    def __init__(self, spec: RingSpec, shm: shared_memory.SharedMemory, owner: bool):
        self.spec = spec
        self._shm = shm
        self._owner = owner
        self._lock = threading.Lock()
        buf = shm.buf
        off = 0
        self._ints = np.ndarray((_N_INTS,), np.int64, buf, off)
        self._int_view = self._ints.data  # a plain read of one field: a Python int, no numpy call
        off += 8 * _N_INTS
        self._floats = np.ndarray((_N_FLOATS,), np.float64, buf, off)
        off += 8 * _N_FLOATS
        self._meta = np.ndarray((spec.n_slots, _N_META), np.int64, buf, off)
        off += 8 * spec.n_slots * _N_META
        self.pcm = np.ndarray((spec.n_slots, spec.slot_frames, spec.channels), np.float32, buf, off)
        self.held = -1  # consumer side: a slot the player still reads besides the playing one (a fade)
        self._swept: tuple[int, ...] = ()  # consumer side: what the last sweep saw (see sweep)

    @classmethod
    def create(cls, n_slots: int, slot_frames: int, channels: int = 2) -> BarRing:
        """Allocate a new zeroed ring (the main process owns and finally unlinks it)."""
        if n_slots < 3 or slot_frames < 1:
            raise RingError(f"ring needs >= 3 slots and >= 1 frame per slot, got {n_slots}, {slot_frames}")
        size = RingSpec("", n_slots, slot_frames, channels).nbytes
        shm = shared_memory.SharedMemory(create=True, size=size)
        ring = cls(RingSpec(shm.name, n_slots, slot_frames, channels), shm, owner=True)
        ring._meta[:] = -1
        ring._meta[:, _M_FREE] = 1
        ring._ints[:] = 0
        ring._ints[[_PLAYING_ENTRY, _PLAYING_BAR, _PLAYING_GEN]] = -1
        ring._floats[:] = 0.0
        ring.pcm.fill(0.0)  # touch every page now so the resident size does not creep up later
        return ring

    @classmethod
    def attach(cls, spec: RingSpec) -> BarRing:
        """Open an existing ring by its spec (the worker side)."""
        return cls(spec, shared_memory.SharedMemory(name=spec.name), owner=False)

    def close(self) -> None:
        """Drop the views and the mapping; the owner also unlinks the block."""
        self._int_view.release()
        del self._ints, self._int_view, self._floats, self._meta, self.pcm  # no view may outlive the mapping
        self._shm.close()
        if self._owner:
            self._shm.unlink()

    # ---- producer (worker) -------------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Entries published so far; the next entry's number (read every audio callback)."""
        return self._int_view[_WRITTEN]

    def _free_slot(self) -> int:
        free = np.flatnonzero(self._meta[:, _M_FREE] == 1)
        return int(free[0]) if len(free) else -1

    def has_room(self) -> bool:
        """True when a slot is free (the player has let go of its entry)."""
        return self._free_slot() >= 0

    def bars_ahead(self) -> int:
        """Highest published bar minus the playing bar (0 when nothing is ahead)."""
        return max(0, self.last_bar() - int(self._ints[_PLAYING_BAR]))

    def last_bar(self) -> int:
        """Bar number of the latest published entry, -1 when the ring is empty."""
        slot = self._slot_of(self.written - 1)
        return -1 if slot < 0 else int(self._meta[slot, _M_BAR])

    def write_bar(self, bar: int, gen: int, pcm: np.ndarray, span: Span = Span()) -> int:
        """Publish float32 PCM ``[frames, channels]``: bar ``bar`` (or the part of it ``span`` says) of
        generation ``gen``; returns its entry number.

        Raises RingError when the bar is longer than a slot or no slot is free (check ``has_room``)."""
        frames = pcm.shape[0]
        if frames > self.spec.slot_frames or pcm.ndim != 2 or pcm.shape[1] != self.spec.channels:
            raise RingError(
                f"bar of shape {pcm.shape} does not fit a ring slot of "
                f"{self.spec.slot_frames} frames x {self.spec.channels} channels"
            )
        slot = self._free_slot()
        if slot < 0:
            raise RingError("no free ring slot: wait for has_room()")
        entry = self.written
        self.pcm[slot, :frames] = pcm
        _fence(self._lock)
        meta = self._meta[slot]
        meta[_M_BAR], meta[_M_GEN], meta[_M_FRAMES] = bar, gen, frames
        meta[_M_FIRST], meta[_M_STEPS], meta[_M_BEATS] = span.first, span.steps, span.beats
        meta[_M_ENTRY] = entry
        _fence(self._lock)
        meta[_M_FREE] = 0
        _fence(self._lock)
        self._ints[_WRITTEN] = entry + 1
        return entry

    def beat(self, pid: int) -> None:
        """Heartbeat: bump the counter and stamp the time (seconds, CLOCK_MONOTONIC)."""
        self._ints[_WORKER_PID] = pid
        self._floats[_BEAT_TIME] = time.monotonic()
        self._ints[_BEATS] += 1

    def mark_progress(self) -> None:
        """The worker's main thread is moving (a loop turn, a bar): stamp the time (CLOCK_MONOTONIC)."""
        self._floats[_PROGRESS_TIME] = time.monotonic()

    # ---- consumer (player callback): no allocation beyond numpy scalars/views ----------------------

    def _live(self, written: int):
        """(slot, entry, bar, gen) of each published slot, in slot order."""
        meta = self._meta
        for slot in range(self.spec.n_slots):
            if meta[slot, _M_FREE] == 0 and meta[slot, _M_ENTRY] < written:
                yield slot, int(meta[slot, _M_ENTRY]), int(meta[slot, _M_BAR]), int(meta[slot, _M_GEN])

    def pick_next(self) -> int:
        """Entry to play after the current bar, or -1 if none is published yet (see module docstring)."""
        written = int(self._ints[_WRITTEN])
        after = int(self._ints[_PLAYING_BAR])
        best, best_key = -1, (0, 0, 0)
        for slot, entry, bar, gen in self._live(written):
            if bar <= after or self._meta[slot, _M_FIRST] != 0:
                continue
            key = (-bar, gen, entry)
            if best < 0 or key > best_key:
                best, best_key = entry, key
        return best

    def pick_splice(self, step: int) -> int:
        """A newer entry of the playing bar that can take over at its beat line ``step`` (it starts there
        or before), or -1."""
        written = int(self._ints[_WRITTEN])
        playing_bar, playing_gen = int(self._ints[_PLAYING_BAR]), int(self._ints[_PLAYING_GEN])
        best, best_key = -1, (0, 0)
        for slot, entry, bar, gen in self._live(written):
            if bar != playing_bar or gen <= playing_gen or self._meta[slot, _M_FIRST] > step:
                continue
            if best < 0 or (gen, entry) > best_key:
                best, best_key = entry, (gen, entry)
        return best

    def start_entry(self, entry: int, splice: bool = False) -> int:
        """Mark ``entry`` as playing (``splice``: taken over inside its bar) and free what can no longer
        play; returns its length in frames."""
        meta = self._meta[self._slot_of(entry)]
        self._ints[_PLAYING_BAR] = meta[_M_BAR]
        self._ints[_PLAYING_GEN] = meta[_M_GEN]
        self._ints[_PLAYING_ENTRY] = entry
        self._ints[_SPLICES if splice else _BARS_PLAYED] += 1
        self.sweep()
        return int(meta[_M_FRAMES])

    def sweep(self) -> None:
        """Free the slots whose entries can never play again: bars before the playing one, entries of the
        playing bar that are not newer than it, and entries a newer one of the same bar replaces. Only
        published entries the player has read count, so nothing it may pick next is freed.

        What it frees follows from the entry count, the playing entry and :attr:`held` alone (a slot's
        metadata changes only as an entry is published), so a sweep that sees the same as the last one
        returns at once: the player calls it every callback."""
        ints = self._ints
        written, playing_entry = int(ints[_WRITTEN]), int(ints[_PLAYING_ENTRY])
        playing_bar, playing_gen = int(ints[_PLAYING_BAR]), int(ints[_PLAYING_GEN])
        seen = (written, playing_entry, playing_bar, playing_gen, self.held)
        if seen == self._swept:
            return
        self._swept = seen
        meta = self._meta
        newest: dict[int, tuple[int, int]] = {}  # bar -> (gen, entry) of the entry that would replace it
        for slot, entry, bar, gen in self._live(written):
            whole = bar > playing_bar and meta[slot, _M_FIRST] == 0
            splice = bar == playing_bar and gen > playing_gen
            if (whole or splice) and (gen, entry) > newest.get(bar, (-1, -1)):
                newest[bar] = (gen, entry)
        for slot, entry, bar, gen in self._live(written):
            if entry == playing_entry or slot == self.held:
                continue
            if (
                bar < playing_bar
                or (bar == playing_bar and gen <= playing_gen)
                or newest.get(bar, (-1, -1)) > (gen, entry)
            ):
                meta[slot, _M_FREE] = 1

    def span(self, entry: int) -> tuple[int, int, int]:
        """(first step, steps of the bar, beat-line bit mask) of a published entry."""
        meta = self._meta[self._slot_of(entry)]
        return int(meta[_M_FIRST]), int(meta[_M_STEPS]), int(meta[_M_BEATS])

    def slot_pcm(self, entry: int) -> np.ndarray:
        """The PCM view of ``entry``'s slot (``[slot_frames, channels]``; only the bar's frames are valid)."""
        return self.pcm[self._slot_of(entry)]

    def slot_index(self, entry: int) -> int:
        """The slot ``entry`` is in (-1 when it is no longer in the ring)."""
        return self._slot_of(entry)

    def _slot_of(self, entry: int) -> int:
        if entry < 0:
            return -1
        hits = np.flatnonzero(self._meta[:, _M_ENTRY] == entry)
        return int(hits[0]) if len(hits) else -1

    # ---- supervisor ---------------------------------------------------------------------------------

    def heartbeat(self) -> tuple[int, float, int]:
        """(beat counter, monotonic time of the last beat in seconds, pid that beat)."""
        return int(self._ints[_BEATS]), float(self._floats[_BEAT_TIME]), int(self._ints[_WORKER_PID])

    def progress_time(self) -> float:
        """Monotonic time (seconds) of the worker main thread's last :meth:`mark_progress`."""
        return float(self._floats[_PROGRESS_TIME])

    def playing(self) -> tuple[int, int, int]:
        """(entry, bar, generation) the player is in; -1s before the first bar."""
        ints = self._ints
        return int(ints[_PLAYING_ENTRY]), int(ints[_PLAYING_BAR]), int(ints[_PLAYING_GEN])

    @property
    def bars_played(self) -> int:
        """Bars the player has started since the ring was created."""
        return int(self._ints[_BARS_PLAYED])

    @property
    def splices(self) -> int:
        """Times the player took a newer entry of the playing bar at a beat line."""
        return int(self._ints[_SPLICES])

    def entry_info(self, entry: int) -> tuple[int, int, int]:
        """(bar, generation, frames) of a published entry still in the ring."""
        slot = self._slot_of(entry)
        if slot < 0:
            raise RingError(f"entry {entry} is no longer in the ring")
        meta = self._meta[slot]
        return int(meta[_M_BAR]), int(meta[_M_GEN]), int(meta[_M_FRAMES])
