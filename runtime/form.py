"""The form planner: which section, phrase and bar of a tune the next bar is, and whether it returns.

A tune is a sequence of sections (a style's :class:`FormSpec`: ``"AABB"`` in 8-bar strains for dance
tunes, bar form ``"AAB"`` for chorales, ...), a section a sequence of phrases (``"aa"``: the second
phrase of a strain begins like the first and ends differently, as a reel's does; ``"ab"``: two
different phrases). The first playing of each section letter is new music, and the re-encoded latent of
each of its bars is kept in the generator state's themes; when the letter comes back, each bar is a
*varied return*: the stored latent re-noised to the ``variation`` level t (``x_t = (1 - t) x0 + t
noise``, the rectified-flow path) and denoised again under the current context and knobs. A repeated
phrase letter returns the earlier phrase of its section the same way, all but its last bar, which is
written anew (its own cadence). ``variation`` 0 plays the theme back literally, 1 writes new music every
time. After the last section the next tune begins, with new themes.

A style's form may also hold ``plans``: concrete tune forms (sections, section and phrase lengths,
phrase letters) with their weights, counted from the corpus (``model/form_plans.py``). Each tune then
draws its form from them, from the generator's seed and the bar the tune starts at (the same seed plays
the same forms); the drawn plan's index is the state's ``form``. A style without plans plays its one
form, as before. The denoiser's ``place`` input counts bars in 8-bar sections, the grid it was trained
on (the dataset's ``place`` counts a piece's bars from its first full bar, whatever its sections):
:attr:`FormPlace.place` counts the tune's bars, so 4-bar sections take places 0-3 and 4-7 in turn.

A tune's key may move (``away``, ``moves``: counted from the corpus): a section letter other than A
may play, from its first playing and at its returns, with the tonic a fifth above or below the home key
(or wherever the style's pieces go), in the mode the mood knob asks for; A and the next tune are home.
The model writes in its own key as ever, and the bar is transposed (``GeneratorState.sounding_key``):
the knobs and the context stay in the model's terms, and a style turn starts the new tune at home.

The bar at each phrase's end is written asking for fewer notes (``cadence_density``): the melody holds
and breathes there. A knob turn starts a new phrase at the next bar line (the form skips ahead to the
next phrase start); a turn to another style or meter starts a new tune whose first bar is written
without the old one's context, so the new style is heard in full at once (and the old meter's bars,
which the model never saw before another meter's, do not hold it back). Phrases and sections count
bars of the meter playing. Two listener actions act on the state
between bars: :func:`keep` (the section playing becomes the tune's theme A, which returns) and
:func:`renew` (a new tune, new material, from the next bar). All functions are pure, numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import msgspec
import numpy as np

from musicbox.errors import ManifestError
from musicbox.runtime.controls import Controls, nearest_style
from musicbox.runtime.state import HOME, MAX_SECTION_BARS, THEME_SLOTS, GeneratorState

LITERAL = 1e-3
"""Below this variation a return is the stored theme itself (no re-noising)."""


class Shaping(NamedTuple):
    """What the form asks of one bar beyond the knobs: a factor on the requested note density (a
    cadence breathes), semitones added to the requested melody register (a section's contour), and
    whether the bar asks for a register at all. Only a phrase's first bar does; the others leave the
    register out and follow their context. Asked at every bar, the register pinned each bar's mean
    melody pitch: a folk tune at mood +1 and 70 BPM moved through 1.0 bits of pitch classes in 8 bars,
    against 2.4 in real folk songs (asked once a phrase: 1.5; ``docs/design.md``)."""

    density: float = 1.0
    register: float = 0.0
    asks_register: bool = True


PLAIN = Shaping()
"""No shaping: the knobs alone."""


class FormPlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One concrete tune form a style's tunes may take (a row of ``FormSpec.plans``): sections,
    section_bars, phrase_bars, phrases as in :class:`FormSpec`; weight: how often it is drawn, relative
    to the style's other plans (the share of the corpus's pieces it explains best)."""

    sections: str
    section_bars: int
    phrase_bars: int
    phrases: str = ""
    weight: float = 1.0


class KeyMove(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One key a tune's later section may move to (a row of ``FormSpec.moves``): semitones, the new
    tonic above the home one (1..11: 7 the dominant, 5 the subdominant); weight: how often it is drawn,
    relative to the style's other moves."""

    semitones: int
    weight: float = 1.0


class FormSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One style's form (a manifest table, ``$.controls.styles[i].form``, read strictly like the others in
    ``runtime/manifest.py``). sections: letters A.. in playing order, a repeated letter returns;
    section_bars: bars per section; phrase_bars: bars per phrase (divides section_bars); phrases: one
    letter a.. per phrase of a section, a repeated letter returns that phrase but for its last bar
    ("" = all different); cadence_density: factor on the requested note density at each phrase's
    last bar; return_noise: the noise level of a return per unit of variation (a style whose repeats
    are near-literal, a chorale's Stollen, returns closer at the same knob setting); register:
    semitones added to the requested melody register in sections A, B, C, D (a tune's contour: a
    reel's second strain lies higher); plans: the tune forms each tune draws one of (:class:`FormPlan`,
    empty: every tune plays sections, section_bars, phrase_bars and phrases); away: the chance that a
    section letter other than A moves to another key at its first playing (its returns play there too;
    A, and the next tune, are home); moves: the keys it moves to (:class:`KeyMove`), in the mode the mood
    knob asks for, so a journey never overrules the listener's mood."""

    sections: str = "AABB"
    section_bars: int = 8
    phrase_bars: int = 4
    phrases: str = ""
    cadence_density: float = 0.6
    return_noise: float = 1.0
    register: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    plans: tuple[FormPlan, ...] = ()
    away: float = 0.0
    moves: tuple[KeyMove, ...] = ()

    def noise_level(self, variation: float) -> float:
        """The level a returning bar is re-noised to for ``variation`` (0..1): 1 at variation 1."""
        return 1.0 if variation >= 1.0 else min(1.0, variation * self.return_noise)

    def __post_init__(self) -> None:
        letters = "ABCD"[:THEME_SLOTS]
        problems = []
        if not self.sections.startswith("A") or any(c not in letters for c in self.sections):
            problems.append(f"sections {self.sections!r} must start with A and use the letters {letters}")
        if not 1 <= self.section_bars <= MAX_SECTION_BARS:
            problems.append(f"section_bars {self.section_bars} must be 1..{MAX_SECTION_BARS}")
        if self.phrase_bars < 1 or self.section_bars % self.phrase_bars:
            problems.append(f"phrase_bars {self.phrase_bars} must divide section_bars {self.section_bars}")
        n_phrases = self.section_bars // max(1, self.phrase_bars)
        if self.phrases and (len(self.phrases) != n_phrases or not self.phrases.startswith("a")):
            problems.append(f"phrases {self.phrases!r} must be {n_phrases} letters a.. starting with a")
        if not 0.0 < self.return_noise <= 2.0:
            problems.append(f"return_noise {self.return_noise} must be in (0, 2]")
        if len(self.register) != THEME_SLOTS or any(abs(r) > 12 for r in self.register):
            problems.append(
                f"register {list(self.register)} must be {THEME_SLOTS} offsets within +-12 semitones"
            )
        if not 0.0 < self.cadence_density <= 1.0:
            problems.append(f"cadence_density {self.cadence_density} must be in (0, 1]")
        if not 0.0 <= self.away <= 1.0 or (self.away > 0.0 and not self.moves):
            problems.append(f"away {self.away} must be in [0, 1], and above 0 only with moves")
        for i, m in enumerate(self.moves):
            if not 1 <= m.semitones <= 11 or not m.weight > 0.0:
                problems.append(f"moves[{i}] must move 1..11 semitones with a weight > 0")
        for i, p in enumerate(self.plans):
            if not p.weight > 0.0:
                problems.append(f"plans[{i}].weight {p.weight} must be > 0")
            try:
                FormSpec(p.sections, p.section_bars, p.phrase_bars, p.phrases)
            except ManifestError as exc:
                problems.append(f"plans[{i}]: " + str(exc).removeprefix("form: "))
        if problems:
            raise ManifestError("form: " + "; ".join(problems))

    def phrase_source(self, position: int) -> int | None:
        """The earlier bar of its section that bar ``position`` returns at the phrase level, or None."""
        phrase, bar = divmod(position, self.phrase_bars)
        if not self.phrases or bar == self.phrase_bars - 1:
            return None
        first = self.phrases.index(self.phrases[phrase])
        return first * self.phrase_bars + bar if first < phrase else None

    def plan(self, choice: int) -> FormSpec:
        """The form a tune plays when it drew plan ``choice`` (-1, or a style without plans: itself)."""
        return _drawn_form(self, choice) if self.plans and choice >= 0 else self

    def draw(self, seed: int, index: int) -> int:
        """The plan a tune starting at bar ``index`` of the piece of ``seed`` plays (-1 without plans)."""
        if not self.plans:
            return -1
        rng = np.random.default_rng((int(seed), int(index), FORM_STREAM))
        return _weighted(rng, [p.weight for p in self.plans])

    def key_move(self, seed: int, index: int, slot: int) -> int:
        """Semitones (0: home) the section letter ``slot`` moves the tune's key by when its first
        playing starts at bar ``index`` of the piece of ``seed`` (A, slot 0, stays home)."""
        if slot == 0 or not self.moves:
            return 0
        rng = np.random.default_rng((int(seed), int(index), KEY_STREAM))
        if rng.random() >= self.away:
            return 0
        return self.moves[_weighted(rng, [m.weight for m in self.moves])].semitones


def _weighted(rng: np.random.Generator, weights: list[float]) -> int:
    """An index drawn from ``rng`` with the chances ``weights`` (relative)."""
    w = np.array(weights, np.float64)
    return int(rng.choice(len(w), p=w / w.sum()))


FORM_STREAM = 0x464F524D
"""Mixed into a form draw's seed, so it shares no stream with the bar's noise (``(seed, index)``)."""
KEY_STREAM = 0x4B4559
"""Mixed into a key move's draw (the same seed moves the same sections)."""


@lru_cache(maxsize=256)
def _drawn_form(spec: FormSpec, choice: int) -> FormSpec:
    p = spec.plans[choice]
    return msgspec.structs.replace(
        spec,
        sections=p.sections,
        section_bars=p.section_bars,
        phrase_bars=p.phrase_bars,
        phrases=p.phrases,
        plans=(),
    )


PLACES = 8
"""Bars of the section grid the denoiser's ``place`` input counts (``representation.positions``)."""


@dataclass(frozen=True)
class FormPlace:
    """What the next bar is. position: bar within its section; slot: the theme slot of its letter;
    source: the bar of the slot it returns (a varied return of it), None for new music; fresh_context:
    write it without the previous bars (a style or meter turn); phrase_end: the last bar of a phrase (cadence);
    shaping: its density factor and register offset; noise: the level a return is re-noised to;
    form: the form of its tune (the style's, or the plan its tune drew); place: the bar's place in the
    8-bar grid the denoiser's ``place`` input counts (bars since the tune began, modulo the grid; its
    position when sections are 8 or 16 bars)."""

    position: int
    letter: str
    slot: int
    source: int | None
    fresh_context: bool
    phrase_end: bool
    shaping: Shaping = PLAIN
    noise: float = 1.0
    form: FormSpec | None = None
    place: int = 0


def _knobs(controls: Controls) -> np.ndarray:
    return np.array([controls.style, controls.tempo_bpm, controls.mood, controls.variation], np.float32)


def _new_tune(state: GeneratorState, style: int, meter: int) -> GeneratorState:
    return replace(
        state,
        section=0,
        section_start=state.index,
        style=style,
        meter=meter,
        themes=np.zeros_like(state.themes),
        themes_mask=np.zeros_like(state.themes_mask),
        themes_mood=None if state.themes_mood is None else np.zeros_like(state.themes_mood),
        form=-1,
        shifts=HOME,
    )


def _tune_form(state: GeneratorState, spec: FormSpec) -> tuple[GeneratorState, FormSpec]:
    """The state (a new tune's plan drawn, if its style has plans and it has none yet) and its tune's form."""
    if spec.plans and not 0 <= state.form < len(spec.plans):
        state = replace(state, form=spec.draw(state.seed, state.index))
    return state, spec.plan(state.form)


def plan(
    state: GeneratorState, controls: Controls, spec: FormSpec, meter: int = 0
) -> tuple[GeneratorState, FormPlace]:
    """The state to write bar ``state.index`` from (form fields moved on) and what that bar is; ``meter``:
    the bar's meter (an index into the bundle's meters)."""
    style = nearest_style(controls.style)
    turned = state.style != style or state.meter != meter
    if turned:
        state = _new_tune(state, style, meter)
    styled = spec
    state, spec = _tune_form(state, styled)
    position = state.index - state.section_start
    knobs = _knobs(controls)
    changed = bool(np.isfinite(state.last).all() and np.abs(knobs[:3] - state.last[:3]).max() > 1e-3)
    if changed and position % spec.phrase_bars:
        skip = spec.phrase_bars - position % spec.phrase_bars  # start the next phrase now
        state = replace(state, section_start=state.section_start - skip)
        position += skip
    if position >= spec.section_bars:
        state = replace(state, section=state.section + 1, section_start=state.index)
        position = 0
        if state.section >= len(spec.sections):
            state = _new_tune(state, style, meter)
            state, spec = _tune_form(state, styled)
    letter = spec.sections[state.section]
    slot = ord(letter) - ord("A")
    if position == 0 and not state.themes_mask[slot].any():  # a letter's first playing: its key
        shifts = list(state.shifts)
        shifts[slot] = spec.key_move(state.seed, state.index, slot)
        state = replace(state, shifts=tuple(shifts))
    source = position if state.themes_mask[slot, position] else spec.phrase_source(position)
    if source is not None and (not state.themes_mask[slot, source] or controls.variation >= 1.0):
        source = None
    state = replace(state, last=knobs, slot=slot)
    phrase_end = position % spec.phrase_bars == spec.phrase_bars - 1
    bar = FormPlace(
        position=position,
        letter=letter,
        slot=slot,
        source=source,
        fresh_context=turned and state.index > 0,
        phrase_end=phrase_end,
        shaping=Shaping(
            spec.cadence_density if phrase_end else 1.0,
            spec.register[slot],
            asks_register=position % spec.phrase_bars == 0,
        ),
        noise=spec.noise_level(controls.variation),
        form=spec,
        place=(state.section * spec.section_bars + position) % PLACES,
    )
    return state, bar


def store(state: GeneratorState, bar: FormPlace, played: np.ndarray, mood: float = 0.0) -> GeneratorState:
    """Keep ``played [F, D]``, written at ``mood``, as the theme of ``bar``'s place unless one is kept
    there already (the first playing of a section stays its theme)."""
    if state.themes_mask[bar.slot, bar.position]:
        return state
    themes, mask = state.themes.copy(), state.themes_mask.copy()
    moods = np.zeros_like(mask) if state.themes_mood is None else state.themes_mood.copy()
    themes[bar.slot, bar.position] = played
    mask[bar.slot, bar.position] = 1.0
    moods[bar.slot, bar.position] = mood
    return replace(state, themes=themes, themes_mask=mask, themes_mood=moods)


def theme_mode(state: GeneratorState, bar: FormPlace, mood: float) -> bool | None:
    """Whether the theme bar that ``bar`` returns must change mode for the mood knob now: True to major,
    False to minor, None to stay (it was written on the same side of the knob's middle, or at it)."""
    if bar.source is None or state.themes_mood is None:
        return None
    then = float(state.themes_mood[bar.slot, bar.source])
    if then * mood >= 0.0:
        return None
    return mood > 0.0


def return_sigmas(sigmas: np.ndarray, variation: float) -> np.ndarray:
    """The sampler's noise levels for a return re-noised to ``variation``: ``variation`` then the levels
    below it (empty for a literal return)."""
    if variation < LITERAL:
        return sigmas[:0]
    return np.concatenate([[np.float32(variation)], sigmas[sigmas < variation]]).astype(np.float32)


def keep(state: GeneratorState) -> GeneratorState:
    """The section playing becomes theme A of a tune that continues from it (A returns next)."""
    themes = np.zeros_like(state.themes)
    mask = np.zeros_like(state.themes_mask)
    themes[0], mask[0] = state.themes[state.slot], state.themes_mask[state.slot]
    shifts = (state.shifts[state.slot], *HOME[1:])  # it plays on in its key
    moods = None
    if state.themes_mood is not None:
        moods = np.zeros_like(state.themes_mood)
        moods[0] = state.themes_mood[state.slot]
    return replace(
        state, section=0, slot=0, themes=themes, themes_mask=mask, themes_mood=moods, shifts=shifts
    )


def renew(state: GeneratorState) -> GeneratorState:
    """A new tune from the next bar: new sections, new themes, the context (the music so far) kept."""
    return _new_tune(state, state.style, state.meter)
