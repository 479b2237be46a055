"""The performance layer: how the box *plays* what it writes, phrased from the form.

The arranger (``runtime/arrangement.py``) turns a bar of notes into :class:`~arrangement.Played` notes
with the style's instruments, metric accents and a little humanization. This module then shapes them the
way a player shapes a phrase, after the KTH rule system for music performance (Friberg, Bresin and
Sundberg, "Overview of the KTH rule system for musical performance", 2006), from where the form planner
put the bar (:class:`Phrasing`: its bar within its phrase, and whether the phrase closes a section or
the tune):

- **phrase arch**: the dynamics rise over a phrase to a peak (at ``arch_peak`` of its length) and fall
  to its end, on every part (drums half as much);
- **ritardando**: the last bar of a phrase is played a little slower (``phrase_rit``); into the end of
  a section over its last ``rit_bars`` bars, more (``section_rit``), and most into the end of the tune
  (``tune_rit``);
- **fermata**: a phrase's last bar held longer still (``fermata``: a chorale's);
- **breath** (punctuation): at a cadence the notes reaching the bar line stop ``breath`` steps before
  it, a short silence before the next phrase;
- **duration contrast** (melody): a short note a little softer and shorter, a long one a little louder;
- **high-loud** (melody): a note above the bar's melodic centre louder, below it softer.

Every deviation is a weight of :class:`Rules` times the overall ``expression`` (0..1, the config's
``[synth] expression``): at 0 nothing is touched, so the box plays bit for bit as it did before this
layer. Rules are per style (:data:`STYLE_RULES`, keyed by the manifest's style name; a style not named
there plays :data:`DEFAULT_RULES`); the style that leads the knob's blend phrases the bar.

Time is bent **bar by bar**: a bar's ``stretch`` (>= 1) lengthens the whole bar, so its grid steps and
beat lines stay evenly spaced within it (the box's player switches to a knob turn's re-rendered rest of
the bar at a beat line assuming even spacing; a tempo turn is a new ``tempo_bpm`` that the bar's stretch
multiplies, so the ritardando bends around the knob). The renderer's frame arithmetic stays exact: the
stretched bar's length goes through the same carried rounding as every bar's.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # arrangement imports this module
    from musicbox.runtime.arrangement import Played
    from musicbox.runtime.form import FormSpec
    from musicbox.runtime.state import GeneratorState

MELODY = 0
"""The melody's MIDI channel (the arranger's track 0)."""

DRUMS = 9
"""The drums' MIDI channel (``arrangement.DRUM_CHANNEL``)."""

ENDS = ("phrase", "section", "tune")
"""What the end of a phrase closes: only itself, its section, or the whole tune."""


class Phrasing(NamedTuple):
    """Where a bar lies in its tune, as the performance needs it.

    bar: the bar within its phrase, 0 .. bars - 1. bars: bars per phrase. ends: what the end of the
    bar's phrase closes (one of :data:`ENDS`)."""

    bar: int
    bars: int
    ends: str = "phrase"

    @property
    def cadence(self) -> bool:
        """The bar is its phrase's last (a cadence)."""
        return self.bar == self.bars - 1

    @classmethod
    def after(cls, state: GeneratorState, spec: FormSpec) -> Phrasing:
        """The phrasing of the bar the generator state ``state`` follows (``state.index - 1``, written in
        the form ``spec``: the state's section and section start are that bar's)."""
        position = state.index - 1 - state.section_start
        phrase, bar = divmod(position, spec.phrase_bars)
        ends = "phrase"
        if phrase == spec.section_bars // spec.phrase_bars - 1:
            ends = "tune" if state.section >= len(spec.sections) - 1 else "section"
        return cls(bar, spec.phrase_bars, ends)


class Rules(NamedTuple):
    """The weights of the performance rules, at expression 1 (module doc).

    arch: velocity swing of the phrase arch, a fraction each way (0.14: -14 % at a phrase's ends,
    +14 % at its peak). arch_peak: where in the phrase the arch peaks, 0..1. phrase_rit / section_rit /
    tune_rit: how much longer the last bar of a phrase / of a section / of the tune lasts (0.05: 5 %
    slower). rit_bars: bars a section's or tune's ritardando spreads over (the earlier ones less).
    fermata: how much longer still a phrase's last bar lasts. breath: steps of silence before the next
    phrase at a cadence. contrast: velocity fraction of duration contrast (a 16th softer, a half note
    louder by this much; a short note as much shorter). high_loud: velocity fraction per octave above the
    bar's melodic centre."""

    arch: float = 0.14
    arch_peak: float = 0.6
    phrase_rit: float = 0.05
    section_rit: float = 0.12
    tune_rit: float = 0.3
    rit_bars: int = 2
    fermata: float = 0.0
    breath: float = 0.5
    contrast: float = 0.1
    high_loud: float = 0.08


DEFAULT_RULES = Rules()
"""A style not named in :data:`STYLE_RULES` plays these."""

STYLE_RULES: dict[str, Rules] = {
    # a chorale breathes at every line: a fermata on each phrase's last chord, a long breath after it
    "chorale": Rules(arch=0.12, phrase_rit=0.08, section_rit=0.15, fermata=0.35, breath=1.0),
    # vocal polyphony: long arches, a gentle hold at each cadence
    "renaissance": Rules(arch=0.16, fermata=0.1, breath=0.75),
    "quartet": Rules(arch=0.18, phrase_rit=0.06, section_rit=0.14),
    # dance music keeps its time inside a tune and slows only into its end
    "folk": Rules(arch=0.1, phrase_rit=0.0, section_rit=0.04, tune_rit=0.2, breath=0.25),
    "celtic": Rules(arch=0.08, phrase_rit=0.0, section_rit=0.03, tune_rit=0.15, breath=0.25, contrast=0.06),
}
"""Each shipped style's rules, by its manifest name (``StyleInfo.name``)."""


def rules_for(style: str) -> Rules:
    """The rules of the style named ``style`` (:data:`DEFAULT_RULES` for one not in :data:`STYLE_RULES`)."""
    return STYLE_RULES.get(style, DEFAULT_RULES)


def stretch(phrase: Phrasing, rules: Rules, expression: float) -> float:
    """How much longer than written the bar at ``phrase`` lasts (1.0 exactly at expression 0): the
    ritardando into its phrase's end (spread over ``rit_bars`` into a section's or the tune's end,
    the earlier bars less: quadratically) and a fermata on the phrase's last bar."""
    if expression <= 0.0:
        return 1.0
    left = phrase.bars - 1 - phrase.bar  # bars after this one in its phrase
    if phrase.ends == "phrase":
        span, rit = 1, rules.phrase_rit
    else:
        span = max(1, min(rules.rit_bars, phrase.bars))
        rit = rules.section_rit if phrase.ends == "section" else rules.tune_rit
    amount = rit * ((span - left) / span) ** 2 if left < span else 0.0
    if left == 0:
        amount += rules.fermata
    return 1.0 + expression * amount


def arch(x: float, peak: float) -> float:
    """The phrase arch at ``x`` (0..1 through the phrase): 0 at both ends, 1 at ``peak``; a half sine
    whose time is bent so that its top falls at ``peak``."""
    x = min(max(x, 0.0), 1.0)
    return math.sin(math.pi * x ** (math.log(0.5) / math.log(peak)))


def perform(
    notes: list[Played], phrase: Phrasing, rules: Rules, expression: float, steps: int
) -> tuple[list[Played], float]:
    """Shape one arranged bar of ``steps`` steps at ``phrase``: (its notes, sorted by onset, and its
    stretch). At ``expression`` 0 the notes come back untouched and the stretch is 1.0."""
    if expression <= 0.0:
        return notes, 1.0
    e = expression
    keys = [n.key for n in notes if n.channel == MELODY]
    centre = float(np.mean(keys)) if keys else 0.0
    cut = steps - e * rules.breath  # a cadence's breath: notes reaching the bar line end here
    out = []
    for n in notes:
        x = (phrase.bar + min(n.on, steps) / steps) / phrase.bars
        swell = 2.0 * arch(x, rules.arch_peak) - 1.0  # -1 at the phrase's ends .. +1 at its peak
        gain = 1.0 + e * rules.arch * swell * (0.5 if n.channel == DRUMS else 1.0)
        off = n.off
        if n.channel == MELODY:
            gain *= 1.0 + e * rules.high_loud * (n.key - centre) / 12.0
            length = n.off - n.on
            contrast = min(max(math.log2(max(length, 0.125) / 2.0) / 2.0, -1.0), 1.0)
            gain *= 1.0 + e * rules.contrast * contrast
            if contrast < 0.0:
                off = n.on + length * (1.0 + e * rules.contrast * contrast)
        if phrase.cadence and n.channel != DRUMS and off > cut:
            off = max(cut, n.on + 0.25)
        velocity = int(min(max(round(n.velocity * gain), 1), 127))
        out.append(n._replace(off=off, velocity=velocity))
    out.sort(key=lambda p: p.on)
    return out, stretch(phrase, rules, e)
