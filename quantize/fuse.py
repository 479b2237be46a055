"""Operator fusion of the exported stages, before quantization (the FP32 and INT8 variants share it).

Why: the box runs the denoiser at batch 1 or 2 x 13 tokens, where a shard's time goes as much to its many
small float nodes as to its MatMuls. Measured on the first shipped bundle (``musicbox quantize``,
validation, this 2-core x86 host): the INT8 MatMuls ran 2.9x faster than FP32 but the whole denoiser
only 1.6x, with ~100 nodes per two-block shard (now ~25).

- :func:`fuse` runs onnxruntime's transformer optimizer (``bert`` fusions at ``opt_level=0``: nothing
  hardware-specific is baked in; the device's session optimizes the rest at load): GELU + bias becomes
  ``BiasGelu``. Not ``SkipLayerNormalization``: its CPU kernel made the denoiser slower (same checkpoint,
  batch 2, timed back to back: FP32 1.99 -> 1.79 ms, INT8 dynamic 1.21 -> 0.93 ms per call once it was
  turned off). Its attention fusion matches Hugging Face BERT's graph, not ours.
- :func:`fuse_attention` replaces each attention core of ``nets.SelfAttention`` as exported (Reshape,
  Transpose, Split, Transpose, MatMul, Mul, Softmax, MatMul, Transpose, Reshape, and the qkv bias Add)
  by a ``Split`` into q, k, v and one ``MultiHeadAttention`` (which adds the bias). The qkv and output
  projections stay plain MatMuls, so the MatMul-only static quantization still covers them.

All fused ops are contrib ops of onnxruntime's CPU provider, on x86 and ARM64 alike. The exporter
checks every fused stage against torch (``export.check_stage``).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

MSFT = "com.microsoft"


def fuse(model: onnx.ModelProto, num_heads: int = 0, hidden_size: int = 0) -> onnx.ModelProto:
    """``model`` with GELU / layer-norm fusions and, when ``num_heads`` is given, attention fused."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_attention = False
    options.enable_embed_layer_norm = False
    options.enable_skip_layer_norm = False  # measured slower than LayerNormalization + Add here
    options.enable_bias_skip_layer_norm = False
    optimized = optimize_model(
        model,
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        optimization_options=options,
        opt_level=0,
    )
    if num_heads:
        fuse_attention(optimized, num_heads)
    out = optimized.model
    if any(n.domain == MSFT for n in out.graph.node):
        if not any(o.domain == MSFT for o in out.opset_import):
            out.opset_import.append(helper.make_opsetid(MSFT, 1))
        # ONNX's shape inference stops at contrib ops, and the quantizers need every tensor's type:
        # onnxruntime's symbolic shape inference knows them and records the types in value_info
        out = SymbolicShapeInference.infer_shapes(out, auto_merge=True)
    onnx.checker.check_model(out)
    return out


def fuse_attention(model, num_heads: int) -> int:
    """Fuse every attention core of ``model`` (an onnxruntime ``OnnxModel``) in place; returns how many."""
    fused = 0
    for softmax in model.get_nodes_by_op_type("Softmax"):
        core = _attention_core(model, softmax)
        if core is None:
            continue
        nodes, qkv, bias, out = core
        d = model.get_initializer(bias).dims[0] // 3
        name = model.create_node_name("MultiHeadAttention")
        sizes = model.create_node_name("qkv_sizes")
        model.add_initializer(numpy_helper.from_array(np.array([d, d, d], np.int64), sizes))
        q, k, v = (f"{name}_{x}" for x in "qkv")
        split = helper.make_node("Split", [qkv, sizes], [q, k, v], name=f"{name}_split", axis=-1)
        mha = helper.make_node(
            "MultiHeadAttention",
            [q, k, v, bias],
            [out],
            name=name,
            domain=MSFT,
            num_heads=num_heads,
            scale=1.0 / math.sqrt(d // num_heads),
        )
        model.remove_nodes(nodes)
        model.add_nodes([split, mha])
        fused += 1
    if fused:
        model.prune_graph()
        model.topological_sort()
    return fused


def _attention_core(model, softmax):
    """``(nodes, qkv, bias, out)`` of the attention around ``softmax``, or None if it is not ours:
    ``qkv`` is the projection's MatMul output ``[B, L, 3d]``, ``bias`` its ``[3d]`` initializer, ``out``
    the ``[B, L, d]`` tensor the output projection reads."""
    path = ["Mul", "MatMul", "Split", "Transpose", "Reshape", "Add"]
    scores = model.match_parent_path(softmax, path, [0] * len(path))
    if scores is None:
        return None
    mul, qk, split, heads, reshape, add = scores
    k_t = model.match_parent(qk, "Transpose", 1)
    children = model.get_children(softmax)
    if k_t is None or len(children) != 1 or children[0].op_type != "MatMul":
        return None
    av = children[0]
    q, k, v = split.output
    if (qk.input[0], k_t.input[0], av.input[1]) != (q, k, v):
        return None
    tail = model.match_child_path(av, ["Transpose", "Reshape"])
    bias_index = 1 if model.get_initializer(add.input[1]) is not None else 0
    if tail is None or model.get_initializer(add.input[bias_index]) is None:
        return None
    transpose_out, reshape_out = tail
    nodes = [add, reshape, heads, split, k_t, qk, mul, softmax, av, transpose_out, reshape_out]
    return nodes, add.input[1 - bias_index], add.input[bias_index], reshape_out.output[0]
