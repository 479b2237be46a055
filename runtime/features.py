"""Musical features of rolls, in numpy: the conditioning labels of the dataset and the eval metrics.

One implementation serves the dataset labels (model/data.py), the model's conditioning, the evaluation of
generated music (model/evaluate.py) and the device, so "requested mood" and "measured mode" mean the same.
All functions take a roll ``[n_bars, T, S, P]`` (see pianoroll.py) and return one value per bar.
"""

from __future__ import annotations

import numpy as np

from musicbox.runtime.pianoroll import DEFAULT, HELD, ONSET, Representation

# Krumhansl & Kessler (1982) key profiles, tonic first.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR_SCALE = np.array([0, 2, 3, 5, 7, 8, 10, 11])  # natural + raised 7th (harmonic)

ATTRS = ("density", "mode", "register", "polyphony")
"""Conditioning attributes, in the order of the model's ``attrs`` input."""


def density(roll: np.ndarray) -> np.ndarray:
    """Onsets per bar over all tracks, float32 ``[n_bars]``."""
    return (roll == ONSET).sum(axis=(1, 2, 3)).astype(np.float32)


def register(roll: np.ndarray, rep: Representation = DEFAULT) -> np.ndarray:
    """Mean MIDI pitch of the onsets of the highest sounding track, float32 ``[n_bars]`` (NaN if silent)."""
    on = roll == ONSET  # [n, T, S, P]
    counts = on.sum(axis=(2, 3))  # [n, T]
    pitch_sum = (on.sum(axis=2) * (np.arange(rep.n_pitches) + rep.pitch_low)).sum(axis=2)
    first = np.argmax(counts > 0, axis=1)  # melody if it plays, else the next track down
    idx = np.arange(len(roll))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pitch_sum[idx, first] / counts[idx, first]).astype(np.float32)


def polyphony(roll: np.ndarray) -> np.ndarray:
    """Mean number of sounding notes over the steps where anything sounds, float32 ``[n_bars]``."""
    sounding = (roll >= HELD).sum(axis=(1, 3))  # [n, S]
    busy = (sounding > 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sounding.sum(axis=1) / busy
    return np.nan_to_num(out).astype(np.float32)


def pitch_class_histogram(roll: np.ndarray, rep: Representation = DEFAULT) -> np.ndarray:
    """Duration-weighted pitch-class histogram per bar, float32 ``[n_bars, 12]`` (sounding steps)."""
    per_pitch = (roll >= HELD).sum(axis=(1, 2)).astype(np.float32)  # [n, P]
    pcs = (np.arange(rep.n_pitches) + rep.pitch_low) % 12
    hist = np.zeros((len(roll), 12), dtype=np.float32)
    np.add.at(hist.T, pcs, per_pitch.T)
    return hist


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of the rows of ``a`` and ``b`` ``[n, k]`` -> ``[n]``, in their dtype; NaN where
    a row is all zeros."""
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _profiles() -> np.ndarray:
    """The 24 key profiles ``[24, 12]``: rows 0..11 major on tonic 0..11, rows 12..23 minor."""
    rows = [np.roll(_MAJOR, k) for k in range(12)] + [np.roll(_MINOR, k) for k in range(12)]
    prof = np.array(rows)
    prof = prof - prof.mean(axis=1, keepdims=True)
    return prof / np.linalg.norm(prof, axis=1, keepdims=True)


_PROFILES = _profiles()


def estimate_key(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Krumhansl-Schmuckler key finding on histograms ``[n, 12]``.

    Returns ``(tonic [n] int 0..11, mode [n] float +1 major / -1 minor / 0 unknown, r [n] correlation)``;
    mode is 0 where the histogram is empty.
    """
    h = hist - hist.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(h, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (h / norm) @ _PROFILES.T  # [n, 24]
    corr = np.nan_to_num(corr, nan=-1.0)
    best = corr.argmax(axis=1)
    mode = np.where(best < 12, 1.0, -1.0).astype(np.float32)
    mode[norm[:, 0] == 0] = 0.0
    return best % 12, mode, corr.max(axis=1)


def windowed_key(roll: np.ndarray, radius: int = 2, rep: Representation = DEFAULT):
    """Key per bar from a sliding window of ``2 * radius + 1`` bars (clipped at the ends).

    Returns ``(tonic [n], mode [n], r [n])`` as :func:`estimate_key`.
    """
    hist = pitch_class_histogram(roll, rep)
    csum = np.concatenate([np.zeros((1, 12), np.float32), np.cumsum(hist, axis=0)])
    idx = np.arange(len(roll))
    lo, hi = np.clip(idx - radius, 0, len(roll)), np.clip(idx + radius + 1, 0, len(roll))
    return estimate_key(csum[hi] - csum[lo])


def in_key_ratio(roll: np.ndarray, tonic: np.ndarray, mode: np.ndarray, rep: Representation = DEFAULT):
    """Fraction of onsets per bar whose pitch class is in the given key's scale, ``[n_bars]``."""
    on = (roll == ONSET).sum(axis=(1, 2))  # [n, P]
    pcs = (np.arange(rep.n_pitches) + rep.pitch_low) % 12
    out = np.full(len(roll), np.nan, dtype=np.float32)
    for i in range(len(roll)):
        scale = (MAJOR_SCALE if mode[i] >= 0 else MINOR_SCALE) + tonic[i]
        ok = np.isin(pcs, scale % 12)
        total = on[i].sum()
        if total:
            out[i] = on[i][ok].sum() / total
    return out


def bar_attrs(roll: np.ndarray, rep: Representation = DEFAULT) -> np.ndarray:
    """Raw conditioning attributes per bar, float32 ``[n_bars, len(ATTRS)]`` in :data:`ATTRS` order.

    ``mode`` comes from a 5-bar window; a silent bar's register is filled from its neighbours.
    """
    _, mode, _ = windowed_key(roll, rep=rep)
    reg = register(roll, rep)
    if np.isnan(reg).all():
        reg[:] = 60.0
    else:
        ok = ~np.isnan(reg)
        reg = np.interp(np.arange(len(reg)), np.nonzero(ok)[0], reg[ok]).astype(np.float32)
    return np.stack([density(roll), mode, reg, polyphony(roll)], axis=1).astype(np.float32)
