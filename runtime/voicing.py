"""Voice-leading at decoding time: no parallel fifths or octaves between the outer voices, no semitone
clash on a strong beat.

The decoder gives each cell a probability; thresholding keeps the likely notes, but it judges every
cell alone, so a bass can move in fifths with the melody and an inner voice can rub a semitone against
another on the downbeat. This pass keeps every note and its rhythm and only re-spells a note's pitch:

- **strong-beat clashes**: on the meter's strong beats (4/4: steps 0 and 8), while two sounding
  pitch classes lie a semitone apart, the least probable movable note of the pair (harmony before bass;
  the melody is the tune and stays) moves to the most probable pitch within a whole tone that clashes
  with nothing sounding;
- **parallel fifths and octaves**: where the melody's top note and the bass's bottom note both move in
  the same direction from a perfect fifth (or octave, or unison) to the same interval class, the bass
  note that moved takes the most probable pitch within a major third that makes neither a parallel nor
  a strong-beat clash.

Pitches here are pitch rows (0 = ``rep.pitch_low``). A note "moves" only where it starts in this bar (a note tied over the bar line keeps its pitch). The
outer voices' last pitches of the bar before (``tail``: melody top and bass bottom rows, -1 for silence)
continue the parallel check over the bar line. Shapes: roll uint8 ``[1, T, S, P]``, probs float32
``[1, 2T, S, P]`` (plane ``2t + 1`` is track t's active probability).
"""

from __future__ import annotations

import numpy as np

from musicbox.runtime.meter import COMMON, Meter
from musicbox.runtime.pianoroll import Note, Representation, notes_to_roll, roll_to_notes

MELODY, HARMONY, BASS = 0, 1, 2
PERFECT = (0, 7)  # interval classes of unison/octave and fifth


def _sounding(notes: list[Note], step: int) -> list[int]:
    return [i for i, n in enumerate(notes) if n.start <= step < n.start + n.duration]


def _prob(probs: np.ndarray, note: Note, pitch: int) -> float:
    """Mean active probability of ``note``'s steps at ``pitch`` (0 outside the range)."""
    if not 0 <= pitch < probs.shape[-1]:
        return 0.0
    return float(probs[0, 2 * note.track + 1, note.start : note.start + note.duration, pitch].mean())


def _movable(note: Note, roll: np.ndarray, tail: tuple[int, int]) -> bool:
    """A note may change pitch when it starts in this bar: not tied over the bar line (held at step 0
    where the bar before ended on it; a bass held at step 0 on another pitch than the bar before's
    bottom is a new note)."""
    if note.start > 0 or roll[0, note.track, 0, note.pitch] == 2:  # ONSET at step 0
        return True
    return note.track == BASS and note.pitch != tail[1]


def _steps(note: Note) -> range:
    return range(note.start, note.start + note.duration)


def _fits(notes: list[Note], index: int, pitch: int, strong: tuple[int, ...]) -> bool:
    """``notes[index]`` at ``pitch`` makes no semitone clash on a strong beat (the steps ``strong``) with
    what sounds with it."""
    note = notes[index]
    for step in strong:
        if step in _steps(note):
            others = {notes[i].pitch % 12 for i in _sounding(notes, step) if i != index}
            if (pitch + 1) % 12 in others or (pitch - 1) % 12 in others:
                return False
    return True


def _respell(notes, index, probs, reach, allowed) -> bool:
    """Move ``notes[index]`` to the most probable pitch within ``reach`` semitones passing ``allowed``."""
    note = notes[index]
    options = [note.pitch + d for d in range(-reach, reach + 1) if d]
    options = [p for p in options if 0 <= p < probs.shape[-1] and allowed(p)]
    if not options:
        return False
    notes[index] = note._replace(pitch=max(options, key=lambda p: _prob(probs, note, p)))
    return True


def fix_strong_beats(
    notes: list[Note], roll: np.ndarray, probs: np.ndarray, tail: tuple[int, int], strong: tuple[int, ...]
) -> None:
    """Re-spell notes so no strong beat (the steps ``strong``) holds a semitone clash (in place)."""
    for step in strong:
        for _ in range(4):  # a few passes: each fixes one clashing pair
            sounding = _sounding(notes, step)
            pairs = [
                (i, j) for i in sounding for j in sounding if (notes[i].pitch - notes[j].pitch) % 12 == 1
            ]
            if not pairs:
                break
            involved = {k for pair in pairs for k in pair if notes[k].track != MELODY}
            candidates = [k for k in involved if _movable(notes[k], roll, tail)]
            if not candidates:
                break
            rank = {HARMONY: 0, BASS: 1}
            worst = min(
                candidates, key=lambda k: (rank[notes[k].track], _prob(probs, notes[k], notes[k].pitch))
            )
            if not _respell(notes, worst, probs, 2, lambda p, k=worst: _fits(notes, k, p, strong)):
                break


def _outer(notes: list[Note], track: int, step: int, top: bool) -> int | None:
    """Index of the highest (``top``) or lowest sounding note of ``track`` at ``step``."""
    sounding = [i for i in _sounding(notes, step) if notes[i].track == track]
    if not sounding:
        return None
    return (max if top else min)(sounding, key=lambda i: notes[i].pitch)


def fix_parallels(
    notes: list[Note], roll: np.ndarray, probs: np.ndarray, tail: tuple[int, int], strong: tuple[int, ...]
) -> None:
    """Re-spell bass notes that move in parallel fifths/octaves with the melody's top (in place)."""
    prev = tail if tail[0] >= 0 and tail[1] >= 0 else None
    for step in range(roll.shape[2]):
        m, b = _outer(notes, MELODY, step, top=True), _outer(notes, BASS, step, top=False)
        if m is None or b is None:
            prev = None
            continue
        mp, bp = notes[m].pitch, notes[b].pitch
        if prev is not None and mp != prev[0] and bp != prev[1]:
            before = (prev[0] - prev[1]) % 12
            parallel = before in PERFECT and (mp - bp) % 12 == before
            if parallel and np.sign(mp - prev[0]) == np.sign(bp - prev[1]) and _movable(notes[b], roll, tail):

                def allowed(p, b=b, mp=mp, last=prev, before=before):
                    same = (mp - p) % 12 == before and np.sign(p - last[1]) == np.sign(mp - last[0])
                    return not same and p != last[1] and _fits(notes, b, p, strong)

                _respell(notes, b, probs, 4, allowed)
                bp = notes[b].pitch
        prev = (mp, bp)


def voice(
    roll: np.ndarray, probs: np.ndarray, tail: tuple[int, int], rep: Representation, meter: Meter = COMMON
) -> np.ndarray:
    """The bar ``roll [1, T, S, P]`` in ``meter`` with its clashes and parallels re-spelled (see the
    module)."""
    notes = [n._replace(pitch=n.pitch - rep.pitch_low) for n in roll_to_notes(roll, rep)]  # pitch rows
    if not any(n.track != MELODY for n in notes):
        return roll  # a melody alone: nothing to voice
    fix_strong_beats(notes, roll, probs, tail, meter.strong)
    fix_parallels(notes, roll, probs, tail, meter.strong)
    out = notes_to_roll([n._replace(pitch=n.pitch + rep.pitch_low) for n in notes], 1, rep)
    tied = (roll[0, :, 0] == 1) & (out[0, :, 0] > 0)  # notes continuing from the bar before stay HELD
    out[0, :, 0][tied] = 1
    return out


def tail_of(roll: np.ndarray) -> tuple[int, int]:
    """The melody's top and the bass's bottom pitch rows sounding at the bar's last step (-1: silent)."""
    m = np.nonzero(roll[0, MELODY, -1])[0]
    b = np.nonzero(roll[0, BASS, -1])[0]
    return (int(m[-1]) if len(m) else -1, int(b[0]) if len(b) else -1)
