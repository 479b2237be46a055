"""runtime/voicing.py: parallels and strong-beat clashes re-spelled, every note and rhythm kept."""

from __future__ import annotations

import numpy as np

from musicbox.model.form import parallels_per_100, strong_beat_clashes
from musicbox.runtime.pianoroll import DEFAULT, Note, notes_to_roll, roll_to_notes
from musicbox.runtime.voicing import tail_of, voice

LOW = DEFAULT.pitch_low


def _probs(notes: list[Note]) -> np.ndarray:
    """Decoder-like probabilities: 0.9 on the notes, 0.4 a whole tone and a third around each."""
    probs = np.zeros((1, 6, 16, DEFAULT.n_pitches), np.float32)
    for n in notes:
        steps = slice(n.start, n.start + n.duration)
        for d, p in ((0, 0.9), (-2, 0.4), (2, 0.4), (-3, 0.35), (3, 0.35), (-4, 0.3), (4, 0.3)):
            row = n.pitch - LOW + d
            if 0 <= row < DEFAULT.n_pitches:
                probs[0, 2 * n.track + 1, steps, row] = max(probs[0, 2 * n.track + 1, steps, row].max(), p)
    return probs


def test_parallel_fifths_and_a_downbeat_clash_are_respelled_keeping_every_note():
    notes = [
        Note(0, 0, 67, 4),
        Note(0, 4, 69, 4),
        Note(0, 8, 71, 8),  # melody G A B
        Note(2, 0, 60, 4),
        Note(2, 4, 62, 4),
        Note(2, 8, 64, 8),  # bass C D E: fifths all the way
        Note(1, 0, 64, 16),
        Note(1, 8, 65, 8),  # harmony E, and F against E on beat 3
    ]
    roll = notes_to_roll(notes, 1)
    assert parallels_per_100(roll)["fifths"] > 0 and strong_beat_clashes(roll) > 0
    fixed = voice(roll, _probs(notes), (-1, -1), DEFAULT)
    assert parallels_per_100(fixed)["fifths"] == 0 and strong_beat_clashes(fixed) == 0
    before, after = roll_to_notes(roll), roll_to_notes(fixed)
    assert sorted((n.track, n.start, n.duration) for n in before) == sorted(
        (n.track, n.start, n.duration) for n in after
    )
    assert [n.pitch for n in after if n.track == 0] == [67, 69, 71]  # the tune is untouched


def test_a_melody_alone_is_left_as_it_is():
    roll = notes_to_roll([Note(0, 0, 60, 4), Note(0, 4, 61, 4)], 1)
    assert np.array_equal(voice(roll, np.zeros((1, 6, 16, 64), np.float32), (-1, -1), DEFAULT), roll)


def test_tail_names_the_outer_voices_at_the_last_step():
    roll = notes_to_roll([Note(0, 0, 72, 16), Note(2, 8, 48, 8)], 1)
    assert tail_of(roll) == (72 - LOW, 48 - LOW)
