"""The generator's state: everything a bar needs from the bars before it, in numpy, picklable as itself.

It crosses the pipe from the worker to the supervisor after every bar (the supervisor keeps the state
after each bar not yet played, which is how the box rewrites buffered bars when a knob turns and how a
restarted worker continues), so this module imports only numpy (and the numpy-only piano roll): the
box's main process never loads onnxruntime.

Shapes: ``H`` bars of history (the farthest context lag), ``F x D`` a bar's latent, ``L`` theme slots
(distinct section letters of a form), ``N`` bars per section.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from musicbox.runtime.pianoroll import KEY_SHIFTS

THEME_SLOTS = 4
"""Distinct section letters a form may use (A, B, C, D)."""

MAX_SECTION_BARS = 16
"""Longest section, in bars, whose latents are kept for its return."""

HOME = (0,) * THEME_SLOTS
"""Every section letter in the tune's home key (``GeneratorState.shifts``)."""


@dataclass(frozen=True, eq=False)
class GeneratorState:
    """Where the music is, between two bars.

    index: the next bar's number since the start. seed: the noise seed (a bar's noise depends only on
    ``(seed, index)``). key: semitones the model's bars are transposed by into what is played.
    context float32 ``[H, F, D]``: re-encoded latents of the previous H bars, oldest first (the
    denoiser sees those at its context lags: slot ``H - lag``); context_mask float32 ``[H]``: 1 where
    that bar exists.
    Form (see ``runtime/form.py``): section, the number of the section playing since the tune began;
    section_start, the bar it began at; style, the style detent the tune is in (-1 before the first
    bar); last float32 ``[4]``: the controls of the previous bar (style, tempo, mood, variation; NaN
    before the first); themes float32 ``[L, N, F, D]``: the re-encoded latents of the first playing of
    each section letter of this tune; themes_mask float32 ``[L, N]``: 1 where a theme bar is stored.
    tail: per track, the pitch rows sounding at the previous bar's last step, in the model's key, so
    voice-leading (``runtime/voicing.py``) follows every line over the bar line (``()`` before the first).
    meter: the tune's meter, an index into the bundle's ``representation.meters`` (-1 before the first
    bar); a change starts a new tune, as a style turn does.
    roll: uint8 ``[T, 16, P]``, the previous bar as played, in the model's key (None before the first):
    what a knob turn inside the next bar keeps of it (``Generator.next_bar``'s ``hold``).
    themes_mood: float32 ``[L, N]``, the mood knob each theme bar was written at (None: unknown), so a
    theme returns in the mode the knob asks for now (``runtime/form.py``).
    form: the plan the tune drew from its style's form plans (an index into ``FormSpec.plans``; -1: none
    drawn, the style's form itself).
    shifts: per section letter, the semitones its key lies above the home key ``key`` (a key journey:
    ``FormSpec.moves``; :data:`HOME` at a tune's start).
    """

    index: int
    seed: int
    key: int
    context: np.ndarray
    context_mask: np.ndarray
    section: int
    section_start: int
    slot: int
    style: int
    last: np.ndarray
    themes: np.ndarray
    themes_mask: np.ndarray
    tail: tuple[tuple[int, ...], ...] = ()
    meter: int = -1
    roll: np.ndarray | None = None
    themes_mood: np.ndarray | None = None
    form: int = -1
    shifts: tuple[int, ...] = HOME

    def sounding_key(self) -> int:
        """Semitones the bar of this state's section letter (``slot``) is played at: the home key and
        the letter's key move, within :data:`~musicbox.runtime.pianoroll.KEY_SHIFTS`."""
        low = KEY_SHIFTS[0]
        return (self.key + self.shifts[self.slot] - low) % 12 + low

    @classmethod
    def fresh(cls, seed: int, key: int, history: int, latent: tuple[int, int]) -> GeneratorState:
        """The state before bar 0 of a new piece: no context (``history`` bars of room), no themes."""
        return cls(
            index=0,
            seed=int(seed),
            key=int(key),
            context=np.zeros((history, *latent), np.float32),
            context_mask=np.zeros(history, np.float32),
            section=0,
            section_start=0,
            slot=0,
            style=-1,
            last=np.full(4, np.nan, np.float32),
            themes=np.zeros((THEME_SLOTS, MAX_SECTION_BARS, *latent), np.float32),
            themes_mask=np.zeros((THEME_SLOTS, MAX_SECTION_BARS), np.float32),
            themes_mood=np.zeros((THEME_SLOTS, MAX_SECTION_BARS), np.float32),
        )

    def reseeded(self, seed: int) -> GeneratorState:
        """The same music so far, new noise from now on."""
        return replace(self, seed=int(seed))

    def advanced(self, played: np.ndarray) -> GeneratorState:
        """The state after bar ``index`` whose re-encoded latent is ``played [F, D]``: the context slides."""
        k = len(self.context_mask)
        context = np.concatenate([self.context, played[None]])[1:] if k else self.context
        mask = np.concatenate([self.context_mask, [1.0]])[1:] if k else self.context_mask
        return replace(
            self,
            index=self.index + 1,
            context=context.astype(np.float32),
            context_mask=mask.astype(np.float32),
        )
