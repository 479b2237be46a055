"""Two baselines the model must beat, both writing rolls ``[n_bars, 3, 16, 64]`` like the model (a bar of
a 12-step meter fills its first 12 steps, ``runtime/meter.py``).

- :func:`random_in_key`: random notes from one key's scale, each track in its style's register, at the
  style's median density;
- :class:`MarkovChain`: a first-order chain per style and track over (pitch relative to the piece's
  tonic, duration, gap to the next note), trained on the same training bars as the model.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np

from musicbox.runtime.features import ATTRS, MAJOR_SCALE, MINOR_SCALE
from musicbox.runtime.meter import COMMON, Meter, crop, pad
from musicbox.runtime.pianoroll import DEFAULT, Note, notes_to_roll, roll_to_notes

TRACK_REGISTER = (72, 60, 45)
"""Centre MIDI pitch of melody, harmony and bass for the random baseline."""


def random_in_key(
    n_bars: int, density: float, mode: float, rng: np.random.Generator, meter: Meter = COMMON
) -> np.ndarray:
    """A roll of ``n_bars`` bars of ``meter`` of random in-key notes, about ``density`` onsets per bar."""
    tonic = int(rng.integers(12))
    scale = (MAJOR_SCALE if mode >= 0 else MINOR_SCALE) + tonic
    notes = []
    n = max(1, int(round(density * n_bars)))
    for _ in range(n):
        track = int(rng.integers(3))
        centre = TRACK_REGISTER[track]
        candidates = [p for p in range(centre - 7, centre + 8) if p % 12 in scale % 12]
        notes.append(
            Note(
                track,
                int(rng.integers(n_bars * meter.steps)),
                int(rng.choice(candidates)),
                int(rng.choice([1, 2, 2, 4, 4, 8])),
            )
        )
    return _bars(notes, n_bars, meter)


def _bars(notes: list[Note], n_bars: int, meter: Meter) -> np.ndarray:
    """Notes on a grid of ``meter``'s bars -> model rows ``[n_bars, 3, 16, 64]``."""
    return pad(notes_to_roll(notes, n_bars, replace(DEFAULT, steps_per_bar=meter.steps)))


class MarkovChain:
    """First-order note chains, one per (style, track), over ``(pitch - tonic, duration, gap)`` tokens."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.next: dict[tuple, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
        self.starts: dict[tuple, list] = defaultdict(list)

    def fit(self, dataset, max_pieces: int = 3000, meter: Meter = COMMON) -> MarkovChain:
        """Count transitions in the training split (at most ``max_pieces`` pieces, chosen at random), whose
        bars are in ``meter``."""
        train = dataset.split == 0
        pieces = np.unique(dataset.piece[train])
        for p in self.rng.permutation(pieces)[:max_pieces]:
            idx = np.nonzero(dataset.piece == p)[0]
            style, tonic = int(dataset.style[idx[0]]), int(dataset.tonic[idx[0]])
            for track in range(DEFAULT.n_tracks):
                notes = [n for n in roll_to_notes(crop(dataset.rolls[idx], meter)) if n.track == track]
                tokens = [
                    (n.pitch - tonic, min(n.duration, 16), min(b.start - n.start, 16))
                    for n, b in zip(notes, notes[1:], strict=False)
                ]
                key = (style, track)
                if tokens:
                    self.starts[key].append(tokens[0])
                for a, b in zip(tokens, tokens[1:], strict=False):
                    self.next[key][a].append(b)
        return self

    def generate(self, style: int, n_bars: int, mode: float, meter: Meter = COMMON) -> np.ndarray:
        """A roll of ``n_bars`` bars of ``meter`` in a random key; ``mode`` is ignored (the chain has no
        mood)."""
        tonic = int(self.rng.integers(12))
        notes = []
        for track in range(DEFAULT.n_tracks):
            key = (style, track)
            if not self.starts[key]:
                continue
            token, t = self.starts[key][self.rng.integers(len(self.starts[key]))], 0
            while t < n_bars * meter.steps:
                rel, dur, gap = token
                notes.append(Note(track, t, rel + tonic, dur))
                t += max(gap, 1)
                options = self.next[key].get(token) or self.starts[key]
                token = options[self.rng.integers(len(options))]
        return _bars(notes, n_bars, meter)


def style_medians(dataset) -> np.ndarray:
    """Median raw density per style, ``[n_styles]`` (for the random baseline; NaN for a style without
    bars)."""
    d = ATTRS.index("density")
    per_style = [dataset.attrs[dataset.style == s, d] for s in range(len(dataset.style_names))]
    return np.array([np.median(x) if len(x) else np.nan for x in per_style])
