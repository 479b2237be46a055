"""What the listener sets, and the one home of the knobs' vocabulary: their names, the ranges a value
must lie in, their defaults, how the style knob blends two styles and which style leads a blend, and how
the tempo knob sets the model's energy.

Every surface (GPIO and Jetson knobs, the terminal's keys, a knob script, the web remote, ``musicbox
render``'s flags) and every consumer (conditioning, form, arrangement, generator) uses these names and
functions; none spells a range or rounds a style position itself.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from musicbox.errors import ConfigError

KNOBS = ("style", "tempo", "mood", "variation")
"""The knobs' names, as a knob script, ``musicbox render``'s flags and the terminal's keys say them."""

FIELDS = {"style": "style", "tempo": "tempo_bpm", "mood": "mood", "variation": "variation"}
"""Each knob's :class:`Controls` field (the web remote's JSON uses the field names)."""

TURNED = ("style", "tempo", "mood")
"""The knobs with travel: a potentiometer or a rotary encoder each on the box (``device/knobs.py``); the
variation and the meter are set by a key, a script or the remote."""

MOOD_RANGE = (-1.0, 1.0)
"""Mood: -1 (dark: minor, low, sparse) .. +1 (bright: major, high, lively)."""

VARIATION_RANGE = (0.0, 1.0)
"""Variation: 0 (returns played back literally) .. 1 (new music every time)."""

TONICS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
"""The keys the key control may ask for, by tonic (pitch class 0 .. 11); ``Controls.key`` "" leaves the
key to the seed. A flat name (Db, Eb, Gb, Ab, Bb) is read as its sharp."""

FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}

VARIATION = 0.5
"""The default variation: returns recognisably the same, a few notes changed (on the shipped model a
returning bar shares 86 % of its onsets with its first playing; 0.6: 71 %, 0.7: 46 %). The box's is the
configuration's ``[knobs] variation`` (tests/test_defaults.py ties the two)."""


@dataclass(frozen=True)
class Controls:
    """The knob state of the box.

    style: position on the style axis, 0 .. n_styles - 1. An integer is a detent (one style); a value
        between two integers blends the two neighbouring styles (2.3 = 70 % style 2, 30 % style 3; see
        :func:`style_blend`, and :func:`nearest_style` for the style that leads the blend).
    tempo_bpm: playing tempo in beats (quarter notes) per minute; also drives the model's energy
        (note density) condition through the bundle's tempo table (:func:`energy`).
    mood: :data:`MOOD_RANGE`, -1 (dark: minor, low, sparse) .. +1 (bright: major, high, lively).
    variation: :data:`VARIATION_RANGE`, how far a returning section departs from its first playing: 0
        plays it back literally, 1 writes new music every time (see ``runtime/form.py``).
    meter: the bar's meter, a key of ``runtime.meter.METERS`` ("4/4", "3/4", "6/8"), or "" for the
        style's own: the first of its ``meters`` in the manifest (the generator resolves it per bar).
    key: the tonic the music is played in, one of :data:`TONICS`, or "" for the seed's (the key a piece
        starts in, kept until a key is asked for); a new key begins at the next phrase start.
    """

    style: float = 0.0
    tempo_bpm: float = 100.0
    mood: float = 0.0
    variation: float = VARIATION
    meter: str = ""
    key: str = ""

    def bar_seconds(self, steps_per_bar: int = 16) -> float:
        """Duration of one bar in seconds (a step is a sixteenth note)."""
        return steps_per_bar / 4 * 60.0 / self.tempo_bpm


def style_blend(style: float, n_styles: int) -> tuple[int, int, float]:
    """The blend at style knob position ``style`` (clipped to the detents 0 .. n_styles - 1): the detent
    below, the detent above and the weight of the one above, 0 .. 1 (2.3 -> ``(2, 3, 0.3)``: 70 % style
    2, 30 % style 3; a detent k -> ``(k, k + 1, 0.0)``, the last one ``(n - 1, n - 1, 0.0)``)."""
    position = min(max(float(style), 0.0), n_styles - 1.0)
    low = math.floor(position)
    return low, min(low + 1, n_styles - 1), position - low


def nearest_style(style: float, n_styles: int | None = None) -> int:
    """The detent of the style that leads at knob position ``style``: the one with the larger blend weight
    (:func:`style_blend`); at an exact midpoint (2.5: 50 % each) the upper one, the style the knob has come
    halfway to. Whatever picks one style from a blend asks here: the tune's form and meter, style
    guidance's leading style, the instruments and drums, the meters the meter key steps through, the
    remote's label; so at a midpoint they all name the same style.

    n_styles: the styles on the knob, the result is clipped to their detents; None for a caller that
    does not know them (the form planner: its controls were checked against the bundle's styles)."""
    if n_styles is None:
        return max(0, math.floor(float(style) + 0.5))
    low, high, weight = style_blend(style, n_styles)
    return high if weight >= 0.5 else low


def energy(tempo_bpm: float, min_bpm: float, max_bpm: float) -> float:
    """The model's energy 0 .. 1 at ``tempo_bpm``: its place in the bundle's tempo range (the manifest's
    ``controls.tempo``: ``min_bpm`` is energy 0, ``max_bpm`` energy 1), clipped. The conditioning asks for
    the note density of this energy; the arrangement plays louder and fuller drums with it."""
    return min(max((tempo_bpm - min_bpm) / (max_bpm - min_bpm), 0.0), 1.0)


@dataclass(frozen=True)
class ControlRanges:
    """The values a knob may be given by hand (command line, knob script, web remote): the one check.

    style_names: the styles in knob order (a style is a name or a position 0 .. n-1). min_bpm/max_bpm:
    the tempo range in BPM (the manifest's ``controls.tempo``, or the box's knobs'). meters: the meters
    that may be asked for besides "" (the style's own): the model's (``representation.meters``). Mood is
    always :data:`MOOD_RANGE`, variation :data:`VARIATION_RANGE`.
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

    def check_key(self, value, where: str) -> str:
        """``value`` as a key for ``Controls.key``: "" (the seed's) or a tonic of :data:`TONICS` (a flat
        name gives its sharp, case does not matter); a ConfigError naming ``where`` otherwise."""
        if isinstance(value, str):
            name = value.strip().capitalize()
            name = FLATS.get(name, name)
            if name == "" or name in TONICS:
                return name
        allowed = ", ".join(['"" (the seed\'s)', *TONICS])
        raise ConfigError(f"{where}: got {value!r}; allowed: {allowed}")

    def check(self, knob: str, value, where: str) -> float:
        """``value`` of ``knob`` (one of :data:`KNOBS`) as a number, or a ConfigError naming ``where``, the
        value and what is allowed. A style may be a name or a position; strings of numbers count."""
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

    def apply(self, controls: Controls, values: Mapping[str, object], where: str = "") -> Controls:
        """``controls`` with ``values`` set, each checked (:meth:`check`, :meth:`check_meter`). The keys are
        :class:`Controls` fields (style, tempo_bpm, mood, variation, meter, key), as the web remote's JSON
        says them; a ConfigError names ``where`` + the key of an unknown key or a value out of range."""
        knob_of = {field: knob for knob, field in FIELDS.items()}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key == "meter":
                changes[key] = self.check_meter(value, f"{where}{key}")
            elif key == "key":
                changes[key] = self.check_key(value, f"{where}{key}")
            elif key in knob_of:
                changes[key] = self.check(knob_of[key], value, f"{where}{key}")
            else:
                allowed = ", ".join([*knob_of, "meter", "key"])
                raise ConfigError(f"{where}{key}: not a control; allowed: {allowed}")
        return replace(controls, **changes)

    def limits(self, knob: str) -> tuple[float, float]:
        """Inclusive (low, high) of ``knob``."""
        if knob == "style":
            return 0.0, float(max(0, len(self.style_names) - 1))
        if knob == "tempo":
            return self.min_bpm, self.max_bpm
        if knob == "mood":
            return MOOD_RANGE
        if knob == "variation":
            return VARIATION_RANGE
        raise ValueError(f"no knob {knob!r}; the knobs: {', '.join(KNOBS)}")


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


def rewrites(old: Controls, new: Controls) -> bool:
    """Whether the model writes music differently for ``new`` than for ``old`` (style, mood, variation,
    meter): a turn of those rewrites the rest of the bar; a tempo turn alone keeps the notes written and
    only renders them again; a key turn alone changes nothing before the next phrase start (the generator
    moves the key there, ``runtime/generator.py``)."""
    return (old.style, old.mood, old.variation, old.meter) != (new.style, new.mood, new.variation, new.meter)


def key_only(old: Controls, new: Controls) -> bool:
    """Whether ``new`` differs from ``old`` in the key alone: nothing changes before the next phrase start,
    so the box splices nothing into the bar playing."""
    return old.key != new.key and replace(old, key=new.key) == new


class Button(enum.Enum):
    """What the listener asks of the box with a button, a key, the web remote, a knob script or a signal:
    the one set of actions every surface and the box share (their config and script names are the
    values)."""

    PLAY_PAUSE = "play_pause"
    NEXT = "next"  # new noise from the next beat line: the music goes on, differently
    SAVE = "save"
    SHUTDOWN = "shutdown"  # a long press on play_pause, SIGTERM, Ctrl-C: the box stops
    VOLUME_UP = "volume_up"
    VOLUME_DOWN = "volume_down"
    KEEP = "keep"  # the section playing becomes the theme that returns
    NEW = "new"  # a new tune from the next bar line
    SLEEP = "sleep"  # the sleep timer: [sleep] minutes from now, or off when one runs
    PRESET = "preset"  # the next preset saved on the web remote's page (play.py steps through them)
