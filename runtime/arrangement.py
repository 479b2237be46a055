"""How a bar of notes is played: instruments, drums, swing and dynamics per style.

The generator writes pitches on a 16th-note grid (``pianoroll.Note``: track, start, pitch, duration in
steps, relative to the bar start). :class:`Arranger` turns one bar of them into :class:`Played` notes for
the synth: a MIDI channel per track (melody 0, harmony 1, bass 2) playing the style's General MIDI
program, a drum part on channel 10 (index 9) where the style names a pattern family, times moved by swing
and a little humanization, and velocities from the style, the mood and the tempo.

Times stay in grid steps (floats) so that the renderer converts them with the bar's tempo; a note-off may
lie at or beyond the bar's steps (the note rings into the next bar).

Meters (``runtime/meter.py``): every bar is arranged in its meter. Each drum family has a pattern per
meter, one cell per step: 4/4 as it always was; 3/4 a waltz (the bass drum on 1, lighter hits on 2 and
3); 6/8 the compound lilt (two dotted beats, the bass drum on both, the eighths between them lighter).
Velocity accents fall on the meter's downbeat and beats. Swing follows the beat: in 4/4 and 3/4 the
off-beat sixteenths come late; in 6/8 the same ``swing`` is a jig's lilt, the first eighth of each
three-eighth group longer and the second shorter (:func:`swing_warp`).

Style blends (``Controls.style`` between two detents): programs and drum family come from the style that
leads the blend (``controls.nearest_style``: they switch at the midpoint, to the upper style, at a bar
line); swing and base velocity are interpolated linearly between the two styles, so a knob turn changes
feel and loudness smoothly.

Performance (``runtime/performance.py``): given where the form put the bar (a ``Phrasing``), the
played notes are shaped as a player phrases them (an arch of dynamics over each phrase, a breath at a
cadence, duration contrast and high-loud in the melody) and the bar gets a ``stretch`` (a ritardando
into phrase, section and tune ends, a chorale's fermata), all scaled by ``expression`` (0: untouched).

Energy is the tempo knob's position in the manifest's tempo range, 0..1 (``controls.energy``, as in the
conditioning). Drum intensity ``0.65 * energy + 0.35 * (mood + 1) / 2`` picks how many of a pattern's
hits play and how hard: the same quantities that raise the model's note density.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from musicbox.runtime.controls import Controls, energy, nearest_style, style_blend
from musicbox.runtime.meter import COMMON, METERS, Meter
from musicbox.runtime.performance import DEFAULT_RULES, Phrasing, Rules, perform, rules_for
from musicbox.runtime.pianoroll import DEFAULT, HELD, Note, Representation, roll_to_notes

if TYPE_CHECKING:  # the manifest validates drum families against DRUM_PATTERNS: it imports this module
    from musicbox.runtime.manifest import Arrangement, ControlsInfo

DRUM_CHANNEL = 9
"""MIDI channel 10 (0-based 9): General MIDI percussion."""

TRACK_GAIN = (1.0, 0.78, 0.9)
"""Velocity scale of melody, harmony and bass: the tune on top, the chords behind it."""

# Pattern cells: '.' rest; 'X' accent and 'x' hit (always); 'o' from intensity 0.4; 'g' ghost from 0.7.
_CELLS = {".": (math.inf, 0.0), "X": (0.0, 1.0), "x": (0.0, 0.8), "o": (0.4, 0.7), "g": (0.7, 0.45)}

Pattern = tuple[tuple[int, str], ...]
"""(General MIDI percussion key, one cell per step of the bar) per instrument."""

DRUM_PATTERNS: dict[str, dict[str, Pattern]] = {
    "none": dict.fromkeys(METERS, ()),
    "folk": {  # bass drum on the strong beats, tambourine on the beats, off-beats as it gets livelier
        "4/4": ((36, "X.......x.....o."), (54, "x.o.x.o.x.o.x.og")),
        "3/4": ((36, "X..........."), (54, "..o.x.o.x.og")),
        "6/8": ((36, "X.....x....."), (54, "x.g.o.x.g.o.")),
    },
    "dance": {  # four on the floor, clap on 2 and 4, off-beat hats; a waltz's 2 and 3; 6/8's second beat
        "4/4": ((36, "X...x...X...x..."), (39, "....x.......x..."), (42, "ogx.ogx.ogx.ogx.")),
        "3/4": ((36, "X..........."), (39, "....x...x..."), (42, "ogx.ogx.ogx.")),
        "6/8": ((36, "X.....x....."), (39, "......x....."), (42, "x.o.o.x.o.o.")),
    },
    "rock": {
        "4/4": ((36, "X.....o.x.o....."), (38, "....X.......X..g"), (42, "xgxgxgxgxgxgxgxg")),
        "3/4": ((36, "X.......o..."), (38, "....x...x..g"), (42, "xgxgxgxgxgxg")),
        "6/8": ((36, "X..........."), (38, "......X....g"), (42, "x.x.x.x.x.x.")),
    },
    "march": {
        "4/4": ((36, "X.......x......."), (38, "x.o.x.gxx.o.x.gx")),
        "3/4": ((36, "X..........."), (38, "x.o.x.g.x.gx")),
        "6/8": ((36, "X.....x....."), (38, "x...o.x...og")),
    },
    "ballad": {
        "4/4": ((36, "X.........o....."), (37, "....x.......x..."), (51, "x.o.x.o.x.o.x.o.")),
        "3/4": ((36, "X..........."), (37, "....x...x..."), (51, "x.o.x.o.x.o.")),
        "6/8": ((36, "X..........."), (37, "......x....."), (51, "x.o.o.x.o.o.")),
    },
}
"""Drum pattern families (the manifest's ``drums``): a :data:`Pattern` per meter name of ``METERS``."""


class Blend(NamedTuple):
    """The arrangement at one style-knob position: ``programs`` and ``drums`` of the nearer style,
    ``swing`` and base ``velocity`` interpolated between the two neighbouring styles' (manifest
    ``Arrangement``; velocity is a float here, between two integer velocities)."""

    programs: tuple[int, ...]
    drums: str
    swing: float
    velocity: float


class Played(NamedTuple):
    """One note for the synth.

    on, off: times in grid steps from the bar start, after swing and humanization (``off`` may be
    ``>=`` the bar's steps: it rings into the next bar). channel: MIDI channel 0..15. key: MIDI note.
    velocity: 1..127. tied: continues the same track and pitch sounding at the end of the previous bar
    (the renderer keeps that note sounding instead of striking it again).
    """

    on: float
    off: float
    channel: int
    key: int
    velocity: int
    tied: bool


@dataclass(frozen=True)
class BarPlan:
    """One arranged bar: ``programs`` per track channel, ``notes`` sorted by onset (drums included);
    ``stretch``: how much longer than written at its tempo the bar lasts (the performance's ritardando
    and fermata, ``runtime/performance.py``; 1.0 without): its steps last ``stretch`` times as long."""

    programs: tuple[int, ...]
    notes: list[Played]
    stretch: float = 1.0


class Arranger:
    """Arranges bars for one bundle's styles; deterministic for a seed (humanization draws from it).

    styles: one manifest ``Arrangement`` per style detent, knob order (validated by
    ``runtime/manifest.py``). tempo_range: (min_bpm, max_bpm) that map to energy 0 and 1. humanize: jitter
    onsets (sigma 0.02 step) and velocities (sigma 5 %). expression: how much a bar with a ``phrase`` is
    performed, 0..1 (0: as written; ``runtime/performance.py``). rules: the performance rules per style
    (default: :data:`performance.DEFAULT_RULES` for each).
    """

    def __init__(
        self,
        styles: Sequence[Arrangement],
        tempo_range: tuple[float, float],
        seed: int = 0,
        humanize: bool = True,
        expression: float = 0.0,
        rules: Sequence[Rules] | None = None,
    ):
        self.styles = tuple(styles)
        self.tempo_range = tempo_range
        self.seed = seed
        self.humanize = humanize
        if not 0.0 <= expression <= 1.0:
            raise ValueError(f"expression must be in 0..1 ([synth] expression): {expression!r}")
        self.expression = float(expression)
        self.rules = tuple(rules) if rules is not None else (DEFAULT_RULES,) * len(self.styles)
        if len(self.rules) != len(self.styles):
            raise ValueError(f"{len(self.rules)} performance rules for {len(self.styles)} styles")
        self.reset()

    @classmethod
    def from_manifest(
        cls, controls: ControlsInfo, seed: int = 0, humanize: bool = True, expression: float = 0.0
    ) -> Arranger:
        """Build from the manifest's ``controls`` table: each style's arrangement, its performance rules
        (by its name, ``performance.rules_for``) and the tempo range."""
        tempo = (controls.tempo.min_bpm, controls.tempo.max_bpm)
        rules = [rules_for(s.name) for s in controls.styles]
        return cls([s.arrangement for s in controls.styles], tempo, seed, humanize, expression, rules)

    def reset(self) -> None:
        """Restart the humanization sequence from the seed."""
        self._rng = np.random.default_rng(self.seed)

    def style_arrangement(self, style: float) -> Blend:
        """The arrangement at knob position ``style`` (clipped to the detents): programs and drums of the
        style that leads the blend (``controls.nearest_style``), swing and velocity interpolated between the
        two neighbours (``controls.style_blend``)."""
        lo, hi, w = style_blend(style, len(self.styles))
        a, b = self.styles[lo], self.styles[hi]
        near = self.styles[nearest_style(style, len(self.styles))]
        return Blend(
            near.programs,
            near.drums,
            (1 - w) * a.swing + w * b.swing,
            (1 - w) * float(a.velocity) + w * float(b.velocity),
        )

    def arrange(
        self,
        notes: Iterable[Note],
        controls: Controls,
        meter: Meter = COMMON,
        ties: Collection[tuple[int, int]] = (),
        phrase: Phrasing | None = None,
    ) -> BarPlan:
        """Arrange one bar in ``meter``.

        notes: the bar's notes, ``start`` in ``0 .. meter.steps - 1`` (a duration may run past the bar).
        ties: ``(track, pitch)`` pairs whose note at step 0 continues the previous bar's (a ``HELD`` cell at
        step 0 of the roll); see :func:`bar_notes`. phrase: where the form put the bar (the generator's
        ``Bar.phrase``): performed with the leading style's rules at ``expression``; None: as written.
        """
        arr = self.style_arrangement(controls.style)
        e = energy(controls.tempo_bpm, *self.tempo_range)
        level = arr.velocity * (1 + 0.12 * controls.mood) * (0.9 + 0.2 * e)
        played = self._play_notes(list(notes), arr, level, meter, set(ties))
        intensity = float(np.clip(0.65 * e + 0.35 * (controls.mood + 1) / 2, 0, 1))
        played += self._play_drums(arr, level, intensity, meter)
        played.sort(key=lambda p: p.on)
        if phrase is None or self.expression <= 0.0:
            return BarPlan(arr.programs, played)
        rules = self.rules[nearest_style(controls.style, len(self.styles))]
        performed, stretch = perform(played, phrase, rules, self.expression, meter.steps)
        return BarPlan(arr.programs, performed, stretch)

    def _play_notes(
        self, notes: list[Note], arr: Blend, level: float, meter: Meter, ties: set
    ) -> list[Played]:
        jitter = self._jitter(len(notes))
        out = []
        for note, (dt, dv) in zip(notes, jitter, strict=True):
            if not 0 <= note.start < meter.steps:
                raise ValueError(f"{note} starts outside its {meter.name} bar of {meter.steps} steps")
            tied = note.start == 0 and (note.track, note.pitch) in ties
            on = 0.0 if tied else _clip_onset(swing_warp(note.start, arr.swing, meter) + dt, meter.steps)
            off = max(swing_warp(note.start + note.duration, arr.swing, meter), on + 0.25)
            vel = level * TRACK_GAIN[note.track] * accent(note.start, meter) * dv
            out.append(Played(on, off, note.track, note.pitch, _midi_velocity(vel), tied))
        return out

    def _play_drums(self, arr: Blend, level: float, intensity: float, meter: Meter) -> list[Played]:
        hits = []
        for key, cells in DRUM_PATTERNS[arr.drums][meter.name]:
            for step, cell in enumerate(cells):
                threshold, scale = _CELLS[cell]
                if intensity >= threshold:
                    hits.append((step, key, scale))
        jitter = self._jitter(len(hits))
        drum_level = level * (0.8 + 0.3 * intensity)
        out = []
        for (step, key, scale), (dt, dv) in zip(hits, jitter, strict=True):
            on = _clip_onset(swing_warp(step, arr.swing, meter) + dt, meter.steps)
            vel = _midi_velocity(drum_level * scale * dv)
            out.append(Played(on, on + 1.0, DRUM_CHANNEL, key, vel, False))
        return out

    def _jitter(self, n: int) -> np.ndarray:
        """``[n, 2]``: onset offset in steps and velocity factor per note (0 and 1 without humanize)."""
        if not self.humanize:
            return np.tile([0.0, 1.0], (n, 1))
        z = np.clip(self._rng.standard_normal((n, 2)), -2.5, 2.5)
        return np.column_stack([0.02 * z[:, 0], 1 + 0.05 * z[:, 1]])


def swing_warp(step: float, swing: float, meter: Meter = COMMON) -> float:
    """Grid time after swing, in steps. In 4/4 and 3/4, within each 8th (two steps) the off-beat 16th
    moves from 1 to ``1 + swing / 3`` and the time in between stretches linearly; 8th-note positions stay
    put. In 6/8 (dotted beats) the jig's lilt: within each group of three 8ths (six steps) the second 8th
    moves from 2 to ``2 * (1 + swing / 3)`` (the first 8th longer, the second shorter by as much), the
    third 8th and the beats stay put."""
    first = 2.0 if meter.beat_steps == 6 else 1.0  # the stretched part: a jig's first 8th, or a 16th
    period = 3 * first if meter.beat_steps == 6 else 2 * first
    group, frac = divmod(step, period)
    mid = first * (1.0 + swing / 3.0)
    if frac < first:
        warped = frac * mid / first
    elif frac < 2 * first:
        warped = mid + (frac - first) * (2 * first - mid) / first
    else:
        warped = frac
    return group * period + warped


def bar_notes(roll: np.ndarray, rep: Representation = DEFAULT) -> tuple[list[Note], set[tuple[int, int]]]:
    """One bar's roll ``[T, S, P]`` (or ``[1, T, S, P]``) -> its notes and its ties.

    ties: ``(track, pitch)`` of the notes that are ``HELD`` at step 0, i.e. continue from the previous bar.
    """
    roll = roll.reshape((1, *roll.shape[-3:]))
    tracks, pitches = np.nonzero(roll[0, :, 0, :] == HELD)
    ties = {(int(t), int(p) + rep.pitch_low) for t, p in zip(tracks, pitches, strict=True)}
    return roll_to_notes(roll, rep), ties


def accent(step: int, meter: Meter = COMMON) -> float:
    """Metric accent of an onset at ``step``: the downbeat, the meter's other beats, 8ths, off-beat 16ths."""
    if step % meter.steps == 0:
        return 1.08
    if step % meter.steps in meter.beats:
        return 1.04
    return 1.0 if step % 2 == 0 else 0.94


def _clip_onset(step: float, steps: int) -> float:
    return min(max(step, 0.0), steps - 0.05)


def _midi_velocity(v: float) -> int:
    return int(min(max(round(v), 1), 127))
