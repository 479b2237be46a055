"""Calibration data from real sampler trajectories, recorded at every stage's (and shard's) inputs.

Diffusion activations drift with the noise level, the knobs and the context, so the INT8 ranges are
calibrated on what the box will actually feed: the runtime's own
:class:`~musicbox.runtime.generator.Generator` writes bar-by-bar continuations (bar 0 without context,
later bars with the re-encoded previous bars), with the checkpoint's torch modules in the place of the
ONNX sessions (:class:`TorchStages`), over **every denoising step**, over a grid of knob settings —
style detents *and* blends between them, tempo (energy) low/default/high, mood minor/neutral/major — and
several seeds. Feeds, guidance, noise (``default_rng((seed, bar))``) and the context slide are the
generator's, not a copy.

Recorded per stage: the denoiser shards' inputs (shard 0's conditioning inputs, then each ``h{k}``),
the decoder's input latents and the encoder's input planes (the thresholded rolls that are re-encoded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from musicbox.quantize.export import make_shard, shard_io
from musicbox.quantize.tables import ModelTables
from musicbox.runtime.controls import Controls
from musicbox.runtime.generator import Generator
from musicbox.runtime.manifest import ControlsInfo

if TYPE_CHECKING:
    from musicbox.runtime.bundle import Bundle

CALIB_BATCH = 64
"""Recorded calls concatenated into one calibration batch (MinMax ranges do not depend on batching)."""
DEBUG_CALLS = 128
"""Recorded calls used to measure per-node and output errors (qdq_loss_debug keeps every tensor)."""


@dataclass(frozen=True)
class CalibrationGrid:
    """Knob settings x seeds to run: style knob positions (detents and blends), tempos in BPM, moods
    (-1..1), noise ``seeds`` and ``bars`` per continuation (bar 0 has no context); ``meters``: the meter
    controls ("" = each style's own)."""

    styles: tuple[float, ...]
    tempos: tuple[float, ...]
    moods: tuple[float, ...]
    seeds: tuple[int, ...]
    bars: int = 3
    meters: tuple[str, ...] = ("",)

    def settings(self) -> list[Controls]:
        return [
            Controls(s, t, m, meter=meter)
            for s in self.styles
            for t in self.tempos
            for m in self.moods
            for meter in self.meters
        ]

    @property
    def trajectories(self) -> int:
        return len(self.settings()) * len(self.seeds)


def default_grid(controls: ControlsInfo, seeds: int, bars: int, meters: tuple[str, ...]) -> CalibrationGrid:
    """Every style detent and every midpoint blend, tempo min/default/max, mood -1/0/+1, every one of the
    model's ``meters``."""
    n = len(controls.styles)
    t = controls.tempo
    return CalibrationGrid(
        styles=tuple(i / 2 for i in range(2 * n - 1)),
        tempos=(t.min_bpm, t.default_bpm, t.max_bpm),
        moods=(-1.0, 0.0, 1.0),
        seeds=tuple(range(seeds)),
        bars=bars,
        meters=meters,
    )


@dataclass
class CalibrationSet:
    """Recorded inputs per stage name: a list of feed dicts (name -> float32 array, one per call)."""

    stages: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)

    def add(self, stage: str, feeds: dict[str, np.ndarray]) -> None:
        self.stages.setdefault(stage, []).append(feeds)

    def batches(self, stage: str, batch: int = CALIB_BATCH) -> list[dict[str, np.ndarray]]:
        """The stage's recorded calls, concatenated ``batch`` calls at a time along the batch axis."""
        calls = self.stages[stage]
        out = []
        for i in range(0, len(calls), batch):
            chunk = calls[i : i + batch]
            out.append({k: np.concatenate([c[k] for c in chunk]) for k in chunk[0]})
        return out

    def spread(self, stage: str, calls: int = DEBUG_CALLS) -> list[dict[str, np.ndarray]]:
        """One batch of about ``calls`` recorded calls taken evenly over all trajectories (every step,
        knob setting and seed are represented): for error measurements, which need far less data."""
        recorded = self.stages[stage]
        picked = recorded[:: max(1, len(recorded) // calls)]
        return [{k: np.concatenate([c[k] for c in picked]) for k in picked[0]}]

    def rows(self, stage: str) -> int:
        """Total batch rows recorded for ``stage``."""
        return sum(next(iter(c.values())).shape[0] for c in self.stages[stage])


class TorchStages:
    """The checkpoint's torch modules in the place of a ``Bundle``, recording each stage's inputs.

    The runtime's :class:`~musicbox.runtime.generator.Generator` uses four things of a bundle:
    ``manifest`` (here the checkpoint's :class:`~musicbox.quantize.tables.ModelTables`), ``encode(planes)``,
    ``decode(latent)`` and ``run_denoiser(feeds)``. These run the autoencoder and the denoiser shards
    (``export.make_shard``, the very modules exported to ONNX) in torch on the generator's numpy arrays,
    and record every input into :attr:`data`. So the calibration samples with the generator's own loop
    (feeds, guidance, seeded noise, context slide) and cannot drift from what the box plays.
    """

    def __init__(self, model, groups: list[range], tables: ModelTables):
        self.manifest = tables
        self.ae = model.autoencoder
        self.shards = [make_shard(model.denoiser, g) for g in groups]
        self.io = [shard_io(i, len(groups)) for i in range(len(groups))]
        self.data = CalibrationSet()

    def run_denoiser(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The shards in order, recording every shard's inputs; returns ``v [B, F, D]``."""
        values = {name: torch.from_numpy(value) for name, value in feeds.items()}
        for i, (shard, (inputs, outputs)) in enumerate(zip(self.shards, self.io, strict=True)):
            args = [values[n] for n in inputs]
            self.data.add(
                f"denoiser.{i:02d}", {n: a.numpy().copy() for n, a in zip(inputs, args, strict=True)}
            )
            values[outputs[0]] = shard(*args)
        return values["v"].numpy()

    def decode(self, latent: np.ndarray) -> np.ndarray:
        """Latent ``[B, F, D]`` -> note probabilities ``[B, 6, 16, 64]``; records the latent."""
        self.data.add("decoder", {"latent": np.array(latent, dtype=np.float32)})
        return self.ae.decode(torch.from_numpy(latent)).numpy()

    def encode(self, planes: np.ndarray) -> np.ndarray:
        """Planes ``[B, 6, 16, 64]`` (the thresholded roll) -> latent ``[B, F, D]``; records the planes."""
        self.data.add("encoder", {"planes": planes})
        return self.ae.encode(torch.from_numpy(planes)).numpy()


def record(model, groups, tables: ModelTables, grid: CalibrationGrid, advance=None) -> CalibrationSet:
    """Run every (knob setting, seed) trajectory of ``grid`` through the runtime's ``Generator`` (a
    fresh piece of ``grid.bars`` bars each); ``advance()`` is called after each."""
    stages = TorchStages(model, groups, tables)
    torch.manual_seed(0)
    with torch.no_grad():
        for setting in grid.settings():
            for seed in grid.seeds:
                generator = Generator(cast("Bundle", stages), seed=seed)  # the stages stand in for a bundle
                for _ in range(grid.bars):
                    generator.next_bar(setting)
                if advance is not None:
                    advance()
    return stages.data
