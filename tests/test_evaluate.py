"""model/evaluate.py: figures of the evaluation that need no model."""

from __future__ import annotations

import math

import numpy as np

from musicbox.model.evaluate import Segment, melody_pitches, static_melodies
from musicbox.runtime.pianoroll import ONSET
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
