"""The meters the box plays: how long a bar is and where its beats fall, on the sixteenth-note grid.

A 4/4 bar is 16 steps, four quarter-note beats; a 3/4 bar 12 steps, three quarter-note beats; a 6/8 bar
12 steps, two dotted-quarter beats of three eighths each (steps 0 and 6; the eighths on 0, 2, 4, 6, 8,
10). The model's rows are always 16 steps: a 12-step bar fills steps 0..11 and its last latent frame (the
fourth beat of a 4/4 bar) is silent padding, so one autoencoder and one denoiser serve every meter (the
meter is a condition of the denoiser). What the box plays, renders and records of a bar is its
``steps`` only (:func:`crop`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicbox.errors import ConfigError

ROW_STEPS = 16
"""Steps of the model's bar row (the longest bar)."""


@dataclass(frozen=True)
class Meter:
    """name: "4/4", "3/4" or "6/8". numerator/denominator: the time signature (a MIDI file's). steps: grid
    steps (sixteenths) of a bar. beats: the step each beat starts on (a 6/8 beat is a dotted quarter).
    strong: the strong beats' steps (4/4: 1 and 3; 3/4: the downbeat; 6/8: both dotted beats)."""

    name: str
    numerator: int
    denominator: int
    steps: int
    beats: tuple[int, ...]
    strong: tuple[int, ...]

    @property
    def quarters(self) -> float:
        """The bar's length in quarter notes (4, 3 or 3)."""
        return self.steps / 4

    @property
    def beat_steps(self) -> int:
        """Steps per beat: 4 (a quarter) or 6 (a dotted quarter)."""
        return self.beats[1] - self.beats[0] if len(self.beats) > 1 else self.steps


METERS: dict[str, Meter] = {
    "4/4": Meter("4/4", 4, 4, 16, (0, 4, 8, 12), (0, 8)),
    "3/4": Meter("3/4", 3, 4, 12, (0, 4, 8), (0,)),
    "6/8": Meter("6/8", 6, 8, 12, (0, 6), (0, 6)),
}
"""Every meter the box knows, by name; a bundle's model plays those in ``representation.meters``."""

COMMON = METERS["4/4"]


def meter_named(name: str, where: str = "meter") -> Meter:
    """The :class:`Meter` called ``name``; a ConfigError naming ``where`` and the meters known if none."""
    if name not in METERS:
        raise ConfigError(f"{where}: got {name!r}; allowed: {', '.join(METERS)}")
    return METERS[name]


def crop(roll: np.ndarray, meter: Meter) -> np.ndarray:
    """The bar's own steps of a model row ``[..., ROW_STEPS, P]`` -> ``[..., meter.steps, P]``."""
    return roll[..., : meter.steps, :]


def pad(roll: np.ndarray) -> np.ndarray:
    """A bar ``[..., steps, P]`` as a model row ``[..., ROW_STEPS, P]`` (silent after its steps)."""
    steps = roll.shape[-2]
    if steps == ROW_STEPS:
        return roll
    width = [(0, 0)] * roll.ndim
    width[-2] = (0, ROW_STEPS - steps)
    return np.pad(roll, width)
