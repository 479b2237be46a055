"""The symbolic representation shared by the dataset, the model and the device.

A *roll* is a uint8 array ``[n_bars, n_tracks, steps_per_bar, n_pitches]`` on a 16th-note grid whose
cells are ``OFF`` (0), ``HELD`` (1, the note sounding since an earlier step) or ``ONSET`` (2). A note that
is tied across a bar line is ``HELD`` at step 0 of the next bar. The model sees *planes*:
float32 ``[n_bars, 2 * n_tracks, steps_per_bar, n_pitches]`` with plane ``2t`` = onset and ``2t + 1`` =
active (held or onset) of track ``t``; the decoder returns probabilities in the same layout.

Bars are 4/4-sized (16 sixteenths); 2/2 bars are the same length and pairs of 2/4 bars are joined (see
``model/data.py``). Pitches outside the range are folded by octaves into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

OFF, HELD, ONSET = 0, 1, 2


@dataclass(frozen=True)
class Representation:
    """Grid and pitch range of a roll.

    steps_per_bar: grid cells per bar (16 = sixteenth notes in 4/4).
    tracks: part names, melody first, bass last.
    pitch_low: MIDI number of pitch row 0 (33 = A1, below a cello's C2 and a chorale bass's lowest notes).
    n_pitches: pitch rows (64: A1..C7, a violin's and soprano's range with headroom).
    """

    steps_per_bar: int = 16
    tracks: tuple[str, ...] = ("melody", "harmony", "bass")
    pitch_low: int = 33
    n_pitches: int = 64

    @property
    def n_tracks(self) -> int:
        return len(self.tracks)

    @property
    def pitch_high(self) -> int:
        """Highest MIDI pitch that fits (inclusive)."""
        return self.pitch_low + self.n_pitches - 1

    @property
    def planes_shape(self) -> tuple[int, int, int]:
        """Shape of one bar of planes: (2 * n_tracks, steps_per_bar, n_pitches)."""
        return (2 * self.n_tracks, self.steps_per_bar, self.n_pitches)

    def empty_roll(self, n_bars: int) -> np.ndarray:
        """An all-OFF roll of ``n_bars`` bars."""
        return np.zeros((n_bars, self.n_tracks, self.steps_per_bar, self.n_pitches), dtype=np.uint8)

    def to_dict(self) -> dict:
        return {
            "steps_per_bar": self.steps_per_bar,
            "tracks": list(self.tracks),
            "pitch_low": self.pitch_low,
            "n_pitches": self.n_pitches,
        }


DEFAULT = Representation()


class Note(NamedTuple):
    """One note: ``track`` index, ``start`` and ``duration`` in grid steps, ``pitch`` as a MIDI number."""

    track: int
    start: int
    pitch: int
    duration: int


def fold_pitch(pitch: int, rep: Representation = DEFAULT) -> int:
    """Move ``pitch`` by whole octaves into ``rep``'s range."""
    while pitch < rep.pitch_low:
        pitch += 12
    while pitch > rep.pitch_high:
        pitch -= 12
    return pitch


def notes_to_roll(notes, n_bars: int, rep: Representation = DEFAULT) -> np.ndarray:
    """Write notes into a new roll ``[n_bars, T, S, P]``; notes past the end are cut, pitches folded.

    A later onset on the same track and pitch ends the earlier note (it re-strikes).
    """
    n_steps = n_bars * rep.steps_per_bar
    flat = np.zeros((rep.n_tracks, n_steps, rep.n_pitches), dtype=np.uint8)
    for note in sorted(notes, key=lambda n: n.start):
        if note.start >= n_steps or note.start < 0 or note.duration <= 0:
            continue
        p = fold_pitch(note.pitch, rep) - rep.pitch_low
        end = min(note.start + note.duration, n_steps)
        flat[note.track, note.start, p] = ONSET
        held = flat[note.track, note.start + 1 : end, p]
        held[held != ONSET] = HELD
    return _unflatten(flat, n_bars, rep)


def roll_to_notes(roll: np.ndarray, rep: Representation = DEFAULT) -> list[Note]:
    """Read the notes of a roll ``[n_bars, T, S, P]``, joining notes held across bar lines.

    A ``HELD`` cell that follows an ``OFF`` cell starts a note (a decoder may produce it).
    """
    flat = roll.transpose(1, 0, 2, 3).reshape(rep.n_tracks, -1, rep.n_pitches)  # [T, time, P]
    flat = flat.transpose(0, 2, 1)  # [T, P, time]
    active = flat > OFF
    prev_active = np.zeros_like(active)
    prev_active[..., 1:] = active[..., :-1]
    starts = (flat == ONSET) | (active & ~prev_active)
    next_held = np.zeros_like(active)
    next_held[..., :-1] = flat[..., 1:] == HELD
    ends = active & ~next_held
    t_s, p_s, s = np.nonzero(starts)
    _, _, e = np.nonzero(ends)
    notes = [
        Note(int(t), int(st), int(p) + rep.pitch_low, int(en - st + 1))
        for t, p, st, en in zip(t_s, p_s, s, e, strict=True)
    ]
    notes.sort(key=lambda n: (n.start, n.track, n.pitch))
    return notes


def roll_to_planes(roll: np.ndarray) -> np.ndarray:
    """Roll ``[n, T, S, P]`` -> float32 planes ``[n, 2T, S, P]`` (onset, active per track)."""
    n, t, s, p = roll.shape
    planes = np.empty((n, t, 2, s, p), dtype=np.float32)
    planes[:, :, 0] = roll == ONSET
    planes[:, :, 1] = roll > OFF
    return planes.reshape(n, 2 * t, s, p)


def planes_to_roll(probs: np.ndarray, threshold: float = 0.5, monophonic: tuple[int, ...] = ()) -> np.ndarray:
    """Note probabilities ``[n, 2T, S, P]`` -> roll ``[n, T, S, P]``.

    A cell sounds where its active probability exceeds ``threshold``; it is an onset where its onset
    probability does too, or where the cell before it (within the bar) was silent. In the tracks listed
    in ``monophonic`` only the most probable pitch of each step may sound (one line).
    """
    n, t2, s, p = probs.shape
    pr = probs.reshape(n, t2 // 2, 2, s, p)
    active = pr[:, :, 1] > threshold
    for track in monophonic:
        line = pr[:, track, 1]  # [n, S, P]
        best = line == line.max(axis=-1, keepdims=True)
        active[:, track] &= best & (np.cumsum(best, axis=-1) == 1)  # ties: the lowest pitch
    onset = active & (pr[:, :, 0] > threshold)
    onset[:, :, 1:] |= active[:, :, 1:] & ~active[:, :, :-1]
    roll = active.astype(np.uint8) * HELD
    roll[onset] = ONSET
    return roll


def note_f1(pred: np.ndarray, true: np.ndarray) -> float:
    """Note-level F1 of two rolls ``[n, T, S, P]``: a note matches on bar, track, onset step and pitch;
    1.0 when both are silent."""
    p, t = pred == ONSET, true == ONSET
    denom = int(p.sum() + t.sum())
    return float(2 * np.logical_and(p, t).sum() / denom) if denom else 1.0


KEY_SHIFTS = tuple(range(-5, 7))
"""Semitones between a key-normalized model's key and the keys it is played or trained in: -5..+6, each
pitch class once, by the smallest move (the training shifts, the generator's playing ``key``)."""


def shift_to_c(tonic: np.ndarray) -> np.ndarray:
    """Semitones in :data:`KEY_SHIFTS` that move pitch class ``tonic`` to C (0)."""
    return (-np.asarray(tonic, np.int64) - KEY_SHIFTS[0]) % 12 + KEY_SHIFTS[0]


def random_key_shift(rng: np.random.Generator) -> int:
    """A shift drawn uniformly from :data:`KEY_SHIFTS`."""
    return int(rng.integers(KEY_SHIFTS[0], KEY_SHIFTS[-1] + 1))


def transpose(rolls: np.ndarray, shift: int) -> np.ndarray:
    """Rolls ``[..., P]`` moved by ``shift`` semitones (pitch rows); notes leaving the range are dropped."""
    out = np.zeros_like(rolls)
    if shift >= 0:
        out[..., shift:] = rolls[..., : rolls.shape[-1] - shift]
    else:
        out[..., :shift] = rolls[..., -shift:]
    return out


def _unflatten(flat: np.ndarray, n_bars: int, rep: Representation) -> np.ndarray:
    """``[T, n_bars * S, P]`` -> ``[n_bars, T, S, P]``."""
    return np.ascontiguousarray(
        flat.reshape(rep.n_tracks, n_bars, rep.steps_per_bar, rep.n_pitches).transpose(1, 0, 2, 3)
    )


MINOR_THIRD_SIXTH_SEVENTH = (3, 8, 10)
"""The pitch classes above the tonic where natural minor differs from major (E, A, B become Eb, Ab, Bb)."""


def change_mode(roll: np.ndarray, major: bool, tonic: int = 0, rep: Representation = DEFAULT) -> np.ndarray:
    """A roll ``[..., P]`` in the other mode at the same ``tonic`` (pitch class): a theme "returns in the
    minor" (``major`` False: the major third, sixth and seventh step down a semitone) or in the major
    (True: the minor ones step up). Other notes stay; a note already in the target mode stays."""
    out = roll.copy()  # sources (3, 8, 10 or 4, 9, 11) and targets never overlap
    classes = (np.arange(rep.n_pitches) + rep.pitch_low - tonic) % 12
    for minor in MINOR_THIRD_SIXTH_SEVENTH:
        src = minor if major else minor + 1  # minor degree -> major degree, or back
        rows = np.flatnonzero(classes == src)
        step = 1 if major else -1
        moved = rows[(rows + step >= 0) & (rows + step < rep.n_pitches)]
        out[..., moved + step] = np.maximum(out[..., moved + step], out[..., moved])
        out[..., moved] = 0
    return out
