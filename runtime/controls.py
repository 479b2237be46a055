"""What the listener sets: the three knobs of the box, how much the music's returns vary, and the ranges a
value given by hand must lie in."""

from __future__ import annotations

import math
from dataclasses import dataclass

from musicbox.errors import ConfigError

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
    meter: the bar's meter, a key of ``runtime.meter.METERS`` ("4/4", "3/4", "6/8"), or "" for the
        style's own: the first of its ``meters`` in the manifest (the generator resolves it per bar).
    """

    style: float = 0.0
    tempo_bpm: float = 100.0
    mood: float = 0.0
    variation: float = VARIATION
    meter: str = ""

    def bar_seconds(self, steps_per_bar: int = 16) -> float:
        """Duration of one bar in seconds (a step is a sixteenth note)."""
        return steps_per_bar / 4 * 60.0 / self.tempo_bpm


@dataclass(frozen=True)
class ControlRanges:
    """The values a knob may be given by hand (command line, knob script): the one check for both.

    style_names: the styles in knob order (a style is a name or a position 0 .. n-1). min_bpm/max_bpm:
    the tempo range in BPM (the manifest's ``controls.tempo``). meters: the meters that may be asked for
    besides "" (the style's own): the model's (``representation.meters``). Mood is always -1 .. +1,
    variation 0 .. 1.
    """

    style_names: tuple[str, ...]
    min_bpm: float
    max_bpm: float
    meters: tuple[str, ...] = ()

    @classmethod
    def from_manifest(cls, controls_info, meters: tuple[str, ...] = ()) -> ControlRanges:
        """From a manifest's ``controls`` (``runtime.manifest.ControlsInfo``) and its model's ``meters``."""
        t = controls_info.tempo
        names = tuple(s.name for s in controls_info.styles)
        return cls(names, float(t.min_bpm), float(t.max_bpm), tuple(meters))

    def check_meter(self, value, where: str) -> str:
        """``value`` as a meter for ``Controls.meter``: "" (the style's own) or one of :attr:`meters`;
        a ConfigError naming ``where``, the value and what is allowed otherwise."""
        if value != "" and value not in self.meters:
            allowed = ", ".join(['"" (the style\'s own)', *self.meters])
            raise ConfigError(f"{where}: got {value!r}; allowed: {allowed}")
        return value

    def check(self, knob: str, value, where: str) -> float:
        """``value`` of ``knob`` (style, tempo, mood or variation) as a number, or a ConfigError naming ``where``,
        the value and what is allowed. A style may be a name or a position; strings of numbers count."""
        if knob == "style" and isinstance(value, str) and value in self.style_names:
            return float(self.style_names.index(value))
        lo, hi = self.limits(knob)
        number = _number(value)
        if number is None or not lo <= number <= hi:
            allowed = f"a number from {lo:g} to {hi:g}"
            if knob == "style":
                allowed += " or one of " + ", ".join(self.style_names)
            raise ConfigError(f"{where}: got {value!r}; allowed: {allowed}")
        return number

    def limits(self, knob: str) -> tuple[float, float]:
        """Inclusive (low, high) of ``knob``."""
        if knob == "style":
            return 0.0, float(max(0, len(self.style_names) - 1))
        if knob == "tempo":
            return self.min_bpm, self.max_bpm
        if knob == "mood":
            return -1.0, 1.0
        if knob == "variation":
            return 0.0, 1.0
        raise ValueError(f"no knob {knob!r}")


def _number(value) -> float | None:
    """A finite float of an int, float or numeric string; None otherwise (bools are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
