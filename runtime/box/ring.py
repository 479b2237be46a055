"""A shared-memory ring of PCM bars between the worker process (producer) and the player (consumer).

Single producer, single consumer, no locks. The ring is an append-only log of *entries*: entry ``e``
lives in slot ``e % n_slots`` and carries one rendered bar (its ``bar`` number, the ``gen``eration id it
was made under, its length in frames). The worker appends entries; the player picks, at each bar line,
the next bar to play:

- the smallest bar number after the one playing (a bar the worker skipped is skipped, never waited for),
- among the entries of that bar, the highest generation, then the latest entry.

A control change raises the generation and makes the worker append the following bars again from the
first not-yet-playing bar; the stale entries stay in the log and are only played if the regenerated bar
is not ready at the bar line (old music beats silence). Nothing already published is ever rewritten, so
the player never reads a slot being written: the writer may only reuse a slot once the player can no
longer read it (``entry - kept < n_slots``, ``kept`` being the oldest entry that is playing or may still
be played as a fallback).

The header also holds the worker's heartbeat (a counter and a ``time.monotonic()`` stamp, which is the
system-wide CLOCK_MONOTONIC on Linux and so comparable between processes) and the player's position.

Publishing order: the writer copies the PCM, fences, then writes the entry's metadata and finally the
entry count. The fence (a lock release followed by an acquire, i.e. a full barrier with glibc) keeps the
PCM stores ahead of the count store on weakly ordered CPUs (ARM). The player only reads entries below the
count it has read.
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
_KEPT = 7  # oldest entry the player may still read (the playing one or a stale fallback after it)
_N_INTS = 8
# float64 header fields
_BEAT_TIME = 0  # time.monotonic() of the last heartbeat, seconds
_N_FLOATS = 2
# per-slot metadata
_M_ENTRY, _M_BAR, _M_GEN, _M_FRAMES = range(4)
_N_META = 4


class RingError(MusicBoxError, ValueError):
    """A bar does not fit the ring (too long for a slot, wrong channel count)."""


@dataclass(frozen=True)
class RingSpec:
    """How to find and read a ring; picklable, sent to the worker.

    name: shared-memory block name (``/dev/shm/<name>``).
    n_slots: bars the ring holds (written ahead plus the playing one plus stale ones after a change).
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
        off += 8 * _N_INTS
        self._floats = np.ndarray((_N_FLOATS,), np.float64, buf, off)
        off += 8 * _N_FLOATS
        self._meta = np.ndarray((spec.n_slots, _N_META), np.int64, buf, off)
        off += 8 * spec.n_slots * _N_META
        self.pcm = np.ndarray((spec.n_slots, spec.slot_frames, spec.channels), np.float32, buf, off)

    @classmethod
    def create(cls, n_slots: int, slot_frames: int, channels: int = 2) -> BarRing:
        """Allocate a new zeroed ring (the main process owns and finally unlinks it)."""
        if n_slots < 3 or slot_frames < 1:
            raise RingError(f"ring needs >= 3 slots and >= 1 frame per slot, got {n_slots}, {slot_frames}")
        size = RingSpec("", n_slots, slot_frames, channels).nbytes
        shm = shared_memory.SharedMemory(create=True, size=size)
        ring = cls(RingSpec(shm.name, n_slots, slot_frames, channels), shm, owner=True)
        ring._meta[:] = -1
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
        del self._ints, self._floats, self._meta, self.pcm  # no view may outlive the mapping
        self._shm.close()
        if self._owner:
            self._shm.unlink()

    # ---- producer (worker) -------------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Entries published so far; the next entry's number."""
        return int(self._ints[_WRITTEN])

    def has_room(self) -> bool:
        """True when the next entry's slot is free (the player has left it)."""
        return self.written - int(self._ints[_KEPT]) < self.spec.n_slots

    def bars_ahead(self) -> int:
        """Highest published bar minus the playing bar (0 when nothing is ahead)."""
        return max(0, self.last_bar() - int(self._ints[_PLAYING_BAR]))

    def last_bar(self) -> int:
        """Bar number of the latest published entry, -1 when the ring is empty."""
        written = self.written
        if written == 0:
            return -1
        return int(self._meta[(written - 1) % self.spec.n_slots, _M_BAR])

    def write_bar(self, bar: int, gen: int, pcm: np.ndarray) -> int:
        """Publish one bar of float32 PCM ``[frames, channels]``; returns its entry number.

        Raises RingError when the bar is longer than a slot; the caller must check ``has_room`` first.
        """
        frames = pcm.shape[0]
        if frames > self.spec.slot_frames or pcm.ndim != 2 or pcm.shape[1] != self.spec.channels:
            raise RingError(
                f"bar of shape {pcm.shape} does not fit a ring slot of "
                f"{self.spec.slot_frames} frames x {self.spec.channels} channels"
            )
        entry = self.written
        slot = entry % self.spec.n_slots
        self.pcm[slot, :frames] = pcm
        _fence(self._lock)
        self._meta[slot, _M_BAR] = bar
        self._meta[slot, _M_GEN] = gen
        self._meta[slot, _M_FRAMES] = frames
        self._meta[slot, _M_ENTRY] = entry
        _fence(self._lock)
        self._ints[_WRITTEN] = entry + 1
        return entry

    def beat(self, pid: int) -> None:
        """Heartbeat: bump the counter and stamp the time (seconds, CLOCK_MONOTONIC)."""
        self._ints[_WORKER_PID] = pid
        self._floats[_BEAT_TIME] = time.monotonic()
        self._ints[_BEATS] += 1

    # ---- consumer (player callback): no allocation beyond numpy scalars/views ----------------------

    def pick_next(self) -> int:
        """Entry to play after the current bar, or -1 if none is published yet (see module docstring)."""
        written = int(self._ints[_WRITTEN])
        after = int(self._ints[_PLAYING_BAR])
        best, best_bar, best_gen = -1, 0, 0
        n = self.spec.n_slots
        for entry in range(int(self._ints[_KEPT]), written):
            meta = self._meta[entry % n]
            bar, gen = int(meta[_M_BAR]), int(meta[_M_GEN])
            if bar <= after:
                continue
            if best < 0 or bar < best_bar or (bar == best_bar and gen >= best_gen):
                best, best_bar, best_gen = entry, bar, gen
        return best

    def start_entry(self, entry: int) -> int:
        """Mark ``entry`` as playing and free what can no longer play; returns its length in frames."""
        n = self.spec.n_slots
        meta = self._meta[entry % n]
        bar = int(meta[_M_BAR])
        kept = int(self._ints[_KEPT])
        while kept < entry and int(self._meta[kept % n, _M_BAR]) <= bar:
            kept += 1
        self._ints[_PLAYING_BAR] = bar
        self._ints[_PLAYING_GEN] = meta[_M_GEN]
        self._ints[_PLAYING_ENTRY] = entry
        self._ints[_KEPT] = kept
        self._ints[_BARS_PLAYED] += 1
        return int(meta[_M_FRAMES])

    def slot_pcm(self, entry: int) -> np.ndarray:
        """The PCM view of ``entry``'s slot (``[slot_frames, channels]``; only the bar's frames are valid)."""
        return self.pcm[entry % self.spec.n_slots]

    # ---- supervisor ---------------------------------------------------------------------------------

    def heartbeat(self) -> tuple[int, float, int]:
        """(beat counter, monotonic time of the last beat in seconds, pid that beat)."""
        return int(self._ints[_BEATS]), float(self._floats[_BEAT_TIME]), int(self._ints[_WORKER_PID])

    def playing(self) -> tuple[int, int, int]:
        """(entry, bar, generation) the player is in; -1s before the first bar."""
        ints = self._ints
        return int(ints[_PLAYING_ENTRY]), int(ints[_PLAYING_BAR]), int(ints[_PLAYING_GEN])

    @property
    def bars_played(self) -> int:
        """Bars the player has started since the ring was created."""
        return int(self._ints[_BARS_PLAYED])

    def entry_info(self, entry: int) -> tuple[int, int, int]:
        """(bar, generation, frames) of a published entry still in the ring."""
        meta = self._meta[entry % self.spec.n_slots]
        if int(meta[_M_ENTRY]) != entry:
            raise RingError(f"entry {entry} is no longer in the ring")
        return int(meta[_M_BAR]), int(meta[_M_GEN]), int(meta[_M_FRAMES])
