"""Bar-by-bar music: sample a bar's latent, decode it, re-encode what will be played as the next context.

One bar (``Generator.next_bar(controls)``):

1. noise ``x [1, F, D]`` drawn from ``numpy.random.default_rng((seed, index))``: the noise of a bar
   depends only on the seed and the bar's index, so the "rng state" is just ``(seed, index)`` and any
   saved state reproduces the same continuation exactly;
2. the manifest's sampler (``sampling.SAMPLERS[kind]`` over ``get_sigmas_flow(steps, shift)``) integrates
   from noise to a latent; each step is one denoiser call, with classifier-free guidance as a batch of 2
   (conditional row, unconditional row, mixed by ``sampling.cfg_velocity``), or a batch of 1 when
   ``guidance == 1``; the context is the latents of the previous ``context_bars`` bars (slot ``K-1`` =
   the bar just before, slot 0 = the oldest; ``context_mask`` 0 for slots before the first bar, as in
   training);
3. decode to note probabilities and threshold to a roll (``pianoroll.planes_to_roll``);
   a key-normalized model (``representation.tonic`` set: it writes in C) has its roll transposed by the
   generator's ``key`` (semitones, -5..+6, chosen from the seed unless given) into what is played;
4. **re-encode the roll** with the encoder and use *that* latent as context for the next bar, not the
   sampled one. The listener hears the thresholded roll, so the model continues from what was actually
   played (what the training data's context is: encoded real bars, in the model's key), and errors of the sampled latent that
   the threshold removed do not accumulate from bar to bar. It costs one small encoder call per bar.

Knob changes and regeneration. The box buffers a few bars ahead; when a knob turns it discards the bars
not yet playing and writes them again with the new controls. The generator keeps the state *before* each
of its last ``history`` bars, so that is one call::

    gen.rewind(first_unplayed_index)   # the next bar written is that index again, same context
    bar = gen.next_bar(new_controls)

``get_state()`` / ``set_state(state)`` move a :class:`GeneratorState` (picklable: index, seed, context
latents and mask) to a restarted worker so the music continues where it was; ``reseed(seed)`` changes the
noise of the bars from now on while keeping the context (the music goes on, differently).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from musicbox.errors import MusicBoxError
from musicbox.runtime.bundle import Bundle
from musicbox.runtime.conditioning import conditioning_feeds
from musicbox.runtime.controls import Controls
from musicbox.runtime.pianoroll import (
    Note,
    planes_to_roll,
    random_key_shift,
    roll_to_notes,
    roll_to_planes,
    transpose,
)
from musicbox.runtime.sampling import SAMPLERS, cfg_velocity, get_sigmas_flow

HISTORY = 64
"""Bars whose starting state is kept for :meth:`Generator.rewind` (a few KB each)."""


@dataclass(frozen=True)
class Bar:
    """One generated bar.

    index: bar number since the start (0-based). roll: uint8 ``[1, 3, 16, 64]`` (OFF/HELD/ONSET).
    notes: the roll's notes, ``start`` in grid steps from the bar line (a note tied over from the previous
    bar starts at 0 as ``HELD``). controls: the knobs it was written for. gen_seconds: wall time to write it.
    """

    index: int
    roll: np.ndarray
    notes: list[Note]
    controls: Controls
    gen_seconds: float


@dataclass(frozen=True)
class GeneratorState:
    """Everything needed to continue: the next bar's ``index``, the noise ``seed``, the ``context``
    latents float32 ``[K, F, D]`` of the previous K bars (oldest first), ``context_mask`` float32
    ``[K]`` (1 where that bar exists) and ``key``, the semitones by which the model's bars are
    transposed into what is played."""

    index: int
    seed: int
    context: np.ndarray
    context_mask: np.ndarray
    key: int = 0


def seed_key(seed: int) -> int:
    """The key a seed plays in: semitones in ``pianoroll.KEY_SHIFTS`` (-5..+6) above the model's tonic."""
    return random_key_shift(np.random.default_rng([seed, 12]))


class Generator:
    """Writes bars one after the other from an opened :class:`~musicbox.runtime.bundle.Bundle`."""

    def __init__(
        self,
        bundle: Bundle,
        seed: int = 0,
        history: int = HISTORY,
        key: int | None = None,
    ):
        """``key``: semitones to transpose a key-normalized model's music by (default: from the seed);
        a model that writes in any key (``representation.tonic`` null) is never transposed."""
        self.bundle = bundle
        self.manifest = bundle.manifest
        rep, sampler = self.manifest.representation, self.manifest.sampler
        self._latent_shape = (rep.latent_frames, rep.latent_dim)
        self._sample = SAMPLERS[sampler.kind]
        self._sigmas = get_sigmas_flow(sampler.steps, sampler.shift)
        self._history_len = history
        self._history: OrderedDict[int, GeneratorState] = OrderedDict()
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
        k = rep.context_bars
        if rep.tonic is None:
            key = 0
        return GeneratorState(
            0,
            int(seed),
            np.zeros((k, *self._latent_shape), np.float32),
            np.zeros(k, np.float32),
            seed_key(seed) if key is None else int(key),
        )

    def set_state(self, state: GeneratorState) -> None:
        """Continue from ``state`` (from :meth:`get_state`, possibly of another process)."""
        k = self.manifest.representation.context_bars
        if state.context.shape != (k, *self._latent_shape) or state.context_mask.shape != (k,):
            raise MusicBoxError(
                f"generator state has context {state.context.shape}, this bundle needs "
                f"{(k, *self._latent_shape)}: it was saved with another bundle; start afresh"
            )
        self._state = state
        for i in [i for i in self._history if i > state.index]:
            del self._history[i]

    def reseed(self, seed: int) -> None:
        """Use ``seed`` for the noise of the next bars; the context (the music so far) is kept."""
        s = self._state
        self._state = GeneratorState(s.index, int(seed), s.context, s.context_mask, s.key)

    def rewind(self, index: int) -> None:
        """Make ``index`` the next bar to write again, from the state before it was first written.

        Only the last ``history`` bars can be rewound to; ``index == self.index`` is a no-op.
        """
        if index == self._state.index:
            return
        if index not in self._history:
            kept = f"{min(self._history)}..{self._state.index}" if self._history else f"{self._state.index}"
            raise MusicBoxError(f"cannot rewind to bar {index}: the generator can go back to bars {kept}")
        self.set_state(self._history[index])

    # -- one bar --------------------------------------------------------------------------------------

    def next_bar(self, controls: Controls) -> Bar:
        """Write the next bar for ``controls`` and advance."""
        start = time.perf_counter()
        state = self._state
        latent = self._sample_latent(controls, state)
        written = planes_to_roll(self.bundle.decode(latent), self.manifest.sampler.threshold)  # model's key
        played = self.bundle.encode(roll_to_planes(written))  # [1, F, D]: the context of the next bar
        self._remember(state)
        self._state = _advance(state, played[0])
        roll = transpose(written, state.key)
        notes = roll_to_notes(roll, self.manifest.representation.pianoroll())
        return Bar(state.index, roll, notes, controls, time.perf_counter() - start)

    def _remember(self, state: GeneratorState) -> None:
        self._history[state.index] = state
        while len(self._history) > self._history_len:
            self._history.popitem(last=False)

    def _sample_latent(self, controls: Controls, state: GeneratorState) -> np.ndarray:
        """Sampled latent ``[1, F, D]`` of bar ``state.index``."""
        guidance = self.manifest.sampler.guidance
        feeds = self._static_feeds(controls, state, guided=self.manifest.sampler.guided)
        batch = feeds["style_w"].shape[0]

        def denoise(x: np.ndarray, sigma: float) -> np.ndarray:
            feeds["x"] = np.repeat(x, batch, axis=0)
            feeds["sigma"] = np.full(batch, sigma, np.float32)
            v = self.bundle.run_denoiser(feeds)
            v = cfg_velocity(v[:1], v[1:], guidance) if batch == 2 else v
            return (x - np.float32(sigma) * v).astype(np.float32)

        rng = np.random.default_rng((state.seed, state.index))
        noise = rng.standard_normal((1, *self._latent_shape), dtype=np.float32)
        return self._sample(denoise, noise * np.float32(self._sigmas[0]), self._sigmas)

    def _static_feeds(self, controls: Controls, state: GeneratorState, guided: bool) -> dict:
        """The denoiser feeds that stay fixed over a bar's sampler steps (conditioning and context)."""
        feeds = conditioning_feeds(controls, self.manifest.controls, guidance=guided)
        batch = feeds["style_w"].shape[0]
        context = state.context.reshape(1, -1, self._latent_shape[1])
        feeds["context"] = np.repeat(context, batch, axis=0)
        feeds["context_mask"] = np.repeat(state.context_mask[None], batch, axis=0)
        return feeds


def _advance(state: GeneratorState, played: np.ndarray) -> GeneratorState:
    """The state after a bar whose re-encoded latent is ``played [F, D]``: the context window slides."""
    k = len(state.context_mask)
    context = np.concatenate([state.context, played[None]])[1:] if k else state.context
    mask = np.concatenate([state.context_mask, [1.0]])[1:] if k else state.context_mask
    return GeneratorState(
        state.index + 1,
        state.seed,
        context.astype(np.float32),
        mask.astype(np.float32),
        state.key,
    )
