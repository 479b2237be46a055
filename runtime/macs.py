"""Multiply-accumulates (MACs) of ONNX Runtime nodes, counted from a session profile's node shapes.

ONNX Runtime's profile (``SessionOptions.enable_profiling``) lists every node it ran with its op type and
the shapes of its inputs and outputs, after its graph optimizations (fused and quantized ops included),
so the count is of what actually ran, with no ``onnx`` import (the device side never has it):

- matrix products (``MatMul``, ``Gemm``, ``FusedMatMul``, ``MatMulInteger``, ``DynamicQuantizeMatMul``,
  ``QLinearMatMul``, ``MatMulIntegerToFloat``): output elements x K, K = the last axis of input A;
- attention (``MultiHeadAttention``, ``Attention``): Q·Kᵀ and weights·V, 2 x B x L_q x L_kv x hidden,
  with hidden the query's last axis (all heads together) and L_kv the key's length when given.

Everything else (normalization, activations, element-wise) is left out: a few per element, not per
weight. A board's time per bar is then about MACs / its measured GEMM rate (MACs per second).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

MATMULS = (
    "MatMul",
    "Gemm",
    "FusedMatMul",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "QLinearMatMul",
    "MatMulIntegerToFloat",
)
ATTENTION = ("MultiHeadAttention", "Attention")


def _shapes(entries) -> list[list[int]]:
    """``[{"float": [1, 4, 64]}, ...]`` -> ``[[1, 4, 64], ...]``."""
    return [next(iter(e.values())) for e in entries]


def node_macs(op: str, inputs: list[list[int]], outputs: list[list[int]]) -> int:
    """MACs of one node run with these input and output shapes; 0 for ops that are not products."""
    if op in MATMULS:
        return math.prod(outputs[0]) * inputs[0][-1]
    if op in ATTENTION:
        q = inputs[0]
        kv_len = inputs[1][-2] if len(inputs) > 1 and len(inputs[1]) == 3 else q[-2]
        return 2 * math.prod(q[:-1]) * kv_len * q[-1]
    return 0


def profile_macs(path: str | Path) -> Counter:
    """Op type -> MACs summed over every node run in one profile JSON."""
    counts: Counter = Counter()
    for event in json.loads(Path(path).read_text()):
        args = event.get("args", {})
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        op = args.get("op_name", "")
        macs = node_macs(
            op, _shapes(args.get("input_type_shape", [])), _shapes(args.get("output_type_shape", []))
        )
        if macs:
            counts[op] += macs
    return counts


def profile_runs(path: str | Path) -> int:
    """How many times the session that wrote this profile JSON ran (its ``model_run`` events)."""
    return sum(1 for e in json.loads(Path(path).read_text()) if e.get("name") == "model_run")
