"""Bar-by-bar music: sample a bar's latent, decode it, re-encode what will be played as the next context.

One bar (``Generator.next_bar(controls)``):

1. noise ``x [1, F, D]`` drawn from ``numpy.random.default_rng((seed, index))``: the noise of a bar
   depends only on the seed and the bar's index, so the "rng state" is just ``(seed, index)`` and any
   saved state reproduces the same continuation exactly;
2. the manifest's sampler (``sampling.SAMPLERS[kind]`` over ``get_sigmas_flow(steps, shift)``) integrates
   from noise to a latent; each step is one denoiser call of the conditional row and, for guidance
   (``sampling.cfg_velocity``), the unconditional row when ``guidance != 1`` and the contrast-meter row
   (the same conditions, ``meter`` set to ``conditioning.contrast_meter``: ``sampler.meter_contrast``'s
   meter, else unknown) when the bar's meter has a ``meter_guidance`` other than 1, and the
   contrast-style row (the style set to ``sampler.style_contrast``'s for the leading style) when the
   meter has a ``style_guidance`` other than 1 and that style a contrast (a distilled denoiser,
   ``sampler.folded``, gives the guided velocity in its one conditional row: no guidance rows);
   the context is the latents of the bars ``context_lags`` back (e.g. 8, 4, 2 and 1
   bars: a strain, a phrase and the two bars before; ``context_mask`` 0 for bars before the first, as
   in training) and ``place`` the bar's position in its section (one-hot, from the form planner);
3. decode to note probabilities and threshold to a roll (``pianoroll.planes_to_roll``);
   a key-normalized model (``representation.tonic`` set: it writes in C) has its roll transposed by the
   generator's ``key`` (semitones, -5..+6, chosen from the seed unless given) into what is played;
   the key control (``controls.key``, a tonic) moves it at the next phrase start (the register and the
   MIDI follow: what is transposed is what is played);
4. **re-encode the roll** with the encoder and use *that* latent as context for the next bar, not the
   sampled one. The listener hears the thresholded roll, so the model continues from what was actually
   played (what the training data's context is: encoded real bars, in the model's key), and errors of the sampled latent that
   the threshold removed do not accumulate from bar to bar. It costs one small encoder call per bar.

5. **form** (``runtime/form.py``): before each bar the planner places it in its tune (section,
   phrase, bar) from the style's :class:`~musicbox.runtime.form.FormSpec`; a bar whose section letter
   has played before starts from its stored latent re-noised to ``controls.variation`` instead of pure
   noise; a phrase's last bar asks for fewer notes; a style turn drops the old style's context;
6. **meter** (``runtime/meter.py``): ``controls.meter`` or, when it is "", the style's first meter is
   the denoiser's ``meter`` input; a 3/4 or 6/8 bar is the first 12 steps of the model's 16-step row
   (the rest is silenced before voicing and re-encoding, and left out of the bar played);
7. **one line of melody**: the melody track is decoded as one voice (at each step only its most
   probable pitch may sound), as the flute or fiddle that plays it can; then **voice-leading**
   (``runtime/voicing.py``) re-spells notes that move in parallel fifths/octaves with another line or
   clash unprepared by a semitone on a beat (the model's likeliest mending pitch, the nearest among equals).

State. ``get_state()`` / ``set_state(state)`` move a :class:`~musicbox.runtime.state.GeneratorState`
(numpy only, picklable as itself) between processes: the box's supervisor keeps the state after every
buffered bar and rewrites from the one before the first unplayed bar when a knob turns, and a restarted
worker continues from it. ``reseed(seed)`` changes the noise of the bars from now on while keeping the
context (the music goes on, differently).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from musicbox.errors import ConfigError, MusicBoxError
from musicbox.runtime.bundle import Bundle
from musicbox.runtime.conditioning import conditioning_feeds, leading_style
from musicbox.runtime.controls import TONICS, Controls, nearest_style
from musicbox.runtime.form import FormPlace, FormSpec, plan, return_sigmas, store, theme_mode
from musicbox.runtime.meter import COMMON, METERS, Meter, crop
from musicbox.runtime.performance import Phrasing
from musicbox.runtime.pianoroll import (
    KEY_SHIFTS,
    Note,
    change_mode,
    planes_to_roll,
    random_key_shift,
    roll_to_notes,
    roll_to_planes,
    transpose,
)
from musicbox.runtime.sampling import SAMPLERS, cfg_velocity, get_sigmas_flow
from musicbox.runtime.state import HOME, GeneratorState
from musicbox.runtime.voicing import tail_of, voice

MONOPHONIC = ("melody",)
"""Tracks decoded as one line: at most one pitch sounds at a time."""


@dataclass(frozen=True)
class Bar:
    """One generated bar.

    index: bar number since the start (0-based). roll: uint8 ``[1, 3, S, 64]`` (OFF/HELD/ONSET), S the
    meter's steps (16 or 12). notes: the roll's notes, ``start`` in grid steps from the bar line (a note
    tied over from the previous bar starts at 0 as ``HELD``). controls: the knobs it was written for.
    gen_seconds: wall time to write it. meter: the meter it is in. turn: ``(step, controls before)``
    when a knob turned at that beat line inside the bar (its first steps were played with those).
    phrase: where the form put it (its bar in its phrase, what its phrase closes), for the performance
    (``runtime/performance.py``; None: played as written).
    """

    index: int
    roll: np.ndarray
    notes: list[Note]
    controls: Controls
    gen_seconds: float
    meter: Meter = COMMON
    turn: tuple[int, Controls] | None = None
    phrase: Phrasing | None = None

    @property
    def seconds(self) -> float:
        """The bar's duration at its tempo."""
        return self.controls.bar_seconds(self.meter.steps)


@dataclass(frozen=True)
class Hold:
    """What a knob turn inside a bar keeps of the bar as it was written: everything before grid step
    ``step`` (a beat line). latent float32 ``[F, D]``: the bar's re-encoded latent (the state after it,
    ``context[-1]``); roll uint8 ``[T, 16, P]``: the bar in the model's key (``GeneratorState.roll``)."""

    latent: np.ndarray
    roll: np.ndarray
    step: int

    @classmethod
    def of(cls, played: GeneratorState, step: int) -> Hold:
        """Keep the first ``step`` steps of the bar ``played`` (the state after it) was written with."""
        if played.roll is None:
            raise MusicBoxError("a state without its bar's roll cannot hold a bar (it was made before it)")
        return cls(played.context[-1], played.roll, step)


def seed_key(seed: int) -> int:
    """The key a seed plays in: semitones in ``pianoroll.KEY_SHIFTS`` (-5..+6) above the model's tonic."""
    return random_key_shift(np.random.default_rng([seed, 12]))


def key_shift(key: str, model_tonic: int) -> int:
    """The shift in ``pianoroll.KEY_SHIFTS`` (-5..+6) that moves a model writing in ``model_tonic`` (its
    ``representation.tonic``, a pitch class) to the tonic ``key`` (a name of ``controls.TONICS``)."""
    low = KEY_SHIFTS[0]
    return (TONICS.index(key) - model_tonic - low) % 12 + low


class Generator:
    """Writes bars one after the other from an opened :class:`~musicbox.runtime.bundle.Bundle`."""

    def __init__(self, bundle: Bundle, seed: int = 0, key: int | None = None, voicing: bool = True):
        """``key``: semitones to transpose a key-normalized model's music by (default: from the seed);
        a model that writes in any key (``representation.tonic`` null) is never transposed.
        ``voicing``: re-spell voice-leading faults (``runtime/voicing.py``); off, the model's bars as
        decoded (what the eval compares the pass against)."""
        self.bundle = bundle
        self.voicing = voicing
        self.manifest = bundle.manifest
        rep, sampler = self.manifest.representation, self.manifest.sampler
        self._latent_shape = (rep.latent_frames, rep.latent_dim)
        self._sample = SAMPLERS[sampler.kind]
        self._sigmas = get_sigmas_flow(sampler.steps, sampler.shift)
        self._forms = tuple(style.form for style in self.manifest.controls.styles)
        self._monophonic = tuple(i for i, name in enumerate(rep.tracks) if name in MONOPHONIC)
        self._rep = rep.pianoroll()
        self._history = max(rep.context_lags, default=0)
        self._slots = np.array([self._history - lag for lag in rep.context_lags], np.int64)
        self._places = np.eye(rep.positions, dtype=np.float32)
        self._state = self.fresh_state(seed, key)

    # -- state ----------------------------------------------------------------------------------------

    @property
    def index(self) -> int:
        """The index of the next bar :meth:`next_bar` will write."""
        return self._state.index

    def get_state(self) -> GeneratorState:
        return self._state

    def fresh_state(self, seed: int, key: int | None = None) -> GeneratorState:
        """The state before bar 0 of a new piece with ``seed`` (``key`` None: the seed's key)."""
        rep = self.manifest.representation
        if rep.tonic is None:
            key = 0
        key = seed_key(seed) if key is None else key
        return GeneratorState.fresh(seed, key, self._history, self._latent_shape)

    def set_state(self, state: GeneratorState) -> None:
        """Continue from ``state`` (from :meth:`get_state`, possibly of another process)."""
        k = self._history
        shapes = (state.context.shape, state.context_mask.shape, state.themes.shape[2:])
        if shapes != ((k, *self._latent_shape), (k,), self._latent_shape):
            raise MusicBoxError(
                f"generator state has context {state.context.shape}, this bundle needs "
                f"{(k, *self._latent_shape)}: it was saved with another bundle; start afresh"
            )
        self._state = state

    def reseed(self, seed: int) -> None:
        """Use ``seed`` for the noise of the next bars; the context (the music so far) is kept."""
        self._state = self._state.reseeded(seed)

    def form(self, controls: Controls) -> FormSpec:
        """The form of the style ``controls`` are nearest to."""
        return self._forms[self._style(controls)]

    def meter(self, controls: Controls) -> Meter:
        """The meter ``controls`` ask for: theirs, or the first of the nearest style's meters; a
        ConfigError if the bundle's model does not play it."""
        styles = self.manifest.controls.styles
        name = controls.meter or styles[self._style(controls)].meters[0]
        known = self.manifest.representation.meters
        if name not in known:
            raise ConfigError(f"meter {name!r}: this bundle's model plays {', '.join(known)}")
        return METERS[name]

    def _style(self, controls: Controls) -> int:
        return nearest_style(controls.style, len(self._forms))

    # -- one bar --------------------------------------------------------------------------------------

    def next_bar(self, controls: Controls, hold: Hold | None = None) -> Bar:
        """Write the next bar for ``controls`` and advance. ``hold``: a bar being played when a knob
        turned: its steps before ``hold.step`` are kept (their latent frames clamped while sampling,
        RePaint-style, so the rest continues them) and the rest is written for ``controls``."""
        start = time.perf_counter()
        meter = self.meter(controls)
        column = self.manifest.representation.meters.index(meter.name)
        spec = self.form(controls)
        before = float(self._state.last[2])  # the mood the previous bar was written at (NaN: none)
        state, bar = plan(self._state, controls, spec, column)
        if before * controls.mood < 0.0 and not bar.fresh_context:
            state = self._context_in_mode(state, controls.mood > 0.0)
        spec = bar.form or spec  # the form its tune plays (a plan drawn from the style's)
        tonic = self.manifest.representation.tonic
        if controls.key and tonic is not None and bar.position % spec.phrase_bars == 0:
            asked = key_shift(controls.key, tonic)  # a key turn: at a phrase start, in the key asked
            if asked != state.key:  # (the tune's key journey gives way to it)
                state = replace(state, key=asked, shifts=HOME)
        written_from = (
            replace(state, context_mask=np.zeros_like(state.context_mask)) if bar.fresh_context else state
        )
        latent = self._sample_latent(controls, written_from, bar, meter, hold)
        probs = self.bundle.decode(latent)
        written = planes_to_roll(probs, self.manifest.sampler.threshold, self._monophonic)  # model's key
        written[..., meter.steps :, :] = 0  # a shorter bar's padding stays silent
        if self.voicing:
            written = voice(written, probs, state.tail, self._rep, meter)
        if hold is not None:
            written[0, :, : hold.step] = hold.roll[:, : hold.step]
        played = self.bundle.encode(roll_to_planes(written))  # [1, F, D]: the context of the next bar
        bar_roll = crop(written, meter)
        after = replace(written_from.advanced(played[0]), tail=tail_of(bar_roll), roll=written[0])
        self._state = store(after, bar, played[0], controls.mood)
        roll = transpose(bar_roll, state.sounding_key())
        notes = roll_to_notes(roll, self._rep)
        phrase = Phrasing.after(self._state, spec)
        return Bar(state.index, roll, notes, controls, time.perf_counter() - start, meter, phrase=phrase)

    def _sample_latent(
        self, controls: Controls, state: GeneratorState, bar: FormPlace, meter: Meter, hold: Hold | None
    ) -> np.ndarray:
        """Sampled latent ``[1, F, D]`` of bar ``state.index`` in ``meter``: from noise, or for a return
        from its theme (in the mode the mood knob asks for now) re-noised to the variation level; the
        frames ``hold`` keeps are clamped to it at every step (the known part of ``x_t`` is its noised
        latent on the same path, the known part of the estimate the latent itself)."""
        feeds = self._static_feeds(controls, state, bar, meter)
        scales = self.manifest.sampler.row_guidance(
            meter.name, leading_style(controls, self.manifest.controls)
        )
        batch = 1 + len(scales)
        rng = np.random.default_rng((state.seed, state.index))
        noise = rng.standard_normal((1, *self._latent_shape), dtype=np.float32)
        kept = 0 if hold is None else hold.step * self._latent_shape[0] // self._rep.steps_per_bar
        known = None if hold is None else hold.latent[None, :kept]

        def denoise(x: np.ndarray, sigma: float) -> np.ndarray:
            s = np.float32(sigma)
            if kept:
                x = x.copy()
                x[:, :kept] = (1 - s) * known + s * noise[:, :kept]
            feeds["x"] = np.repeat(x, batch, axis=0)
            feeds["sigma"] = np.full(batch, sigma, np.float32)
            v = self.bundle.run_denoiser(feeds)
            v = cfg_velocity(v[:1], [(v[i + 1 : i + 2], g) for i, g in enumerate(scales)])
            denoised = (x - s * v).astype(np.float32)
            if kept:
                denoised[:, :kept] = known
            return denoised

        if bar.source is None:
            return self._sample(denoise, noise * np.float32(self._sigmas[0]), self._sigmas)
        theme = self._theme(state, bar, controls.mood)
        sigmas = return_sigmas(self._sigmas, bar.noise)
        if not len(sigmas):
            return theme
        t = np.float32(sigmas[0])
        return self._sample(denoise, (1 - t) * theme + t * noise, sigmas)

    def _theme(self, state: GeneratorState, bar: FormPlace, mood: float) -> np.ndarray:
        """The theme bar ``bar`` returns, ``[1, F, D]``; written on the other side of the mood knob than it
        is now, it comes back in the other mode (its notes moved by scale degree at the model's tonic,
        as a composer brings a theme back in the minor) before it is re-noised."""
        theme = state.themes[bar.slot, bar.source][None]
        major = theme_mode(state, bar, mood)
        return theme if major is None else self._in_mode(theme, major)

    def _context_in_mode(self, state: GeneratorState, major: bool) -> GeneratorState:
        """``state`` with the bars the model hears as context moved to the other mode (as a theme returns
        in it, :meth:`_theme`): the mood knob crossed its middle, and a model that hears the old mode in
        every context bar goes on in it whatever the knob asks (the pieces it learned from keep their
        mode). The music already played stays as it was; what is written next starts from the new mode."""
        heard = np.flatnonzero(state.context_mask > 0)
        if not len(heard):
            return state
        context = state.context.copy()
        context[heard] = self._in_mode(state.context[heard], major)
        return replace(state, context=context)

    def _in_mode(self, latents: np.ndarray, major: bool) -> np.ndarray:
        """Bar latents ``[B, F, D]`` decoded, moved to the major (or minor) mode at the model's tonic
        (``pianoroll.change_mode``: notes moved by scale degree) and encoded again."""
        roll = planes_to_roll(self.bundle.decode(latents), self.manifest.sampler.threshold, self._monophonic)
        roll = change_mode(roll, major, self.manifest.representation.tonic or 0, self._rep)
        return self.bundle.encode(roll_to_planes(roll))

    def _static_feeds(self, controls: Controls, state: GeneratorState, bar: FormPlace, meter: Meter) -> dict:
        """The denoiser feeds that stay fixed over a bar's sampler steps (conditioning, context at the
        lags, place, meter): the conditional row and one per :meth:`SamplerInfo.row_guidance`; ``bar``:
        where the form planner put it (``runtime/form.py``), with its shaping."""
        feeds = conditioning_feeds(
            controls,
            self.manifest.controls,
            self.manifest.sampler,
            self.manifest.representation.meters,
            shaping=bar.shaping,
            meter=meter,
        )
        batch = len(feeds["style_w"])
        context = state.context[self._slots].reshape(1, -1, self._latent_shape[1])
        feeds["context"] = np.repeat(context, batch, axis=0)
        feeds["context_mask"] = np.repeat(state.context_mask[self._slots][None], batch, axis=0)
        place = self._places[bar.place % len(self._places)]
        feeds["place"] = np.repeat(place[None], batch, axis=0)
        return feeds
