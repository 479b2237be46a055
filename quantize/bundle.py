"""Checkpoint -> bundle folder: export, calibrate, quantize, write the files and the manifest, validate.

Layout written (docs/architecture.md, "Bundle")::

    BUNDLE/manifest.json
    BUNDLE/fp32/{encoder,decoder,denoiser.00,...}.onnx (+ .onnx.data)
    BUNDLE/int8/...           static QDQ, calibrated on sampler trajectories (quantize/int8.py)
    BUNDLE/int8_dynamic/...   dynamic INT8 (optimum ORTQuantizer, arm64 preset)

The manifest is built only through ``musicbox.runtime.manifest`` (the one schema), with the sampler,
representation and knob tables copied from the checkpoint config, and is then checked by opening the
bundle with the runtime's ``Bundle`` (hashes, sizes, names), whose figures become ``validation``.

Determinism: the ONNX files are byte-identical for the same checkpoint (export, calibration and
quantization are seeded and single-threaded, the external-data layout is fixed, exporter metadata is
stripped). ``manifest.json`` differs only in ``validation.latency_ms`` and the two speed-up figures,
which are wall-clock measurements.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import onnx
import torch

from musicbox.model.checkpoint import WEIGHTS, load_checkpoint
from musicbox.precision import PRECISIONS, Precision
from musicbox.quantize import calibrate, export, int8, shard, tables
from musicbox.quantize.validate import ValidationPlan, validate
from musicbox.runtime.digest import sha256_file
from musicbox.runtime.manifest import (
    FORMAT_VERSION,
    ExternalData,
    Manifest,
    ModelInfo,
    Provenance,
    StageFile,
    TensorSpec,
    Variant,
)

DTYPE_NAMES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}


@dataclass(frozen=True)
class BuildSettings:
    """shard_mb: FP32 MiB per denoiser shard. calib_seeds / calib_bars: noise seeds and bars per
    calibration trajectory over the default knob grid (``grid`` replaces that grid when given); 9 bars,
    so the last bar of each sees every context slot (the farthest lag is 8 bars).
    min_sqnr_db: per-node SQNR below which a node stays float. plan: the validation plan."""

    shard_mb: float = 4.0
    calib_seeds: int = 2
    calib_bars: int = 9
    grid: calibrate.CalibrationGrid | None = None
    min_sqnr_db: float = int8.MIN_SQNR_DB
    plan: ValidationPlan = field(default_factory=ValidationPlan)


@dataclass
class BuildResult:
    """What a build made: the manifest, per-stage static quantization results, calibration rows."""

    path: Path
    manifest: Manifest
    quant: dict[str, int8.QuantResult]
    calibration_rows: dict[str, int]
    shards: list[range]


class _Silent:
    """A stand-in for ``rich.progress.Progress`` when no progress display is wanted."""

    def add_task(self, description: str, total: float | None = None) -> int:
        return 0

    def advance(self, task: int, advance: float = 1) -> None:
        pass


def _specs(values) -> tuple[TensorSpec, ...]:
    out = []
    for v in values:
        t = v.type.tensor_type
        shape = tuple(d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim)
        out.append(TensorSpec(v.name, DTYPE_NAMES[t.elem_type], shape))
    return tuple(out)


def write_stage(root: Path, precision: str, name: str, model: onnx.ModelProto) -> StageFile:
    """Write one stage file (with external weights) under ``root/precision`` and describe it."""
    onnx_path, data_path = shard.write_onnx(model, root / precision / f"{name}.onnx")
    external = None
    if data_path is not None:
        rel = data_path.relative_to(root).as_posix()
        external = ExternalData(rel, sha256_file(data_path), data_path.stat().st_size)
    return StageFile(
        file=onnx_path.relative_to(root).as_posix(),
        sha256=sha256_file(onnx_path),
        bytes=onnx_path.stat().st_size,
        precision=precision,
        inputs=_specs(model.graph.input),
        outputs=_specs(model.graph.output),
        external_data=external,
    )


def write_variant(root: Path, precision: str, models: dict[str, onnx.ModelProto]) -> Variant:
    """Write every stage of a variant; ``models`` maps stage names (``encoder``, ``decoder``,
    ``denoiser.NN``) to ONNX models."""
    files = {name: write_stage(root, precision, name, m) for name, m in models.items()}
    shards = tuple(files[n] for n in sorted(files) if n.startswith("denoiser."))
    return Variant(encoder=files["encoder"], decoder=files["decoder"], denoiser=shards)


def model_info(checkpoint: Path, model: torch.nn.Module, config: dict) -> ModelInfo:
    """Name, parameter count and provenance (sha256 of the weights, dataset, training date)."""
    training = config.get("training", {})
    bars = training.get("dataset_bars", {})
    dataset = training.get("dataset") or f"musicbox phrases: {bars.get('train', '?')} train bars"
    return ModelInfo(
        name=config.get("name", checkpoint.resolve().name),
        parameters=sum(p.numel() for p in model.parameters()),
        provenance=Provenance(
            checkpoint_sha256=sha256_file(checkpoint / WEIGHTS),
            dataset=dataset,
            trained=training.get("trained", "unknown"),
        ),
    )


def make_manifest(info, config: dict, variants: dict[str, Variant], validation: dict) -> Manifest:
    representation, sampler, controls = tables.read_tables(config)
    return Manifest(
        format_version=FORMAT_VERSION,
        model=info,
        representation=representation,
        sampler=sampler,
        controls=controls,
        variants=cast(dict[Precision, Variant], variants),  # keys: PRECISIONS
        validation=validation,
    )


def _clear(root: Path) -> None:
    """Remove what an earlier build wrote in ``root`` (only the bundle's own names)."""
    for name in PRECISIONS:
        shutil.rmtree(root / name, ignore_errors=True)
    (root / "manifest.json").unlink(missing_ok=True)


def _export(model, settings: BuildSettings, progress) -> tuple[list[range], list[export.StageGraph]]:
    groups = shard.plan_shards(model.denoiser, settings.shard_mb)
    task = progress.add_task("export ONNX", total=2 + len(groups))
    encoder, decoder = export.export_autoencoder(model)
    progress.advance(task, 2)
    graphs = [encoder, decoder]
    for graph in export.export_denoiser(model, groups):
        graphs.append(graph)
        progress.advance(task)
    return groups, graphs


def _calibrate(model, config, groups, settings: BuildSettings, progress) -> calibrate.CalibrationSet:
    model_tables = tables.read_tables(config)
    grid = settings.grid or calibrate.default_grid(
        model_tables.controls, settings.calib_seeds, settings.calib_bars, model_tables.representation.meters
    )
    task = progress.add_task("calibrate (sampler trajectories)", total=grid.trajectories)
    return calibrate.record(model, groups, model_tables, grid, lambda: progress.advance(task))


def _quantize(graphs, data, settings: BuildSettings, progress) -> tuple[dict, dict, dict]:
    task = progress.add_task("quantize INT8 (static + dynamic)", total=len(graphs))
    static, dynamic, results = {}, {}, {}
    for g in graphs:
        r = int8.quantize_stage(g, data.batches(g.name), data.spread(g.name), settings.min_sqnr_db)
        results[g.name], static[g.name] = r, r.model
        dynamic[g.name] = int8.quantize_dynamic_stage(g, r.excluded)
        progress.advance(task)
    return static, dynamic, results


def build_bundle(checkpoint, out, settings: BuildSettings | None = None, progress=None) -> BuildResult:
    """Build the bundle of checkpoint folder ``checkpoint`` in folder ``out``; ``progress`` is a
    ``rich.progress.Progress`` (or None). Returns what was built, the manifest already validated."""
    settings = settings or BuildSettings()
    progress = progress or _Silent()
    checkpoint, root = Path(checkpoint), Path(out)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model, config = load_checkpoint(checkpoint)
    groups, graphs = _export(model, settings, progress)
    data = _calibrate(model, config, groups, settings, progress)
    static, dynamic, results = _quantize(graphs, data, settings, progress)
    task = progress.add_task("write + validate bundle", total=2)
    root.mkdir(parents=True, exist_ok=True)
    _clear(root)
    models = {"fp32": {g.name: g.model for g in graphs}, "int8": static, "int8_dynamic": dynamic}
    variants = {p: write_variant(root, p, models[p]) for p in PRECISIONS}
    info = model_info(checkpoint, model, config)
    make_manifest(info, config, variants, {}).dump(root)
    progress.advance(task)
    manifest = make_manifest(info, config, variants, validate(root, settings.plan))
    manifest.dump(root)
    progress.advance(task)
    rows = {name: data.rows(name) for name in data.stages}
    return BuildResult(root, manifest, results, rows, groups)
