"""The quantize tool on a tiny full-size checkpoint: bundle, manifest, hashes, shard chain, INT8 figures,
determinism. One bundle is built per module (tens of seconds), a second one for the determinism test."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from musicbox.errors import BundleError, ManifestError
from musicbox.model.checkpoint import load_checkpoint
from musicbox.precision import PRECISIONS
from musicbox.quantize.bundle import BuildSettings, build_bundle
from musicbox.quantize.calibrate import CalibrationGrid
from musicbox.quantize.export import DENOISER_INPUTS
from musicbox.quantize.validate import LatentTap, ValidationPlan, denoiser_feeds
from musicbox.runtime.bundle import Bundle
from musicbox.runtime.manifest import load_manifest
from tests.helpers.tiny_model import tiny_checkpoint

GRID = CalibrationGrid(styles=(0.0, 0.5, 4.0), tempos=(60.0, 160.0), moods=(-1.0, 1.0), seeds=(0,), bars=2)
SETTINGS = BuildSettings(shard_mb=4.0, grid=GRID, plan=ValidationPlan(seeds=(0,), bars=3, repeats=20))
TIMING_KEYS = ("latency_ms", "denoiser_speedup", "int8_denoiser_speedup", "int8_dynamic_denoiser_speedup")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), full_size=True)


@pytest.fixture(scope="module")
def built(checkpoint, tmp_path_factory):
    return build_bundle(checkpoint, tmp_path_factory.mktemp("bundle") / "b", SETTINGS)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bundle_layout_and_manifest_validate_with_the_runtime(built):
    root = built.path
    manifest = load_manifest(root)
    assert set(manifest.variants) == set(PRECISIONS)
    assert len(manifest.variants["fp32"].denoiser) == len(built.shards) >= 2
    for precision in PRECISIONS:
        variant = manifest.variants[precision]
        assert all(f.file.startswith(f"{precision}/") and f.precision == precision for f in variant.files())
        with Bundle.open(root, precision=precision) as bundle:
            assert bundle.precision == precision
    first = manifest.variants["fp32"].denoiser[0]
    assert first.input_names == (
        "x",
        "sigma",
        "context",
        "context_mask",
        "style_w",
        "attrs",
        "attr_mask",
        "place",
        "meter",
    )
    assert first.outputs[0].shape[0] == "B"
    assert manifest.variants["int8"].denoiser[-1].output_names == ("v",)


def test_hashes_and_sizes_match_the_files(built, tmp_path):
    root = built.path
    for variant in built.manifest.variants.values():
        for stage in variant.files():
            assert _sha(root / stage.file) == stage.sha256
            assert (root / stage.file).stat().st_size == stage.bytes
            ext = stage.external_data
            assert ext is not None and _sha(root / ext.file) == ext.sha256
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    data = copy / built.manifest.variants["int8"].denoiser[0].external_data.file
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="sha256"):
        Bundle.open(copy, precision="int8")


def test_unknown_manifest_field_is_an_error(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built.path, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["sampler"]["temperature"] = 1.0
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="temperature"):
        load_manifest(copy)


def test_shards_chain_to_the_unsharded_torch_model(built, checkpoint):
    model, _ = load_checkpoint(checkpoint)
    feeds = denoiser_feeds(built.manifest, seed=3)
    with torch.no_grad():
        expected = model.denoiser(*(torch.from_numpy(feeds[k]) for k in DENOISER_INPUTS)).numpy()
        probs = model.autoencoder.decode(torch.from_numpy(feeds["x"])).numpy()
    with Bundle.open(built.path, precision="fp32") as bundle:
        np.testing.assert_allclose(bundle.run_denoiser(feeds), expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bundle.decode(feeds["x"]), probs, atol=1e-5)


def test_calibration_records_what_the_runtime_generator_feeds(built, checkpoint):
    """Calibration runs the runtime's Generator on the torch stages: the latents it records are the ones
    the same Generator samples from the exported FP32 bundle (up to torch vs ONNX rounding)."""
    from musicbox.quantize import calibrate, tables
    from musicbox.runtime.controls import Controls
    from musicbox.runtime.generator import Generator

    model, config = load_checkpoint(checkpoint)
    grid = CalibrationGrid(styles=(1.5,), tempos=(140.0,), moods=(0.5,), seeds=(7,), bars=3)
    data = calibrate.record(model, built.shards, tables.read_tables(config), grid)
    assert [len(data.stages[s]) for s in ("decoder", "encoder")] == [3, 3]
    assert len(data.stages["denoiser.00"]) == 3 * built.manifest.sampler.steps
    with Bundle.open(built.path, precision="fp32") as bundle:
        tap = LatentTap(bundle)
        generator = Generator(tap, seed=7)
        rolls = [generator.next_bar(Controls(1.5, 140.0, 0.5)) for _ in range(3)]
    recorded = np.concatenate([c["latent"] for c in data.stages["decoder"]])
    np.testing.assert_allclose(recorded, np.concatenate(tap.latents), atol=1e-4)
    assert sum(len(bar.notes) for bar in rolls) > 0


def test_checkpoint_tables_are_read_strictly(checkpoint):
    from musicbox.quantize import tables

    _, config = load_checkpoint(checkpoint)
    assert tables.read_tables(config).representation.latent_frames == 4
    config["sampler"]["steps"] = "8"
    with pytest.raises(ManifestError, match=r"checkpoint config.json: \$.sampler.steps is '8' \(str\)"):
        tables.read_tables(config)


def test_stages_are_fused_before_quantization(built):
    import onnx

    def ops(precision, stage):
        path = built.path / precision / f"{stage}.onnx"
        return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}

    for precision in PRECISIONS:
        for i in range(len(built.shards)):
            found = ops(precision, f"denoiser.{i:02d}")
            assert {"MultiHeadAttention", "BiasGelu", "LayerNormalization"} <= found, (precision, i)
            assert not {"Softmax", "Erf"} & found, (precision, i)  # nothing left unfused
        assert "BiasGelu" in ops(precision, "decoder")
    assert "MatMulInteger" in ops("int8_dynamic", "denoiser.01")  # the projections stay quantized
    assert "QuantizeLinear" in ops("int8", "denoiser.01")


def test_int8_agreement_figures(built):
    v = built.manifest.validation
    for p in ("int8", "int8_dynamic"):
        assert v[f"{p}_note_f1"] >= 0.9
        assert v[f"{p}_latent_cosine"] >= 0.99
        assert v[f"{p}_size_ratio"] <= 0.30
        assert v[f"{p}_denoiser_speedup"] > 0
        assert v[f"{p}_notes"][0] > 0  # the comparison is over real notes, not two silences
    for stage, lat in v["latency_ms"]["int8"].items():
        assert lat["p50_ms"] <= lat["p95_ms"], stage
    assert all(q.first_pass for q in built.quant.values())  # per-node errors were measured


def test_same_checkpoint_gives_byte_identical_files(built, checkpoint, tmp_path):
    again = build_bundle(checkpoint, tmp_path / "again", SETTINGS)
    files = sorted(p.relative_to(built.path) for p in built.path.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again.path) for p in again.path.rglob("*") if p.is_file())
    for rel in files:
        if rel.name != "manifest.json":
            assert _sha(built.path / rel) == _sha(again.path / rel), rel
    a, b = (json.loads((r / "manifest.json").read_text()) for r in (built.path, again.path))
    for m in (a, b):
        for key in TIMING_KEYS:  # wall-clock measurements: the only difference
            m["validation"].pop(key)
    assert a == b


def test_cli_parses_quantize_arguments():
    from musicbox.cli import build_parser

    args = build_parser().parse_args(
        ["quantize", "ck", "--out", "b", "--shard-mb", "2", "--calib-seeds", "3"]
    )
    assert (args.checkpoint, args.out, args.shard_mb, args.calib_seeds) == (Path("ck"), Path("b"), 2.0, 3)
