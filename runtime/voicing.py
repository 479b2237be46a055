"""Voice-leading at decoding time: parallel fifths and octaves between any two lines, and unprepared
semitone clashes on any beat, re-spelled.

The decoder gives each cell a probability; thresholding keeps the likely notes, but it judges every
cell alone, so two voices can move in fifths and a voice can rub a semitone against another on a beat.
This pass keeps every note and its rhythm and only re-spells a note's pitch.

- **Lines.** Every track's notes are followed as lines: a note's *previous* note is the nearest-pitch
  note of its track ending just as it starts (at the bar line: the pitches the bar before ended on,
  ``tail``). A note tied over the bar line is one note with the one before it, held.
- **Parallels.** Two notes starting together (of any two tracks, or two of one track) whose previous
  notes stood a perfect fifth or an octave (or unison) apart, both moving the same way to the same
  interval class, compound or not.
- **Clashes.** On every beat of the meter, two sounding pitch classes a semitone apart where neither
  note is prepared: a note is prepared when it is held into the beat (a suspension) or approached by
  step (passing or neighbour motion), and left by step.
- **Fix.** Of the notes in a fault, the melody (the tune) and notes tied from the bar before never
  move; another takes a pitch within :data:`REACH` semitones that leaves fewer faults around it: the
  one the model holds most probable (its mean active probability over the note's steps) by an order
  of magnitude, and among pitches it holds about alike the nearest (the shortest way, which also
  re-spells a theme's return as its first playing was, where tiny differences in probability would
  pick another pitch each time). Among the notes of a fault the one whose new pitch the model likes
  best relative to the written one moves first. A fault no such pitch improves stays.

The pass is a patch on what the model writes, not the model: a retrain with voice-leading in its data
should leave it less to do. It once re-spelled only where the model offered a pitch nearly as likely as
the written one (half its probability or more), to keep the model's confident choices (a quartet
doubling a line in octaves); but the shipped decoder's probabilities sit near 0 and 1: of 110 faults
in chorale, Renaissance and quartet bars, none had such an alternative (the median best was 1e-3 of the
written pitch's), so that gate kept every fault. ``musicbox eval`` reports the panel's voice-leading
features with the pass and without it (``model/panel.py``).

Pitches here are pitch rows (0 = ``rep.pitch_low``). Shapes: roll uint8 ``[1, T, S, P]``, probs float32
``[1, 2T, S, P]`` (plane ``2t + 1`` is track t's active probability).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from musicbox.runtime.meter import COMMON, Meter
from musicbox.runtime.pianoroll import HELD, ONSET, Note, Representation, roll_to_notes

MELODY = 0
PERFECT = (0, 7)
"""Interval classes of a unison or octave and of a fifth."""

MAX_NOTES = 48
"""Most notes in a bar the pass voices; a denser bar is left as decoded. Its work grows with the cube of
the notes (each fix recounts the faults of every line): the shipped model writes at most 36 a bar
(quartet), an untrained one hundreds, which took minutes a bar."""

REACH = 4
"""Semitones a re-spelled note may move (a major third: a neighbouring chord tone)."""

Tail = tuple[tuple[int, ...], ...]
"""Per track, the pitch rows sounding at the previous bar's last step."""


def _ends(n: Note) -> int:
    return n.start + n.duration


def _previous(notes: list[Note], i: int) -> Note | None:
    """The note before ``notes[i]`` in its line: the nearest-pitch note of its track ending as it starts."""
    n = notes[i]
    before = [m for m in notes if m.track == n.track and _ends(m) == n.start]
    return min(before, key=lambda m: (abs(m.pitch - n.pitch), m.pitch), default=None)


def _parallel(notes: list[Note], i: int, j: int) -> bool:
    a, b = notes[i], notes[j]
    pa, pb = _previous(notes, i), _previous(notes, j)
    if a.start != b.start or pa is None or pb is None or pa == pb:
        return False
    moves = np.sign(a.pitch - pa.pitch), np.sign(b.pitch - pb.pitch)
    before = abs(pa.pitch - pb.pitch) % 12
    return moves[0] == moves[1] != 0 and before in PERFECT and abs(a.pitch - b.pitch) % 12 == before


def _prepared(notes: list[Note], i: int, beat: int) -> bool:
    """Held into ``beat`` or approached by step, and left by step."""
    n, before = notes[i], _previous(notes, i)
    step = range(1, 3)
    came = n.start < beat or (before is not None and abs(n.pitch - before.pitch) in step)
    return came and any(
        m.track == n.track and m.start == _ends(n) and abs(m.pitch - n.pitch) in step for m in notes
    )


def _clash(notes: list[Note], i: int, j: int, beat: int) -> bool:
    a, b = notes[i], notes[j]
    return (a.pitch - b.pitch) % 12 in (1, 11) and not (
        _prepared(notes, i, beat) or _prepared(notes, j, beat)
    )


def faults(notes: list[Note], step: int, beats: tuple[int, ...]) -> list[tuple[int, int]]:
    """Pairs of note indices making a fault at ``step``: parallels among the notes starting there and,
    on a beat, unprepared clashes among those sounding."""
    starting = [i for i, n in enumerate(notes) if n.start == step]
    out = [(i, j) for i in starting for j in starting if i < j and _parallel(notes, i, j)]
    if step in beats:
        sounding = [i for i, n in enumerate(notes) if n.start <= step < _ends(n)]
        out += [(i, j) for i in sounding for j in sounding if i < j and _clash(notes, i, j, step)]
    return out


def _lines(roll: np.ndarray, tail: Tail, rep: Representation) -> list[Note]:
    """The bar's notes in pitch rows, a note tied over the bar line starting at -1 and each other pitch
    the bar before ended on as a one-step note at -1."""
    notes = roll_to_notes(roll, replace(rep, pitch_low=0))
    ended = {(t, p) for t, pitches in enumerate(tail) for p in pitches}
    tied = {(n.track, n.pitch) for n in notes if n.start == 0 and roll[0, n.track, 0, n.pitch] == HELD}
    tied &= ended
    notes = [
        n._replace(start=-1, duration=n.duration + 1) if n.start == 0 and (n.track, n.pitch) in tied else n
        for n in notes
    ]
    return notes + [Note(t, -1, p, 1) for t, p in sorted(ended - tied)]


def _magnitude(p: float) -> int:
    """The order of magnitude of a probability (1e-9 and below alike): a preference the model has."""
    return int(np.floor(np.log10(max(float(p), 1e-9))))


def _respelled(
    notes: list[Note], i: int, probs: np.ndarray, beats: tuple[int, ...]
) -> tuple[float, int] | None:
    """The pitch within :data:`REACH` of ``notes[i]``'s that leaves fewer faults around the note (its
    start, its end, the beats), the model's most probable by order of magnitude and then the nearest,
    with its probability over the written pitch's; None if there is none."""
    n = notes[i]
    if n.track == MELODY or n.start < 0:
        return None
    p = probs[0, 2 * n.track + 1, n.start : _ends(n)].mean(axis=0)
    lo, hi = max(n.pitch - REACH, 0), min(n.pitch + REACH + 1, len(p))
    taken = {m.pitch for m in notes if m.track == n.track and m.start < _ends(n) and _ends(m) > n.start}
    options = [q for q in range(lo, hi) if q not in taken]
    steps = sorted({n.start, _ends(n), *beats})

    def count() -> int:
        return sum(len(faults(notes, s, beats)) for s in steps)

    now = count()
    for q in sorted(options, key=lambda q: (-_magnitude(p[q]), abs(q - n.pitch), q)):
        notes[i] = n._replace(pitch=q)
        better = count() < now
        notes[i] = n
        if better:
            return float(p[q] / max(p[n.pitch], 1e-12)), q
    return None


def voice(
    roll: np.ndarray, probs: np.ndarray, tail: Tail, rep: Representation, meter: Meter = COMMON
) -> np.ndarray:
    """The bar ``roll [1, T, S, P]`` in ``meter`` with its faults re-spelled (see the module); ``tail``:
    :func:`tail_of` the bar before (``()`` for none)."""
    notes = _lines(roll, tail, rep)
    if len(notes) > MAX_NOTES:
        return roll
    out = roll.copy()
    for step in range(meter.steps):
        for _ in range(len(notes)):  # each fix leaves fewer faults: a few rounds
            found = {i for pair in faults(notes, step, meter.beats) for i in pair}
            fixes = [(fix, i) for i in found if (fix := _respelled(notes, i, probs, meter.beats))]
            if not fixes:
                break
            (_, q), i = max(fixes)  # the note the model was least sure of
            n = notes[i]
            t, span = n.track, slice(n.start, _ends(n))
            out[0, t, span, n.pitch] = 0
            out[0, t, span, q] = HELD
            out[0, t, n.start, q] = ONSET
            if _ends(n) < out.shape[2] and out[0, t, _ends(n), q] == HELD:
                out[0, t, _ends(n), q] = ONSET  # a note after it on that pitch stays its own
            notes[i] = n._replace(pitch=q)
    return out


def tail_of(roll: np.ndarray) -> Tail:
    """Per track, the pitch rows sounding at the last step of the bar ``roll [1, T, S, P]``."""
    return tuple(tuple(int(p) for p in np.nonzero(roll[0, t, -1])[0]) for t in range(roll.shape[1]))
