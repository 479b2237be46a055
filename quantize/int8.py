"""INT8 variants of the exported stages: static QDQ (calibrated on sampler trajectories) and dynamic.

The recipe (measured on this kind of machine; docs/design.md, "What was measured before building"):

- **Static QDQ, per-channel weights, only MatMul/Gemm** (``QUANT_OPS``). Quantizing onnxruntime's
  default op types (Add, Mul, Softmax, LayerNormalization's neighbours ...) wrecks a transformer; MatMul
  and Gemm carry nearly all the weights and the time. Activations U8 asymmetric, weights S8 symmetric
  per output channel (U8S8: the format MLAS has fast kernels for on x86 with and without VNNI and on
  ARM64 with and without the dot-product instructions), MinMax ranges.
- **Per-node error decides what stays float.** Pass 1 quantizes every MatMul/Gemm; onnxruntime's
  ``qdq_loss_debug`` then gives, per quantized node, the signal-to-quantization-noise ratio (SQNR, dB)
  of its activation input (pre vs post QDQ, on the calibration data) and of its weight. Nodes below
  ``min_sqnr_db`` are excluded and pass 2 quantizes the rest. Both passes' tables go to the report.
- Only nodes with a weight: attention's activation x activation products (``q @ k^T``, ``att @ v``,
  [13 x 32] x [32 x 13] per head) stay float: quantizing them added Quantize/Dequantize pairs that cost
  more than the tiny products save. MatMul/Gemm *outputs* are not quantized
  (``OpTypesToExcludeOutputQuantization``): onnxruntime then fuses DQ -> MatMul into
  ``MatMulIntegerToFloat`` instead of ``QLinearMatMul`` + ``DequantizeLinear``; measured on the tiny
  full-size checkpoint, shard output SQNR 35.3 -> 38.8 dB and the denoiser 0.72 -> 0.61 ms (FP32 1.2 ms).
- Calibration: ``onnxruntime.quantization.quantize_static`` with a ``CalibrationDataReader`` over the
  recorded trajectories. optimum's static path (``ORTQuantizer.fit`` / ``partial_fit``) wants a
  ``datasets.Dataset`` of the *model's* inputs and runs the model itself, so it cannot feed a shard the
  intermediate ``h`` activations that the earlier shards produced along a sampler trajectory.
- **Dynamic INT8** through optimum's ``ORTQuantizer`` with the ``AutoQuantizationConfig.arm64`` preset
  (``is_static=False, per_channel=True, operators_to_quantize=QUANT_OPS``): the preset expresses this
  recipe exactly (U8 activations quantized at run time, S8 symmetric per-channel weights) and the target
  of the bundle is an ARM board. The same sensitive nodes are excluded as in the static variant.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization import qdq_loss_debug as qdq

from musicbox.quantize.export import StageGraph
from musicbox.quantize.shard import read_onnx

log = logging.getLogger(__name__)

QUANT_OPS = ("MatMul", "Gemm")
MIN_SQNR_DB = 25.0
"""A node whose activation input or weight quantizes with less SQNR than this (dB) is kept in float.
8-bit uniform quantization of a well-spread activation gives ~35-45 dB; below 25 dB the range is
dominated by outliers (or values cluster in a few levels) and the node's error shows in the output."""
MAX_STRIDE = 8
"""At most this many calibration batches are held (with every intermediate tensor) before onnxruntime
folds them into the running min/max (``CalibStridedMinMax``). Not ``CalibMaxIntermediateOutputs``: in
onnxruntime 1.31 the MinMax calibrator *drops* the batches collected when that limit is reached instead
of folding them in, so only the last few batches would count."""


class FeedReader(CalibrationDataReader):
    """A ``CalibrationDataReader`` over a list of feed dicts (name -> float32 ``[rows, ...]``); supports
    onnxruntime's strided calibration (``len`` and ``set_range``)."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self.batches = batches
        self._it = iter(batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self.batches[start_index:end_index])


def stride_for(n_batches: int) -> int:
    """The largest divisor of ``n_batches`` up to ``MAX_STRIDE`` (onnxruntime requires a divisor)."""
    return max(d for d in range(1, min(MAX_STRIDE, n_batches) + 1) if n_batches % d == 0)


@dataclass(frozen=True)
class NodeError:
    """Per-node quantization error of one MatMul/Gemm: ``activation`` (its non-constant input),
    ``act_sqnr_db`` (that input pre vs post QDQ), ``weight_sqnr_db`` (None for activation x activation
    products), ``xmodel_sqnr_db`` (the QDQ model's input vs the float model's: error accumulated so far)."""

    node: str
    op: str
    activation: str
    act_sqnr_db: float
    weight_sqnr_db: float | None
    xmodel_sqnr_db: float

    def worst_db(self) -> float:
        return min(self.act_sqnr_db, self.weight_sqnr_db if self.weight_sqnr_db is not None else np.inf)


@dataclass(frozen=True)
class QuantResult:
    """A stage's static INT8 model, the nodes kept float, and the per-node errors of both passes."""

    model: onnx.ModelProto
    excluded: tuple[str, ...]
    first_pass: tuple[NodeError, ...]
    final_pass: tuple[NodeError, ...]
    output_sqnr_db: dict[str, float]


def candidate_nodes(model: onnx.ModelProto, ops: tuple[str, ...]) -> list[onnx.NodeProto]:
    """Nodes of type ``ops`` with a constant (weight) input: activation x activation products
    (attention's ``q @ k^T`` and ``att @ v``) stay float, see the module docstring."""
    weights = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in ops and any(i in weights for i in n.input)]


def _quantize(fp32_path: Path, out: Path, batches, ops, exclude) -> onnx.ModelProto:
    nodes = [n.name for n in candidate_nodes(read_onnx(fp32_path), ops) if n.name not in exclude]
    quantize_static(
        str(fp32_path),
        str(out),
        FeedReader(batches),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(ops),
        per_channel=True,
        reduce_range=False,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_quantize=nodes,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={
            "CalibStridedMinMax": stride_for(len(batches)),
            "WeightSymmetric": True,
            "OpTypesToExcludeOutputQuantization": list(ops),
        },
    )
    return read_onnx(out)


def _activations(model_path: Path, work: Path, batches) -> dict[str, list[np.ndarray]]:
    augmented = work / (model_path.stem + ".debug.onnx")
    qdq.modify_model_output_intermediate_tensors(str(model_path), str(augmented))
    return qdq.collect_activations(str(augmented), FeedReader(batches))


def node_errors(fp32_path: Path, qdq_path: Path, work: Path, batches, ops) -> list[NodeError]:
    """Per-node SQNR of every quantized node of ``qdq_path`` (onnxruntime's qdq_loss_debug)."""
    fp32 = read_onnx(fp32_path)
    inits = {i.name for i in fp32.graph.initializer}
    match = qdq.create_activation_matching(
        _activations(qdq_path, work, batches), _activations(fp32_path, work, batches)
    )
    act_err = qdq.compute_activation_error(match)
    w_err = qdq.compute_weight_error(qdq.create_weight_matching(str(fp32_path), str(qdq_path)))
    errors = []
    for node in candidate_nodes(fp32, ops):
        acts = [i for i in node.input if i not in inits and i in act_err]
        if not acts:
            continue  # kept float
        weights = [w_err[i] for i in node.input if i in w_err]
        worst = min(acts, key=lambda a: act_err[a]["qdq_err"])
        errors.append(
            NodeError(
                node.name,
                node.op_type,
                worst,
                float(act_err[worst]["qdq_err"]),
                float(min(weights)) if weights else None,
                float(act_err[worst].get("xmodel_err", np.inf)),
            )
        )
    return errors


def output_sqnr(fp32_path: Path, int8_path: Path, batches) -> dict[str, float]:
    """SQNR (dB) of each graph output of the INT8 model against the FP32 model on ``batches``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    a = ort.InferenceSession(str(fp32_path), so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(int8_path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in a.get_outputs()]
    ref = [a.run(None, f) for f in batches]
    got = [b.run(None, f) for f in batches]
    return {
        n: qdq.compute_signal_to_quantization_noice_ratio([r[i] for r in ref], [g[i] for g in got])
        for i, n in enumerate(names)
    }


def quantize_stage(
    stage: StageGraph, batches, debug_batches, min_sqnr_db: float = MIN_SQNR_DB
) -> QuantResult:
    """Static QDQ INT8 of one stage in two passes: every candidate node, then without the nodes whose
    per-node SQNR is below ``min_sqnr_db``. ``batches`` calibrate the ranges (all recorded calls);
    ``debug_batches`` (a spread-out subset) measure the per-node and output errors."""
    ops = QUANT_OPS
    with tempfile.TemporaryDirectory(prefix="musicbox-int8-") as tmp:
        work = Path(tmp)
        fp32_path = work / f"{stage.name}.fp32.onnx"
        onnx.save(stage.model, str(fp32_path))
        first_path = work / f"{stage.name}.pass1.onnx"
        model = _quantize(fp32_path, first_path, batches, ops, ())
        first = node_errors(fp32_path, first_path, work, debug_batches, ops)
        excluded = tuple(e.node for e in first if e.worst_db() < min_sqnr_db)
        final, final_path = first, first_path
        if excluded:
            log.info("%s: keeping %d nodes in float: %s", stage.name, len(excluded), ", ".join(excluded))
            final_path = work / f"{stage.name}.pass2.onnx"
            model = _quantize(fp32_path, final_path, batches, ops, excluded)
            final = node_errors(fp32_path, final_path, work, debug_batches, ops)
        sqnr = output_sqnr(fp32_path, final_path, debug_batches)
    return QuantResult(model, excluded, tuple(first), tuple(final), sqnr)


def quantize_dynamic_stage(stage: StageGraph, exclude: tuple[str, ...]) -> onnx.ModelProto:
    """Dynamic INT8 of one stage with optimum's ``ORTQuantizer`` and its ``arm64`` preset."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    config = AutoQuantizationConfig.arm64(
        is_static=False,
        per_channel=True,
        operators_to_quantize=list(QUANT_OPS),
        nodes_to_exclude=list(exclude),
    )
    with tempfile.TemporaryDirectory(prefix="musicbox-dyn-") as tmp:
        work = Path(tmp)
        onnx.save(stage.model, str(work / "model.onnx"))
        quantizer = ORTQuantizer.from_pretrained(work, file_name="model.onnx")
        out = quantizer.quantize(quantization_config=config, save_dir=work / "out")
        return read_onnx(out / "model_quantized.onnx")
