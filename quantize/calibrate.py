"""Calibration data from real sampler trajectories, recorded at every stage's (and shard's) inputs.

Diffusion activations drift with the noise level, the knobs and the context, so the INT8 ranges are
calibrated on what the box will actually feed: the checkpoint's own sampler (``runtime/sampling.py``,
which runs on torch tensors), run in torch over **every denoising step** of bar-by-bar continuations
(bar 0 without context, later bars with the re-encoded previous bars, exactly like
``runtime/generator.py``), over a grid of knob settings — style detents *and* blends between them,
tempo (energy) low/default/high, mood minor/neutral/major — and several seeds. Each denoiser call is a
batch of 2 (conditional row + unconditional row mixed with ``cfg_velocity``) as in the runtime, with the
runtime's own ``conditioning_feeds`` turning knobs into inputs and the runtime's noise
(``default_rng((seed, bar))``).

Recorded per stage: the denoiser shards' inputs (shard 0's conditioning inputs, then each ``h{k}``),
the decoder's input latents and the encoder's input planes (the thresholded rolls that are re-encoded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from musicbox.quantize.export import make_shard, shard_io
from musicbox.runtime.conditioning import conditioning_feeds
from musicbox.runtime.controls import Controls
from musicbox.runtime.manifest import ControlsInfo, SamplerInfo
from musicbox.runtime.pianoroll import planes_to_roll, roll_to_planes
from musicbox.runtime.sampling import SAMPLERS, cfg_velocity, get_sigmas_flow

CALIB_BATCH = 64
"""Recorded calls concatenated into one calibration batch (MinMax ranges do not depend on batching)."""
DEBUG_CALLS = 128
"""Recorded calls used to measure per-node and output errors (qdq_loss_debug keeps every tensor)."""


@dataclass(frozen=True)
class CalibrationGrid:
    """Knob settings x seeds to run: style knob positions (detents and blends), tempos in BPM, moods
    (-1..1), noise ``seeds`` and ``bars`` per continuation (bar 0 has no context)."""

    styles: tuple[float, ...]
    tempos: tuple[float, ...]
    moods: tuple[float, ...]
    seeds: tuple[int, ...]
    bars: int = 3

    def settings(self) -> list[Controls]:
        return [Controls(s, t, m) for s in self.styles for t in self.tempos for m in self.moods]

    @property
    def trajectories(self) -> int:
        return len(self.settings()) * len(self.seeds)


def default_grid(controls: ControlsInfo, seeds: int = 2, bars: int = 3) -> CalibrationGrid:
    """Every style detent and every midpoint blend, tempo min/default/max, mood -1/0/+1."""
    n = len(controls.styles)
    t = controls.tempo
    return CalibrationGrid(
        styles=tuple(i / 2 for i in range(2 * n - 1)),
        tempos=(t.min_bpm, t.default_bpm, t.max_bpm),
        moods=(-1.0, 0.0, 1.0),
        seeds=tuple(range(seeds)),
        bars=bars,
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


class Recorder:
    """Runs the torch model like the runtime's generator and records each stage's inputs."""

    def __init__(self, model, groups: list[range], controls: ControlsInfo, sampler: SamplerInfo):
        self.ae = model.autoencoder
        self.shards = [make_shard(model.denoiser, g) for g in groups]
        self.names = [shard_io(i, len(groups))[0] for i in range(len(groups))]
        self.controls, self.sampler = controls, sampler
        self.sigmas = torch.from_numpy(get_sigmas_flow(sampler.steps, sampler.shift))
        self.data = CalibrationSet()

    def denoiser(self, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        """Run the shards in order on torch feeds, recording every shard's inputs; returns ``v``."""
        values = dict(feeds)
        for i, (shard, names) in enumerate(zip(self.shards, self.names, strict=True)):
            args = [values[n] for n in names]
            self.data.add(
                f"denoiser.{i:02d}", {n: a.numpy().copy() for n, a in zip(names, args, strict=True)}
            )
            out = shard(*args)
            values[shard_io(i, len(self.shards))[1][0]] = out
        return values["v"]

    def bar(self, controls: Controls, seed: int, index: int, context, mask) -> np.ndarray:
        """Sample, decode and threshold bar ``index``; returns its re-encoded latent ``[1, F, D]``."""
        g = self.sampler.guidance
        cond = conditioning_feeds(controls, self.controls, guidance=g != 1.0)
        batch = cond["style_w"].shape[0]
        static = {k: torch.from_numpy(v) for k, v in cond.items()}
        static["context"] = torch.from_numpy(np.repeat(context.reshape(1, -1, context.shape[-1]), batch, 0))
        static["context_mask"] = torch.from_numpy(np.repeat(mask[None], batch, 0))

        def denoise(x, sigma):
            feeds = {**static, "x": x.repeat(batch, 1, 1), "sigma": torch.full((batch,), sigma)}
            v = self.denoiser(feeds)
            v = cfg_velocity(v[:1], v[1:], g) if batch == 2 else v
            return x - sigma * v

        noise = np.random.default_rng((seed, index)).standard_normal((1, *context.shape[1:]), np.float32)
        x = SAMPLERS[self.sampler.kind](denoise, torch.from_numpy(noise) * self.sigmas[0], self.sigmas)
        self.data.add("decoder", {"latent": x.numpy().copy()})
        roll = planes_to_roll(self.ae.decode(x).numpy(), self.sampler.threshold)
        planes = roll_to_planes(roll)
        self.data.add("encoder", {"planes": planes})
        return self.ae.encode(torch.from_numpy(planes)).numpy()

    def trajectory(self, controls: Controls, seed: int, bars: int, k: int, frames: int, dim: int) -> None:
        """A continuation of ``bars`` bars from silence with ``k`` context slots, as the generator does."""
        context = np.zeros((k, frames, dim), np.float32)
        mask = np.zeros(k, np.float32)
        for index in range(bars):
            played = self.bar(controls, seed, index, context, mask)
            if k:
                context = np.concatenate([context, played])[1:]
                mask = np.concatenate([mask, [1.0]])[1:].astype(np.float32)


def record(
    model, groups, controls: ControlsInfo, sampler: SamplerInfo, grid: CalibrationGrid, advance=None
) -> CalibrationSet:
    """Run every (knob setting, seed) trajectory of ``grid``; ``advance()`` is called after each."""
    rec = Recorder(model, groups, controls, sampler)
    cfg = model.denoiser.cfg
    torch.manual_seed(0)
    with torch.no_grad():
        for setting in grid.settings():
            for seed in grid.seeds:
                rec.trajectory(setting, seed, grid.bars, cfg.context_bars, cfg.frames, cfg.latent_dim)
                if advance is not None:
                    advance()
    return rec.data
