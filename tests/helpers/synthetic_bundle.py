"""Real, tiny (or deliberately large) bundles built with ``onnx.helper`` for the runtime's tests.

The graphs follow docs/architecture.md's ONNX contract exactly (names, dtypes, shapes with a symbolic
batch ``B``), so the loader, the conditioning, the sampler and the generator run end to end on them:

- encoder: ``planes [B,6,16,64] -> latent [B,4,32]`` (a linear map and tanh);
- decoder: ``latent [B,4,32] -> probs [B,6,16,64]`` (a linear map and sigmoid);
- denoiser shard 0: the conditioning inputs ``-> h0 [B, L, d]`` (every input feeds ``h0`` linearly, so
  style, attributes and context all change the output), middle shards ``h{k-1} -> h{k}`` (residual tanh
  blocks), the last shard ``h{k-1} -> v [B,4,32]``; a one-shard denoiser maps the inputs to ``v`` directly.
  The hidden state is numbered along the chain because an ONNX graph cannot take and return one name.

``build_bundle(..., hidden=1024, n_shards=8, blocks_per_shard=6)`` makes ~200 MB of denoiser shards for the
memory-budget test. ``variants`` may add ``int8`` (static QDQ, MatMul only, calibrated on random feeds
through the fp32 chain) and ``int8_dynamic`` made with onnxruntime's quantizer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from musicbox.runtime.digest import sha256_file
from musicbox.runtime.manifest import (
    FORMAT_VERSION,
    Arrangement,
    AttrsInfo,
    ControlsInfo,
    ExternalData,
    Manifest,
    ModelInfo,
    MoodInfo,
    Provenance,
    RepresentationInfo,
    SamplerInfo,
    StageFile,
    StyleInfo,
    TempoInfo,
    TensorSpec,
    Variant,
)

OPSET = 17
F, D = 4, 32
LAGS = (2, 1)
"""Context lags of the synthetic model: the two bars before (history 2)."""
CTX, POSITIONS = len(LAGS), 8
PLANES = (6, 16, 64)
STYLE_NAMES = ("chorale", "folk", "quartet", "renaissance", "jig")
METER_NAMES = ("4/4", "3/4", "6/8")
STYLE_METERS = {"folk": ("4/4", "3/4"), "quartet": ("4/4", "3/4", "6/8"), "jig": ("6/8", "4/4")}
"""The synthetic styles' meters (others: 4/4 alone); a jig starts in 6/8."""


def _spec(name: str, *shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["B", *shape])


def _const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


class _Graph:
    """A tiny graph builder: weights are drawn from one rng, nodes appended in order."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.nodes, self.inits, self.n = rng, [], [], 0

    def weight(self, rows: int, cols: int, gain: float = 1.0) -> str:
        w = self.rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(gain / np.sqrt(rows))
        return self.init(w)

    def init(self, array: np.ndarray) -> str:
        name = f"w{len(self.inits)}"
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        self.inits.append(_const(name, array))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        self.n += 1
        out = out or f"t{self.n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def shape(self, *dims: int) -> str:
        return self.init(np.array(dims, dtype=np.int64))

    def model(self, inputs, outputs) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "g", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 9
        return model


def encoder_model(rng: np.random.Generator) -> onnx.ModelProto:
    g = _Graph(rng)
    flat = g.op("Reshape", "planes", g.shape(-1, int(np.prod(PLANES))))
    lat = g.op("Tanh", g.op("MatMul", flat, g.weight(int(np.prod(PLANES)), F * D, gain=4.0)))
    g.op("Reshape", lat, g.shape(-1, F, D), out="latent")
    return g.model([_spec("planes", *PLANES)], [_spec("latent", F, D)])


def decoder_model(rng: np.random.Generator) -> onnx.ModelProto:
    g = _Graph(rng)
    flat = g.op("Reshape", "latent", g.shape(-1, F * D))
    logits = g.op("Add", g.op("MatMul", flat, g.weight(F * D, int(np.prod(PLANES)), gain=3.0)), g.init(-11.0))
    g.op("Reshape", g.op("Sigmoid", logits), g.shape(-1, *PLANES), out="probs")
    return g.model([_spec("latent", F, D)], [_spec("probs", *PLANES)])


def _embed(g: _Graph, n_styles: int, tokens: int, hidden: int, ctx_bars: int = CTX) -> str:
    """Conditioning inputs -> ``[B, tokens, hidden]`` (pre-activation sum of linear maps, then tanh)."""
    width = tokens * hidden
    x = g.op("MatMul", g.op("Reshape", "x", g.shape(-1, F * D)), g.weight(F * D, width))
    s = g.op("MatMul", g.op("Unsqueeze", "sigma", g.init(np.array([1], np.int64))), g.weight(1, width))
    mask = g.op("Unsqueeze", "context_mask", g.init(np.array([2], np.int64)))  # [B, 2, 1]
    ctx = g.op("Mul", g.op("Reshape", "context", g.shape(-1, ctx_bars, F * D)), mask)
    c = g.op("MatMul", g.op("Reshape", ctx, g.shape(-1, ctx_bars * F * D)), g.weight(ctx_bars * F * D, width))
    st = g.op("MatMul", "style_w", g.weight(n_styles + 1, width, gain=2.0))
    a = g.op("MatMul", g.op("Mul", "attrs", "attr_mask"), g.weight(4, width, gain=2.0))
    am = g.op("MatMul", "attr_mask", g.weight(4, width))
    pl = g.op("MatMul", "place", g.weight(POSITIONS, width))
    mt = g.op("MatMul", "meter", g.weight(len(METER_NAMES), width))
    total = g.op("Sum", x, s, c, st, a, am, pl, mt)
    return g.op("Tanh", g.op("Reshape", total, g.shape(-1, tokens, hidden)))


def _blocks(g: _Graph, h: str, n: int, hidden: int) -> str:
    for _ in range(n):
        h = g.op("Add", h, g.op("Tanh", g.op("MatMul", h, g.weight(hidden, hidden))))
    return h


def _head(g: _Graph, h: str, tokens: int, hidden: int) -> None:
    flat = g.op("Reshape", h, g.shape(-1, tokens * hidden))
    g.op("Reshape", g.op("MatMul", flat, g.weight(tokens * hidden, F * D)), g.shape(-1, F, D), out="v")


def denoiser_inputs(n_styles: int, ctx_bars: int = CTX) -> list[onnx.ValueInfoProto]:
    return [
        _spec("x", F, D),
        helper.make_tensor_value_info("sigma", TensorProto.FLOAT, ["B"]),
        _spec("context", ctx_bars * F, D),
        _spec("context_mask", ctx_bars),
        _spec("style_w", n_styles + 1),
        _spec("attrs", 4),
        _spec("attr_mask", 4),
        _spec("place", POSITIONS),
        _spec("meter", len(METER_NAMES)),
    ]


def denoiser_shards(
    rng, n_styles: int, n_shards: int, blocks_per_shard: int, tokens: int, hidden: int, ctx_bars: int = CTX
):
    """The denoiser cut into ``n_shards`` models chained by the names ``h`` and ``v``."""
    models = []
    for k in range(n_shards):
        g = _Graph(rng)
        first, last = k == 0, k == n_shards - 1
        h = _embed(g, n_styles, tokens, hidden, ctx_bars) if first else f"h{k - 1}"
        h = _blocks(g, h, blocks_per_shard, hidden)
        inputs = denoiser_inputs(n_styles, ctx_bars) if first else [_spec(f"h{k - 1}", tokens, hidden)]
        if last:
            _head(g, h, tokens, hidden)
            outputs = [_spec("v", F, D)]
        else:
            g.nodes[-1].output[0] = f"h{k}"
            outputs = [_spec(f"h{k}", tokens, hidden)]
        models.append(g.model(inputs, outputs))
    return models


# ----------------------------------------------------------------------------------------------------
# Files and manifest


def _tensor_specs(values) -> tuple[TensorSpec, ...]:
    out = []
    for v in values:
        dims = tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
        out.append(TensorSpec(v.name, dtype, dims))
    return tuple(out)


def save_stage(model: onnx.ModelProto, root: Path, rel: str, precision: str, external: bool) -> StageFile:
    """Save ``model`` at ``root / rel`` (external weights in ``rel + '.data'`` if asked) and describe it."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = None
    if external:
        onnx.save_model(
            model, path, save_as_external_data=True, location=path.name + ".data", size_threshold=1024
        )
        data = path.with_name(path.name + ".data")
        ext = ExternalData(rel + ".data", sha256_file(data), data.stat().st_size)
    else:
        onnx.save_model(model, path)
    loaded = onnx.load_model(path, load_external_data=False)
    return StageFile(
        rel,
        sha256_file(path),
        path.stat().st_size,
        precision,
        _tensor_specs(loaded.graph.input),
        _tensor_specs(loaded.graph.output),
        ext,
    )


def controls_table(n_styles: int) -> ControlsInfo:
    styles = tuple(
        StyleInfo(
            name=STYLE_NAMES[i % len(STYLE_NAMES)] + ("" if i < len(STYLE_NAMES) else str(i)),
            label=f"Style {i}",
            density={
                m: (4.0 + 2 * i, 8.0 + 2 * i, 14.0 + 2 * i)
                for m in STYLE_METERS.get(STYLE_NAMES[i % len(STYLE_NAMES)], ("4/4",))
            },
            register=(60.0 + i, 67.0 + i, 74.0 + i),
            polyphony=2.0 + 0.5 * i,
            arrangement=Arrangement((0, 48, 32), "none", 0.0, 80),
            meters=STYLE_METERS.get(STYLE_NAMES[i % len(STYLE_NAMES)], ("4/4",)),
        )
        for i in range(n_styles)
    )
    attrs = AttrsInfo(
        ("density", "mode", "register", "polyphony"), (9.0, 0.0, 67.0, 2.5), (4.0, 1.0, 6.0, 1.0)
    )
    return ControlsInfo(attrs, TempoInfo(60.0, 160.0, 100.0), MoodInfo(0.15), styles)


def build_bundle(
    out_dir: str | Path,
    *,
    n_styles: int = 3,
    n_shards: int = 2,
    blocks_per_shard: int = 1,
    tokens: int = 4,
    hidden: int = 32,
    external_data: bool = False,
    variants: tuple[str, ...] = ("fp32",),
    sampler: SamplerInfo | None = None,
    seed: int = 0,
    tonic: int | None = None,
    lags: tuple[int, ...] = LAGS,
) -> Path:
    """Write a complete bundle to ``out_dir`` and return it; ``variants`` from ``fp32``, ``int8``,
    ``int8_dynamic`` (fp32 is always built, as the quantized ones are made from it); ``tonic`` and
    ``lags`` (its ``context_lags``; others than the default with the fp32 variant only) as in
    ``RepresentationInfo``."""
    root = Path(out_dir)
    rng = np.random.default_rng(seed)
    models = {
        "encoder": encoder_model(rng),
        "decoder": decoder_model(rng),
        "denoiser": denoiser_shards(rng, n_styles, n_shards, blocks_per_shard, tokens, hidden, len(lags)),
    }
    built = {"fp32": _save_variant(models, root, "fp32", external_data)}
    if "int8_dynamic" in variants:
        built["int8_dynamic"] = _quantize_variant(models, root, "int8_dynamic", n_styles, external_data)
    if "int8" in variants:
        built["int8"] = _quantize_variant(models, root, "int8", n_styles, external_data)
    if "fp32" not in variants:
        del built["fp32"]
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        model=ModelInfo(
            "synthetic", _count_parameters(models), Provenance("0" * 64, "synthetic", "2026-01-01")
        ),
        representation=RepresentationInfo(
            16, ("melody", "harmony", "bass"), 33, 64, F, D, tuple(lags), POSITIONS, METER_NAMES, tonic
        ),
        sampler=sampler or SamplerInfo("euler", 4, "flow", 1.0, 1.5, 0.5),
        controls=controls_table(n_styles),
        variants=built,
        validation={"synthetic": True},
    )
    manifest.dump(root)
    return root


def _count_parameters(models) -> int:
    flat = [models["encoder"], models["decoder"], *models["denoiser"]]
    return int(sum(np.prod(t.dims) for m in flat for t in m.graph.initializer if len(t.dims) == 2))


def _save_variant(models, root: Path, precision: str, external: bool) -> Variant:
    def save(model, name):
        return save_stage(model, root, f"{precision}/{name}.onnx", precision, external)

    return Variant(
        save(models["encoder"], "encoder"),
        save(models["decoder"], "decoder"),
        tuple(save(m, f"denoiser.{k:02d}") for k, m in enumerate(models["denoiser"])),
    )


def _quantize_variant(models, root: Path, precision: str, n_styles: int, external: bool) -> Variant:
    """Quantize every fp32 stage (MatMul only, the layout quantize/int8.py found exact) into ``precision/``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_dynamic, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self, feeds):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    calib = _calibration_feeds(root, n_styles)
    names = ["encoder", "decoder", *[f"denoiser.{k:02d}" for k in range(len(models["denoiser"]))]]
    files = {}
    for name in names:
        src, dst = root / "fp32" / f"{name}.onnx", root / precision / f"{name}.onnx"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if precision == "int8_dynamic":
            quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
        else:
            quantize_static(src, dst, Reader(calib[name]), op_types_to_quantize=["MatMul"])
        files[name] = save_stage(onnx.load_model(dst), root, f"{precision}/{name}.onnx", precision, external)
    den = tuple(files[n] for n in names[2:])
    return Variant(files["encoder"], files["decoder"], den)


def random_denoiser_feeds(rng: np.random.Generator, n_styles: int, batch: int = 2) -> dict[str, np.ndarray]:
    """Plausible denoiser inputs: noise, a sigma in (0, 1], context with a mask, one-hot style, attrs."""
    style_w = np.zeros((batch, n_styles + 1), np.float32)
    style_w[np.arange(batch), rng.integers(0, n_styles + 1, batch)] = 1.0
    return {
        "x": rng.standard_normal((batch, F, D), dtype=np.float32),
        "sigma": rng.uniform(0.05, 1.0, batch).astype(np.float32),
        "context": rng.standard_normal((batch, CTX * F, D), dtype=np.float32),
        "context_mask": rng.integers(0, 2, (batch, CTX)).astype(np.float32),
        "style_w": style_w,
        "attrs": rng.standard_normal((batch, 4), dtype=np.float32),
        "attr_mask": rng.integers(0, 2, (batch, 4)).astype(np.float32),
        "place": np.eye(POSITIONS, dtype=np.float32)[rng.integers(0, POSITIONS, batch)],
        "meter": np.eye(len(METER_NAMES), dtype=np.float32)[rng.integers(0, len(METER_NAMES), batch)],
    }


def _calibration_feeds(root: Path, n_styles: int, n: int = 16) -> dict[str, list[dict[str, np.ndarray]]]:
    """Inputs of every fp32 stage for ``n`` random batches, the shards' ``h`` from the fp32 chain."""
    import onnxruntime as ort

    rng = np.random.default_rng(123)
    shards = sorted((root / "fp32").glob("denoiser.*.onnx"))
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in shards]
    out = {"encoder": [], "decoder": [], **{p.stem: [] for p in shards}}
    for _ in range(n):
        out["encoder"].append({"planes": (rng.random((2, *PLANES)) < 0.05).astype(np.float32)})
        out["decoder"].append({"latent": rng.uniform(-3, 3, (2, F, D)).astype(np.float32)})
        feeds = random_denoiser_feeds(rng, n_styles)
        for path, sess in zip(shards, sessions, strict=True):
            names = [i.name for i in sess.get_inputs()]
            feeds = {k: feeds[k] for k in names}
            out[path.stem].append(feeds)
            feeds = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    return out
