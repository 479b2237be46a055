"""From knob readings to :class:`~musicbox.runtime.controls.Controls`: mapping, smoothing, hysteresis,
rate limit.

A knob reading is a raw position 0..1 (a potentiometer through an ADC, a rotary encoder's count, a key
press). Real hardware jitters: an MCP3008 reading wanders by a few LSB, so every knob is smoothed
(exponential, time constant in seconds) and must move past a hysteresis band (fraction of its travel)
before it counts as turned. A turning knob must not storm the generator with regenerations, so changes
are passed on at most once per ``rate_limit`` seconds, always ending on the knob's final position.

The style knob has detents: its travel is cut into one sector per style; the middle ``detent_width`` of
a sector snaps to that style and the rest blends linearly into the neighbour (2.3 = 70 % style 2,
30 % style 3), the position the conditioning blends.

The meter is no knob travel: it is a choice among the playing style's meters (:meth:`KnobMap.next_meter`,
the terminal's key and the web remote's button), kept by the map like the variation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from musicbox.runtime.controls import (
    FIELDS,
    MOOD_RANGE,
    TURNED,
    VARIATION,
    VARIATION_RANGE,
    ControlRanges,
    Controls,
    nearest_style,
)

KNOBS = TURNED
"""The knobs read as positions 0..1 (``runtime.controls.TURNED``; their fields: ``controls.FIELDS``)."""


def _clip(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return min(hi, max(lo, float(x)))


@dataclass(frozen=True)
class KnobMap:
    """Raw positions 0..1 -> control values.

    n_styles: styles on the style knob (detents). min_bpm/max_bpm: tempo at the knob's ends, BPM.
    detent_width: fraction 0..1 of each style's sector that snaps to the style. variation: 0..1, the
    variation of returning sections when no knob sets it (raw key ``variation``, read as is). meter: the
    meter of the controls ("" = the style's own, else a name of ``runtime.meter.METERS``). style_meters:
    each style's meters in knob order, its own first (the manifest's), for :meth:`next_meter`. key: the
    key control of the controls ("" = the seed's, else a tonic of ``runtime.controls.TONICS``): like the
    meter a choice, not a knob's travel.
    """

    n_styles: int
    min_bpm: float = 60.0
    max_bpm: float = 160.0
    detent_width: float = 0.5
    variation: float = VARIATION
    meter: str = ""
    style_meters: tuple[tuple[str, ...], ...] = ()
    key: str = ""

    def style(self, raw: float) -> float:
        """Style position 0 .. n_styles-1 (integers at detents, blends between), to 0.01."""
        if self.n_styles <= 1:
            return 0.0
        x = min(self.n_styles - 1.0, max(0.0, _clip(raw) * self.n_styles - 0.5))
        k = math.floor(x)
        frac, half = x - k, self.detent_width / 2
        if frac <= half:
            return float(k)
        if frac >= 1.0 - half:
            return float(k + 1)
        return round(k + (frac - half) / (1.0 - self.detent_width), 2)

    def tempo(self, raw: float) -> float:
        """Tempo in BPM, rounded to a whole beat per minute."""
        return float(round(self.min_bpm + _clip(raw) * (self.max_bpm - self.min_bpm)))

    def mood(self, raw: float) -> float:
        """Mood -1 (dark) .. +1 (bright) (``controls.MOOD_RANGE``), to 0.01."""
        lo, hi = MOOD_RANGE
        return round(lo + _clip(raw) * (hi - lo), 2)

    def controls(self, raw: Mapping[str, float]) -> Controls:
        """Controls for the raw positions of the three knobs (keys :data:`KNOBS`), and ``variation``
        (0..1, rounded to 0.01) when the raw positions hold it."""
        return Controls(
            style=self.style(raw["style"]),
            tempo_bpm=self.tempo(raw["tempo"]),
            mood=self.mood(raw["mood"]),
            variation=round(_clip(raw.get("variation", self.variation), *VARIATION_RANGE), 2),
            meter=self.meter,
            key=self.key,
        )

    def ranges(self, style_names: Sequence[str]) -> ControlRanges:
        """The values a knob of this map may be given by hand (a knob script, the web remote): these
        styles (``style_names``, knob order), this tempo range, the meters some style plays."""
        return ControlRanges(tuple(style_names), self.min_bpm, self.max_bpm, self.meters)

    @property
    def meters(self) -> tuple[str, ...]:
        """Every meter some style plays, in order of first appearance."""
        return tuple(dict.fromkeys(m for style in self.style_meters for m in style))

    def meters_of(self, style: float) -> tuple[str, ...]:
        """The meters of the style nearest to position ``style``, its own first (4/4 when unknown)."""
        if not self.style_meters:
            return ("4/4",)
        return self.style_meters[nearest_style(style, len(self.style_meters))]

    def next_meter(self, controls: Controls) -> str:
        """The meter after ``controls.meter`` among its style's: "" (the style's own), then its other
        meters in order, then "" again; a meter the style does not list steps to ""."""
        own, *others = self.meters_of(controls.style)
        choices = ["", *others]
        current = "" if controls.meter == own else controls.meter
        if current not in choices:
            return ""
        return choices[(choices.index(current) + 1) % len(choices)]

    def raw_of(self, controls: Controls) -> dict[str, float]:
        """Knob positions that give ``controls`` (the inverse of :meth:`controls`, up to rounding)."""
        return {
            "style": self._style_raw(controls.style),
            "tempo": _clip((controls.tempo_bpm - self.min_bpm) / (self.max_bpm - self.min_bpm)),
            "mood": _clip((controls.mood - MOOD_RANGE[0]) / (MOOD_RANGE[1] - MOOD_RANGE[0])),
        }

    def _style_raw(self, style: float) -> float:
        if self.n_styles <= 1:
            return 0.5
        s = min(self.n_styles - 1.0, max(0.0, style))
        k = math.floor(s)
        x = float(k) if s == k else k + self.detent_width / 2 + (s - k) * (1.0 - self.detent_width)
        return (x + 0.5) / self.n_styles


class KnobFilter:
    """One knob's reading -> a steady position: exponential smoothing, then a hysteresis band.

    smoothing: time constant in seconds (0 = none). hysteresis: fraction of the travel the smoothed
    reading must move away from the last position before the position follows; within ``hysteresis`` of
    an end the position snaps to that end, so both ends are always reachable.
    """

    def __init__(self, smoothing: float = 0.0, hysteresis: float = 0.0):
        self.smoothing = smoothing
        self.hysteresis = hysteresis
        self.smoothed: float | None = None
        self.position: float | None = None
        self._time = 0.0

    def update(self, raw: float, now: float) -> float:
        """Feed a reading taken at ``now`` (seconds, monotonic); return the knob's position 0..1."""
        raw = _clip(raw)
        if self.smoothed is None or self.position is None:
            self.smoothed = self.position = raw
        else:
            dt = max(0.0, now - self._time)
            alpha = 1.0 - math.exp(-dt / self.smoothing) if self.smoothing > 0 else 1.0
            self.smoothed += alpha * (raw - self.smoothed)
        self._time = now
        target = self._snap(self.smoothed)
        if abs(target - self.position) > self.hysteresis or (
            target in (0.0, 1.0) and target != self.position
        ):
            self.position = target
        return self.position

    def _snap(self, value: float) -> float:
        if value <= self.hysteresis:
            return 0.0
        if value >= 1.0 - self.hysteresis:
            return 1.0
        return value


class KnobProcessor:
    """Readings of the three knobs -> rate-limited :class:`Controls`.

    Call :meth:`feed` at every poll, changed or not: a change held back by the rate limit (seconds) is
    passed on by a later feed, so the last position of a turn always arrives.
    """

    def __init__(
        self, knob_map: KnobMap, smoothing: float = 0.0, hysteresis: float = 0.0, rate_limit: float = 0.0
    ):
        self.map = knob_map
        self.rate_limit = rate_limit
        self.filters = {name: KnobFilter(smoothing, hysteresis) for name in KNOBS}
        self.positions: dict[str, float] = {}
        self.last: Controls | None = None
        self._last_time = -math.inf
        self._pinned: dict[str, float | None] = {}  # knob -> position when the remote set its value

    def follow(self, controls: Controls) -> None:
        """The box's controls were set elsewhere (the web remote). Each knob keeps that value until it is
        turned (its position moves past the hysteresis); then it takes over again: last writer wins, knob
        by knob, so turning one knob does not snap the others back to where they physically stand."""
        self.last = controls
        self.map = replace(self.map, variation=controls.variation, meter=controls.meter, key=controls.key)
        self._pinned = {name: self.positions.get(name) for name in KNOBS}

    def feed(self, raw: Mapping[str, float], now: float) -> Controls | None:
        """Readings (0..1 per knob name, and ``variation`` when something sets it) taken at ``now``
        seconds; new Controls when they are due."""
        for name in KNOBS:
            self.positions[name] = self.filters[name].update(raw[name], now)
        if "variation" in raw:  # set exactly (a key, the web remote): no filter
            self.positions["variation"] = raw["variation"]
        controls = self.map.controls(self.positions)
        for name, at in list(self._pinned.items()):
            if self.positions[name] != at:
                del self._pinned[name]  # turned: this knob writes again
            elif self.last is not None:
                field = FIELDS[name]
                controls = replace(controls, **{field: getattr(self.last, field)})
        if controls == self.last or now - self._last_time < self.rate_limit:
            return None
        self.last, self._last_time = controls, now
        return controls
