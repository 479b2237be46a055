"""Mode steering at decoding time: the mood knob's minor/major, held in a key.

Measured on the shipped model: the denoiser learned the ``mode`` condition only weakly (requested mode
matched 47 % of the time, chance level; contrastive guidance on mode alone reached 77 % at guidance 8
while pushing notes out of key), because in training the mode label is nearly always implied by the
context bars. So the generator also steers the *decoded note probabilities*: it estimates the current
tonic in the requested mode from the recent music (a decaying pitch-class histogram of the played bars
and this bar's probabilities; Krumhansl-Kessler profiles) and scales down the probabilities of pitches
outside that key's scale by ``1 - strength * |mood|`` before thresholding (minor: natural minor plus the
leading tone). The model still writes the music; mood 0 leaves it untouched. Measured (5 styles x 2
moods x 3 seeds, 8 bars): requested mode matched 77 % (major 87 %, minor 67 %; Palestrina's modal
music 50 %), in-key ratio 0.95 (real music 0.95, the model alone 0.87); the natural minor alone did
worse (minor 60 %), and so did moving out-of-key probability to the neighbouring in-key pitch instead of
dropping it (67 %, in-key 0.90). The cost: the notes it drops lower density and pitch-class entropy. The played bar is re-encoded as the next context, so the model then
continues in that key.
"""

from __future__ import annotations

import numpy as np

from musicbox.runtime.features import MAJOR_SCALE, MINOR_SCALE, estimate_key
from musicbox.runtime.pianoroll import DEFAULT, Representation

DECAY = 0.7
"""Weight of the running pitch-class histogram per bar (older bars fade)."""


def pitch_classes(rep: Representation = DEFAULT) -> np.ndarray:
    """Pitch class of every pitch row, int ``[P]``."""
    return (np.arange(rep.n_pitches) + rep.pitch_low) % 12


def current_tonic(hist: np.ndarray) -> int:
    """The tonic 0..11 of the best-fitting key (either mode) of a pitch-class histogram ``[12]``."""
    tonic, _, _ = estimate_key(hist[None].astype(np.float32))
    return int(tonic[0])


def guide(
    probs: np.ndarray,
    history: np.ndarray,
    mood: float,
    strength: float,
    tonic: int | None = None,
    rep: Representation = DEFAULT,
) -> np.ndarray:
    """Probabilities ``[1, 2T, S, P]`` with out-of-key pitches scaled down for ``mood`` (-1..1).

    history: float ``[12]`` running pitch-class histogram of the bars played before. tonic: the model's
    key (a key-normalized model, ``representation.tonic``); when None it is estimated from the music.
    """
    if mood == 0.0 or strength <= 0.0:
        return probs
    pcs = pitch_classes(rep)
    major = mood > 0
    if tonic is None:  # the parallel key of the music so far: C major -> C minor, not A minor
        now = np.bincount(pcs, weights=probs[0, 1::2].sum(axis=(0, 1)), minlength=12)
        tonic = current_tonic(history + now)
    scale = ((MAJOR_SCALE if major else MINOR_SCALE) + tonic) % 12
    factor = np.where(np.isin(pcs, scale), 1.0, 1.0 - strength * min(1.0, abs(mood))).astype(np.float32)
    return probs * factor


def update_history(history: np.ndarray, roll: np.ndarray, rep: Representation = DEFAULT) -> np.ndarray:
    """The running histogram after a played roll ``[1, T, S, P]``: float32 ``[12]``."""
    sounding = (roll[0] > 0).sum(axis=(0, 1)).astype(np.float64)
    return (DECAY * history + np.bincount(pitch_classes(rep), weights=sounding, minlength=12)).astype(
        np.float32
    )
