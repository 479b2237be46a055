"""model/meter_eval.py and the meter-aware baselines: what the evaluation measures per meter."""

from __future__ import annotations

import numpy as np

from musicbox.model.baselines import MarkovChain, random_in_key
from musicbox.model.evaluate import SoftmaxClassifier
from musicbox.model.meter_eval import LAGS, STREAM_STEPS, meter_features, onset_profile
from musicbox.runtime.meter import METERS
from musicbox.runtime.pianoroll import ONSET
from tests.helpers.tiny_model import random_dataset


def _accented(meter, n: int, rng) -> np.ndarray:
    """``n`` bars with melody onsets on the meter's beats, bass on its strong beats and a few random
    harmony onsets, padded to 16 steps."""
    rolls = np.zeros((n, 3, 16, 64), np.uint8)
    for i in range(n):
        for step in METERS[meter].beats:
            rolls[i, 0, step, 30] = ONSET
        for step in METERS[meter].strong:
            rolls[i, 2, step, 5] = ONSET
        for step in rng.integers(0, METERS[meter].steps, 2):
            rolls[i, 1, step, 20] = ONSET
    return rolls


def _window(meter: str, rng) -> np.ndarray:
    """One meter-classifier window of :func:`_accented` bars."""
    return meter_features(_accented(meter, -(-STREAM_STEPS // METERS[meter].steps), rng), METERS[meter])


def test_the_meter_features_hear_the_accents_period_not_the_padding_and_the_profile_counts_onsets():
    waltz = _accented("3/4", 8, np.random.default_rng(0))
    x = meter_features(waltz, METERS["3/4"])
    assert x.shape == (3 * LAGS,)
    waltz[:, 2, 12:, 5] = ONSET  # what a 12-step bar never has: not read
    np.testing.assert_array_equal(meter_features(waltz, METERS["3/4"]), x)
    bass = x[2 * LAGS :]  # lag k at index k - 1: the bass strikes each downbeat
    assert bass[11] > 0.9 and bass[15] < 0.5
    reel = meter_features(_accented("4/4", 6, np.random.default_rng(0)), METERS["4/4"])[2 * LAGS :]
    assert reel[15] > 0.9 and reel[11] < 0.5
    profile = onset_profile(_accented("6/8", 10, np.random.default_rng(1)), METERS["6/8"])
    assert profile.shape == (12,) and profile[0] >= 1 and profile[6] >= 1 and profile[3] < 1


def test_a_meter_classifier_tells_the_meters_apart_by_their_accents():
    rng = np.random.default_rng(2)
    x = np.stack([_window(m, rng) for m in METERS for _ in range(100)])
    y = np.repeat(np.arange(len(METERS)), 100)
    clf = SoftmaxClassifier(len(METERS)).fit(x, y)
    test = np.stack([_window(m, rng) for m in METERS for _ in range(20)])
    assert (clf.proba(test).argmax(axis=1) == np.repeat(np.arange(len(METERS)), 20)).mean() > 0.95


def test_the_baselines_write_bars_of_the_meter_asked_for():
    rng = np.random.default_rng(3)
    waltz = random_in_key(4, 12.0, 1.0, rng, METERS["3/4"])
    assert waltz.shape == (4, 3, 16, 64) and waltz[:, :, 12:].max() == 0 and waltz.max() > 0
    data = random_dataset()
    jigs = data.in_meters(("6/8",))
    chain = MarkovChain().fit(jigs, meter=METERS["6/8"])
    style = int(jigs.style[0])
    rolls = chain.generate(style, 4, 1.0, METERS["6/8"])
    assert rolls.shape == (4, 3, 16, 64) and rolls[:, :, 12:].max() == 0 and (rolls == ONSET).sum() > 8
