"""Form and texture metrics of whole pieces: do phrases return, cadence and breathe?

Every function takes one piece's roll ``[n_bars, T=3, S=16, P=64]`` (uint8 OFF/HELD/ONSET, tracks
melody, harmony, bass) and returns plain floats, NaN where a piece cannot show the quantity (a
melody-only tune has no bass to move in parallel with). ``musicbox eval`` computes them on generated
pieces of :data:`FORM_BARS` bars and on real corpus pieces with their repeats played.

- **Returns.** Bars are compared by the Jaccard similarity of their onset cells (track, step, pitch).
  A bar *repeats* an earlier bar when the similarity reaches :data:`NEAR`; a 2-bar span *returns*
  when its similarity with an earlier, non-overlapping 2-bar span reaches :data:`NEAR`. The lag profile
  is the mean similarity of bars ``lag`` apart; its *peak* at lag 4 (8) is the similarity there minus
  the mean of the neighbouring lags: stripes in the self-similarity matrix, which a loop, a tune and
  noodling tell apart.
- **Cadences.** A downbeat cadences when the lowest sounding pitch is the tonic of the bar's local key
  and the melody's note there is held for at least half a bar; measured by position in a phrase (the
  style's phrase length, counted from the first full bar: an upbeat bar is left out);
  ``cadence_phrase_end`` is the share of all downbeats that are cadences at a phrase's last bar.
- **Breathing.** Melody range (semitones between the lowest and highest melody onset of each 16-bar
  window), the share of melody notes of a whole bar or longer, and bars per 100 in which the melody
  rests for a beat or more.
- **Texture.** Melody onsets sounding with another melody pitch (a solo line is one note at a time);
  parallel fifths and octaves between the melody's top and the bass's bottom per 100 steps where both
  move; strong-beat (steps 0 and 8) sonorities holding a semitone clash.
- **Key.** Share of bars whose 8-bar-window key is the piece's home key, and of windows whose mode is
  not the home mode.
"""

from __future__ import annotations

import warnings

import numpy as np

from musicbox.runtime.features import windowed_key
from musicbox.runtime.pianoroll import DEFAULT, OFF, ONSET, roll_to_notes

FORM_BARS = 64
"""Bars of a generated piece in the form evaluation (form needs room to return)."""

NEAR = 0.8
"""Jaccard similarity of onset cells at which a bar (span) nearly repeats another."""

LAGS = (1, 2, 4, 8, 16)
"""Lags (bars) reported in the similarity profile."""

PHRASE_BARS = 4
"""Bars per phrase for cadence positions."""

SECTION_BARS = 8
"""Bars of a section (a dance tune's strain, two 4-bar phrases): the dataset's ``place`` of a bar and
the model's position input count bars in it."""

MAX_REPEAT_LAG = 16
"""How far back the dataset's ``repeats`` label looks for the bar a bar repeats."""

MELODY, BASS = 0, 2
STRONG_STEPS = (0, 8)
BEAT = 4  # grid steps


def onset_cells(roll: np.ndarray) -> np.ndarray:
    """Onset cells per bar, bool ``[n_bars, T * S * P]``."""
    return (roll == ONSET).reshape(len(roll), -1)


def similarity_matrix(roll: np.ndarray) -> np.ndarray:
    """Jaccard similarity of the bars' onset cells, float ``[n_bars, n_bars]`` (NaN for two empty bars)."""
    cells = onset_cells(roll).astype(np.float32)
    inter = cells @ cells.T
    sizes = cells.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)


def lag_profile(sim: np.ndarray, max_lag: int = 17) -> np.ndarray:
    """Mean similarity of bars ``lag`` apart for lag 0..max_lag, ``[max_lag + 1]`` (NaN past the piece)."""
    n = len(sim)
    out = np.full(max_lag + 1, np.nan)
    for lag in range(min(max_lag, n - 1) + 1):
        diag = np.diagonal(sim, offset=lag)
        if np.isfinite(diag).any():
            out[lag] = np.nanmean(diag)
    return out


def lag_peak(profile: np.ndarray, lag: int) -> float:
    """How far the similarity at ``lag`` stands above the mean of lags ``lag - 1`` and ``lag + 1``."""
    if lag + 1 >= len(profile):
        return float("nan")
    return float(profile[lag] - (profile[lag - 1] + profile[lag + 1]) / 2)


def bar_repeat_rate(sim: np.ndarray, roll: np.ndarray) -> float:
    """Share of non-empty bars (after the first) nearly repeating some earlier bar."""
    busy = np.asarray(onset_cells(roll).any(axis=1))
    hits = [np.nanmax(np.nan_to_num(sim[i, :i], nan=0.0)) >= NEAR for i in range(1, len(roll)) if busy[i]]
    return float(np.mean(hits)) if hits else float("nan")


def phrase_return_rate(roll: np.ndarray) -> float:
    """Share of non-empty 2-bar spans nearly repeating an earlier span that ends before they start."""
    n = len(roll)
    if n < 4:
        return float("nan")
    cells = onset_cells(roll)
    spans = np.concatenate([cells[:-1], cells[1:]], axis=1).astype(np.float32)  # span i = bars i, i+1
    sizes = spans.sum(axis=1)
    inter = spans @ spans.T
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    hits = [sim[i, : i - 1].max() >= NEAR for i in range(2, len(spans)) if sizes[i] > 0]
    return float(np.mean(hits)) if hits else float("nan")


def has_pickup(roll: np.ndarray) -> bool:
    """Whether bar 0 is an upbeat (the dataset builder pads a short first measure with silence before
    it): nothing sounds in its first beat and something starts later in it."""
    sounding = (roll[0] > OFF).any(axis=(0, 2))  # [S]
    return bool(sounding.any() and not sounding[:BEAT].any())


def section_positions(roll: np.ndarray, section_bars: int = SECTION_BARS) -> np.ndarray:
    """Each bar's position in its ``section_bars``-bar section, int8 ``[n_bars]``, counted from the first
    full bar (an upbeat bar is the last bar of the section before: pickup-aligned)."""
    return ((np.arange(len(roll)) - has_pickup(roll)) % section_bars).astype(np.int8)


def repeat_lags(roll: np.ndarray, max_lag: int = MAX_REPEAT_LAG) -> np.ndarray:
    """For each bar, how many bars back the nearest earlier bar it nearly repeats is (similarity at
    least :data:`NEAR`, within ``max_lag``), 0 when none: int8 ``[n_bars]``."""
    sim = np.nan_to_num(similarity_matrix(roll), nan=0.0)
    out = np.zeros(len(roll), np.int8)
    for i in range(1, len(roll)):
        back = sim[i, max(0, i - max_lag) : i][::-1]  # lag 1, 2, ...
        hits = np.nonzero(back >= NEAR)[0]
        out[i] = hits[0] + 1 if len(hits) else 0
    return out


def _sounding(roll: np.ndarray, track: int | None = None) -> np.ndarray:
    """Sounding cells over time, bool ``[n_bars * S, P]`` (all tracks when ``track`` is None)."""
    r = roll if track is None else roll[:, track : track + 1]
    return (r > OFF).any(axis=1).reshape(-1, roll.shape[-1])


def cadence_downbeats(roll: np.ndarray, tonic: np.ndarray) -> np.ndarray:
    """Whether each bar's downbeat cadences on ``tonic [n_bars]`` (pitch classes): the lowest sounding
    pitch is it and the melody's note there is held for at least half a bar, bool ``[n_bars]``."""
    steps = roll.shape[2]
    sounding = _sounding(roll)
    melody = _sounding(roll, MELODY)
    out = np.zeros(len(roll), bool)
    for i in range(len(roll)):
        t = i * steps
        pitches = np.nonzero(sounding[t])[0]
        if not len(pitches):
            continue
        lowest = (pitches[0] + DEFAULT.pitch_low) % 12
        top = np.nonzero(melody[t])[0]
        held = len(top) > 0 and melody[t : t + steps // 2, top[-1]].all()
        out[i] = lowest == tonic[i] and held
    return out


def cadence_profile(roll: np.ndarray, phrase_bars: int = PHRASE_BARS) -> np.ndarray:
    """Share of downbeats that cadence at each position of a ``phrase_bars``-bar phrase, ``[phrase_bars]``."""
    tonic, _, _ = windowed_key(roll, radius=2)
    hits = cadence_downbeats(roll, tonic)
    positions = np.arange(len(roll)) % phrase_bars
    counts = np.bincount(positions, minlength=phrase_bars).astype(np.float64)
    with np.errstate(invalid="ignore"):
        return np.bincount(positions, weights=hits, minlength=phrase_bars) / counts


def melody_notes(roll: np.ndarray):
    """The melody track's notes (``pianoroll.Note``), held notes joined across bar lines."""
    return [n for n in roll_to_notes(roll) if n.track == MELODY]


def melody_range(roll: np.ndarray, window: int = 16, track: int = MELODY) -> float:
    """Mean over ``window``-bar windows of the melody's (``track``'s) onset range in semitones (NaN
    without it)."""
    onsets = roll[:, track] == ONSET  # [n, S, P]
    ranges = []
    for lo in range(0, max(1, len(roll) - window + 1), window):
        pitches = np.nonzero(onsets[lo : lo + window].any(axis=(0, 1)))[0]
        if len(pitches):
            ranges.append(pitches[-1] - pitches[0])
    return float(np.mean(ranges)) if ranges else float("nan")


def long_note_share(roll: np.ndarray) -> float:
    """Share of melody notes lasting a whole bar (16 steps) or longer."""
    notes = melody_notes(roll)
    return float(np.mean([n.duration >= roll.shape[2] for n in notes])) if notes else float("nan")


def rest_bars_per_100(roll: np.ndarray) -> float:
    """Bars per 100 in which the melody is silent for a beat (4 steps) or more in a row."""
    melody = _sounding(roll, MELODY).any(axis=1).reshape(len(roll), -1)  # [n, S]
    if not melody.any():
        return float("nan")
    rests = 0
    for bar in melody:
        run = best = 0
        for on in bar:
            run = 0 if on else run + 1
            best = max(best, run)
        rests += best >= BEAT
    return 100.0 * rests / len(roll)


def melody_chord_onsets(roll: np.ndarray) -> float:
    """Share of melody onset steps at which another melody pitch sounds too."""
    onset = (roll[:, MELODY] == ONSET).reshape(-1, roll.shape[-1]).any(axis=1)
    count = _sounding(roll, MELODY).sum(axis=1)
    return float(np.mean(count[onset] > 1)) if onset.any() else float("nan")


def parallels_per_100(roll: np.ndarray) -> dict[str, float]:
    """Parallel fifths and octaves between melody top and bass bottom per 100 steps where both move (the
    panel's voice-pair count, ``model/panel.py``, on the outer pair)."""
    from musicbox.model.panel import OUTER, parallels

    return parallels(roll, OUTER)


def strong_beat_clashes(roll: np.ndarray) -> float:
    """Share of strong-beat sonorities (2+ pitch classes at steps 0, 8) holding two a semitone apart."""
    from musicbox.model.panel import clash_share

    return clash_share(roll, STRONG_STEPS)


KEY_RADIUS = 4
"""Bars each side of a bar in the window its key is read from (8-bar windows, clipped at the ends)."""


def window_keys(roll: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """The piece's home key (tonic, mode: the key of all of it) and per bar the key of its window
    (tonic ``[n]``, mode ``[n]``) and whether anything starts in it (busy ``[n]``)."""
    home_tonic, home_mode, _ = windowed_key(roll, radius=len(roll))
    tonic, mode, _ = windowed_key(roll, radius=KEY_RADIUS)
    busy = np.asarray(onset_cells(roll).any(axis=1))
    return int(home_tonic[0]), int(home_mode[0]), tonic, mode, busy


def key_stability(roll: np.ndarray) -> dict[str, float]:
    """Share of bars whose 8-bar-window key is the home key, and of bars in the other mode."""
    home_tonic, home_mode, tonic, mode, busy = window_keys(roll)
    if not busy.any():
        return {"home_key": float("nan"), "mode_flips": float("nan")}
    same = (tonic == home_tonic) & (mode == home_mode)
    return {"home_key": float(same[busy].mean()), "mode_flips": float((mode != home_mode)[busy].mean())}


def piece_metrics(roll: np.ndarray, phrase_bars: int = PHRASE_BARS) -> dict[str, float]:
    """Every form metric of one piece (see the module docstring), as a flat dict of floats."""
    sim = similarity_matrix(roll)
    profile = lag_profile(sim)
    cad = cadence_profile(roll[has_pickup(roll) :], phrase_bars)  # phrases count from the first full bar
    out = {
        "phrase_return_rate": phrase_return_rate(roll),
        "bar_repeat_rate": bar_repeat_rate(sim, roll),
        **{f"similarity_lag{lag}": float(profile[lag]) for lag in LAGS},
        "lag4_peak": lag_peak(profile, 4),
        "lag8_peak": lag_peak(profile, 8),
        "cadence_rate": float(np.nanmean(cad)),
        "cadence_phrase_end": float(cad[-1] / phrase_bars) if np.isfinite(cad[-1]) else float("nan"),
        "melody_range": melody_range(roll),
        "long_notes": long_note_share(roll),
        "melody_rests_per_100": rest_bars_per_100(roll),
        "melody_chord_onsets": melody_chord_onsets(roll),
        **{f"parallel_{k}_per_100": v for k, v in parallels_per_100(roll).items()},
        "strong_beat_clashes": strong_beat_clashes(roll),
        **key_stability(roll),
    }
    return out


def summarize(metrics: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over pieces, ignoring NaN (pieces that cannot show it)."""
    keys = metrics[0].keys() if metrics else ()
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a metric no piece shows: NaN
        return {k: float(np.nanmean([m[k] for m in metrics])) if metrics else float("nan") for k in keys}
