"""Validate a written bundle with the real runtime: INT8 vs FP32 agreement, sizes, side-by-side speed.

Everything here goes through ``musicbox.runtime`` (``Bundle.open`` + ``Generator``): no second loader,
no torch, so the same code runs on the device and under qemu-aarch64 (``quantize/arm64.py``).

- Agreement: for fixed seeds and knob settings, the FP32 and INT8 generators write bars in lockstep; before
  each bar the INT8 generator is put in the FP32 generator's state (``set_state``), so every bar is
  compared from the same context (the quantization error of one bar, not the divergence of two pieces).
  Per bar: the cosine similarity of the sampled latents (``[F, D]``, caught on their way into the
  decoder) and the note-level F1 of the rolls (a note matches on bar, track, onset step and pitch).
  The free-running F1 (each generator continues from its own bars) is reported too.
- Speed: the stages of every variant are timed interleaved in one loop (so load changes of the host hit
  all variants alike), one denoiser call at a time as the generator makes them; p50 and p95.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import numpy as np

from musicbox.precision import PRECISIONS
from musicbox.runtime.bundle import INT8_PREFERENCE, Bundle, stage_bytes
from musicbox.runtime.conditioning import conditioning_feeds
from musicbox.runtime.controls import Controls
from musicbox.runtime.features import cosine
from musicbox.runtime.generator import Generator
from musicbox.runtime.manifest import Manifest
from musicbox.runtime.meter import METERS
from musicbox.runtime.pianoroll import ONSET, note_f1


@dataclass(frozen=True)
class ValidationPlan:
    """Seeds x knob settings x ``bars`` bars per piece; ``repeats`` timed calls per stage and variant."""

    seeds: tuple[int, ...] = (0, 1, 2)
    settings: tuple[Controls, ...] = ()
    bars: int = 4
    repeats: int = 200


def default_settings(manifest: Manifest) -> tuple[Controls, ...]:
    """Three knob settings across the range: first style slow and minor, a blend at the default tempo
    and neutral mood, the last style fast and major."""
    c = manifest.controls
    last = len(c.styles) - 1
    return (
        Controls(0.0, c.tempo.min_bpm, -1.0),
        Controls(last / 2 + 0.5 * (last % 2 == 0), c.tempo.default_bpm, 0.0),
        Controls(float(last), c.tempo.max_bpm, 1.0),
    )


class LatentTap:
    """A ``Bundle`` as the generator sees it, recording every latent ``[1, F, D]`` passed to ``decode``
    (the sampled latent of each bar). Everything else is the bundle's own."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.latents: list[np.ndarray] = []

    def decode(self, latent: np.ndarray) -> np.ndarray:
        self.latents.append(np.array(latent, dtype=np.float32))
        return self.bundle.decode(latent)

    def __getattr__(self, name):
        return getattr(self.bundle, name)


def generate(bundle: Bundle, plan: ValidationPlan) -> tuple[np.ndarray, np.ndarray]:
    """Free-running pieces of ``plan.bars`` bars for every seed and setting: sampled latents float32
    ``[n, F, D]`` and rolls uint8 ``[n, 3, 16, 64]``, n = seeds x settings x bars, in that order."""
    tap = LatentTap(bundle)
    rolls = []
    for seed in plan.seeds:
        for controls in plan.settings:
            gen = Generator(cast(Bundle, tap), seed=seed)
            rolls += [gen.next_bar(controls).roll[0] for _ in range(plan.bars)]
    return np.concatenate(tap.latents), np.stack(rolls)


def lockstep(reference: Bundle, other: Bundle, plan: ValidationPlan) -> dict[str, float]:
    """Per-bar agreement of ``other`` with ``reference`` from the same context every bar: mean and
    minimum latent cosine, note F1 over all bars, and the notes written (reference, other)."""
    ref_tap, other_tap = LatentTap(reference), LatentTap(other)
    ref_rolls, other_rolls = [], []
    for seed in plan.seeds:
        for controls in plan.settings:
            ref_gen, other_gen = (
                Generator(cast(Bundle, ref_tap), seed=seed),
                Generator(cast(Bundle, other_tap), seed=seed),
            )
            for _ in range(plan.bars):
                other_gen.set_state(ref_gen.get_state())
                ref_rolls.append(ref_gen.next_bar(controls).roll[0])
                other_rolls.append(other_gen.next_bar(controls).roll[0])
    flat = [np.stack([r.ravel() for r in tap.latents]).astype(np.float64) for tap in (ref_tap, other_tap)]
    cos = cosine(*flat)
    ref, got = np.stack(ref_rolls), np.stack(other_rolls)
    return {
        "latent_cosine": float(np.mean(cos)),
        "latent_cosine_min": float(np.min(cos)),
        "note_f1": note_f1(got, ref),
        "notes": int((ref == ONSET).sum()),
        "notes_other": int((got == ONSET).sum()),
    }


def denoiser_feeds(manifest: Manifest, seed: int = 0) -> dict[str, np.ndarray]:
    """One denoiser call as the generator makes it (default knobs, full context, the first meter), one
    row and one per guidance scale of that meter (``SamplerInfo.row_guidance``)."""
    rep = manifest.representation
    rng = np.random.default_rng(seed)
    tempo = manifest.controls.tempo.default_bpm
    feeds = conditioning_feeds(
        Controls(0.0, tempo, 0.0),
        manifest.controls,
        manifest.sampler,
        rep.meters,
        meter=METERS[rep.meters[0]],
    )
    batch = feeds["style_w"].shape[0]
    latent = (rep.latent_frames, rep.latent_dim)
    feeds["x"] = np.repeat(rng.standard_normal((1, *latent), dtype=np.float32), batch, axis=0)
    feeds["sigma"] = np.full(batch, 0.5, np.float32)
    k = len(rep.context_lags)
    context = rng.standard_normal((1, k * rep.latent_frames, rep.latent_dim), np.float32)
    feeds["context"] = np.repeat(context, batch, axis=0)
    feeds["context_mask"] = np.ones((batch, k), np.float32)
    feeds["place"] = np.repeat(np.eye(rep.positions, dtype=np.float32)[:1], batch, axis=0)
    return feeds


def _time_variant(bundle: Bundle, feeds: dict, times: dict[str, list[float]]) -> None:
    """One timed pass over every stage of ``bundle`` (shards chained as ``run_denoiser`` does)."""
    values = dict(feeds)
    total = 0.0
    for stage in bundle.variant.denoiser:
        session = bundle.sessions.get(stage)
        args = {n: values[n] for n in stage.input_names}
        t = time.perf_counter()
        out = session.run(None, args)
        dt = time.perf_counter() - t
        values.update(zip(stage.output_names, out, strict=True))
        times.setdefault(stage.file.split("/")[-1], []).append(dt)
        total += dt
    times.setdefault("denoiser", []).append(total)
    t = time.perf_counter()
    probs = bundle.decode(values["v"][:1])
    times.setdefault("decoder.onnx", []).append(time.perf_counter() - t)
    t = time.perf_counter()
    bundle.encode((probs > 0.5).astype(np.float32))
    times.setdefault("encoder.onnx", []).append(time.perf_counter() - t)


def time_stages(bundles: dict[str, Bundle], repeats: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per variant, per stage file (and ``denoiser`` = all shards): p50 and p95 in milliseconds of one
    call, the variants interleaved call by call. Five warm-up passes are not counted."""
    feeds = denoiser_feeds(next(iter(bundles.values())).manifest)
    times: dict[str, dict[str, list[float]]] = {p: {} for p in bundles}
    for i in range(repeats + 5):
        for precision, bundle in bundles.items():
            sink = times[precision] if i >= 5 else {}
            _time_variant(bundle, feeds, sink)
    return {
        p: {s: {"p50_ms": _ms(v, 50), "p95_ms": _ms(v, 95)} for s, v in stages.items()}
        for p, stages in times.items()
    }


def _ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1e3, 4)


def variant_bytes(manifest: Manifest, precision: str) -> int:
    """Bytes of every file of a variant (models and external weights)."""
    return sum(stage_bytes(s) for s in manifest.variant(precision).files())


def validate(path, plan: ValidationPlan | None = None) -> dict:
    """Open the bundle folder ``path`` once per variant with ``Bundle.open`` (1 thread) and measure
    agreement, sizes and speed. Returns the manifest's ``validation`` dict."""
    bundles = {p: Bundle.open(path, precision=p, threads=1) for p in PRECISIONS}
    manifest = bundles["fp32"].manifest
    plan = plan or ValidationPlan()
    if not plan.settings:
        plan = ValidationPlan(plan.seeds, default_settings(manifest), plan.bars, plan.repeats)
    fp32_bytes = variant_bytes(manifest, "fp32")
    timing = time_stages(bundles, plan.repeats)
    figures: dict = {"plan": {"seeds": list(plan.seeds), "bars": plan.bars, "settings": len(plan.settings)}}
    for p in INT8_PREFERENCE:
        agree = lockstep(bundles["fp32"], bundles[p], plan)
        free = note_f1(generate(bundles[p], plan)[1], generate(bundles["fp32"], plan)[1])
        speedup = timing["fp32"]["denoiser"]["p50_ms"] / timing[p]["denoiser"]["p50_ms"]
        figures.update(
            {
                f"{p}_note_f1": round(agree["note_f1"], 4),
                f"{p}_note_f1_free_running": round(free, 4),
                f"{p}_latent_cosine": round(agree["latent_cosine"], 5),
                f"{p}_latent_cosine_min": round(agree["latent_cosine_min"], 5),
                f"{p}_notes": [agree["notes"], agree["notes_other"]],
                f"{p}_size_ratio": round(variant_bytes(manifest, p) / fp32_bytes, 4),
                f"{p}_denoiser_speedup": round(speedup, 3),
            }
        )
    figures["size_ratio"] = figures["int8_size_ratio"]
    figures["denoiser_speedup"] = figures["int8_denoiser_speedup"]
    figures["bytes"] = {p: variant_bytes(manifest, p) for p in bundles}
    figures["latency_ms"] = timing
    for b in bundles.values():
        b.close()
    return figures
