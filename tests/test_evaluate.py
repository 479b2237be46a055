"""model/evaluate.py: figures of the evaluation that need no model (copies, static melodies)."""

from __future__ import annotations

import math

import numpy as np

from musicbox.model.evaluate import Segment, melody_pitches, originality, static_melodies
from musicbox.runtime.pianoroll import ONSET, transpose
from tests.helpers.tiny_model import random_dataset


def _melody(pitches: list[int]) -> np.ndarray:
    """8 bars whose melody strikes a half note on each beat 1 and 3, cycling through ``pitches``."""
    roll = np.zeros((8, 3, 16, 64), np.uint8)
    for i, (bar, step) in enumerate((b, s) for b in range(8) for s in (0, 8)):
        roll[bar, 0, step, pitches[i % len(pitches)]] = ONSET
    roll[:, 2, 0, 5] = ONSET  # a bass under it, which never counts
    return roll


def test_a_melody_of_few_pitches_is_static_by_style_and_tempo_against_real_segments():
    held, moving = _melody([41, 41, 41, 43]), _melody([36, 38, 40, 41, 43, 45])
    assert (melody_pitches(held), melody_pitches(moving)) == (2, 6)
    silent = np.zeros_like(held)
    style = 3.0  # the random dataset's test split holds pieces of style 3 only
    generated = [
        Segment(held, style, tempo=70.0),
        Segment(moving, style, tempo=70.0),
        Segment(silent, style, tempo=70.0),  # no melody: left out
        Segment(moving, style, tempo=130.0),
        Segment(moving, style, tempo=130.0),
        Segment(held, 0.0, tempo=70.0),
    ]
    shares = static_melodies(random_dataset(), generated)
    assert shares[3]["model"] == 0.25 and shares[3]["model_slow"] == 0.5
    assert shares[3]["real"] == 0.0 and shares[3]["real_sparse"] == 0.0  # random notes move
    assert shares[0]["model"] == 1.0 and math.isnan(shares[0]["real"])  # no real piece of style 0 held out


def test_a_training_span_played_in_another_key_is_a_copy_in_any_key_only():
    data = random_dataset()
    train = np.nonzero(data.split == 0)[0][:2]  # the first two bars of a training piece
    span = data.rolls[train]
    fresh = np.zeros_like(span)
    fresh[:, 0, ::4, 40] = ONSET
    cases = {"as played": span, "a tone up": transpose(span, 2), "new": fresh}
    counts = {
        name: originality(data, [Segment(roll, 0.0)], np.random.default_rng(0), max_train=10**6)
        for name, roll in cases.items()
    }
    assert (counts["as played"]["exact_copies"], counts["as played"]["exact_copies_any_key"]) == (1, 1)
    assert (counts["a tone up"]["exact_copies"], counts["a tone up"]["exact_copies_any_key"]) == (0, 1)
    assert (counts["new"]["exact_copies"], counts["new"]["exact_copies_any_key"]) == (0, 0)
