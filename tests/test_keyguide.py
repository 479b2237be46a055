"""The key guide: decoding-time steering of the mood knob's mode."""

import numpy as np

from musicbox.runtime.features import MAJOR_SCALE
from musicbox.runtime.keyguide import current_tonic, guide, pitch_classes, update_history
from musicbox.runtime.pianoroll import DEFAULT, Note, notes_to_roll

C_MAJOR_HISTORY = np.zeros(12, np.float32)
C_MAJOR_HISTORY[MAJOR_SCALE] = np.array([8, 2, 5, 3, 6, 2, 1]) * 1000.0  # tonic, third, fifth weigh most


def flat_probs():
    return np.full((1, *DEFAULT.planes_shape), 0.8, np.float32)


def test_mood_zero_leaves_the_model_alone():
    probs = flat_probs()
    assert guide(probs, C_MAJOR_HISTORY, 0.0, 0.9) is probs


def test_minor_mood_takes_the_parallel_minor():
    assert current_tonic(C_MAJOR_HISTORY) == 0
    out = guide(flat_probs(), C_MAJOR_HISTORY, -1.0, 0.9)
    by_pc = {pc: out[0, 1, 0, np.nonzero(pitch_classes() == pc)[0][0]] for pc in range(12)}
    assert by_pc[3] == np.float32(0.8) and by_pc[8] == np.float32(0.8)  # E flat, A flat: C minor
    assert by_pc[4] < 0.1 and by_pc[9] < 0.1  # E, A: out of C minor
    major = guide(flat_probs(), C_MAJOR_HISTORY, 1.0, 0.9)
    assert major[0, 1, 0, np.nonzero(pitch_classes() == 4)[0][0]] == np.float32(0.8)


def test_half_mood_scales_less():
    half = guide(flat_probs(), C_MAJOR_HISTORY, -0.5, 0.9)
    e = np.nonzero(pitch_classes() == 4)[0][0]
    assert np.isclose(half[0, 1, 0, e], 0.8 * (1 - 0.45))


def test_history_decays_and_counts_sounding_steps():
    roll = notes_to_roll([Note(0, 0, 60, 4), Note(2, 0, 43, 16)], 1)
    h = update_history(np.ones(12, np.float32), roll)
    assert h[0] == 0.7 + 4 and h[7] == 0.7 + 16 and h[1] == np.float32(0.7)


def test_a_known_tonic_is_used_instead_of_the_estimate():
    out = guide(flat_probs(), C_MAJOR_HISTORY, -1.0, 0.9, tonic=7)  # G minor, although the music is in C
    by_pc = {pc: out[0, 1, 0, np.nonzero(pitch_classes() == pc)[0][0]] for pc in range(12)}
    assert by_pc[10] == np.float32(0.8) and by_pc[3] == np.float32(0.8)  # B flat, E flat: G minor
    assert by_pc[11] < 0.1 and by_pc[4] < 0.1  # B, E: out of G minor
