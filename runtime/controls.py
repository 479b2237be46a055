"""What the listener sets: the three knobs of the box, and how much the music's returns vary."""

from __future__ import annotations

from dataclasses import dataclass

VARIATION = 0.5
"""The default variation: returns recognisably the same, a few notes changed (on the shipped model a
returning bar shares 86 % of its onsets with its first playing; 0.6: 71 %, 0.7: 46 %)."""


@dataclass(frozen=True)
class Controls:
    """The knob state of the box.

    style: position on the style axis, 0 .. n_styles - 1. An integer is a detent (one style); a value
        between two integers blends the two neighbouring styles (2.3 = 70 % style 2, 30 % style 3).
    tempo_bpm: playing tempo in beats (quarter notes) per minute; also drives the model's energy
        (note density) condition through the bundle's tempo table.
    mood: -1 (dark: minor, low, sparse) .. +1 (bright: major, high, lively).
    variation: 0 .. 1, how far a returning section departs from its first playing: 0 plays it back
        literally, 1 writes new music every time (see ``runtime/form.py``).
    """

    style: float = 0.0
    tempo_bpm: float = 100.0
    mood: float = 0.0
    variation: float = VARIATION

    def bar_seconds(self, steps_per_bar: int = 16) -> float:
        """Duration of one bar in seconds (a step is a sixteenth note)."""
        return steps_per_bar / 4 * 60.0 / self.tempo_bpm
