"""Checkpoint stages -> ONNX with torch's dynamo exporter (explicit opset, fixed names, dynamic batch).

Stages (names and shapes are docs/architecture.md's ONNX contract; ``B`` is the symbolic batch):

- encoder ``planes [B,6,16,64] -> latent [B,4,64]`` (``autoencoder.encode``: deterministic, scaled);
- decoder ``latent [B,4,64] -> probs [B,6,16,64]`` (``autoencoder.decode``: sigmoid applied);
- denoiser shards (``shard.plan_shards``): shard 0 takes the conditioning inputs ``x, sigma, context,
  context_mask, style_w, attrs, attr_mask, place, meter``; shard k returns ``h{k} [B, L, d]`` and shard k+1
  takes it (an ONNX graph cannot take and return the same name, so the hidden state is numbered along
  the chain, which is how ``runtime/bundle.py`` wires shards: by name); the last shard returns
  ``v [B,4,64]``.

Each stage is then fused (``quantize/fuse.py``: GELU, layer norms, attention) and checked against torch
(:func:`check_stage`).

The exporter's per-node metadata (Python stack traces with this checkout's paths, FX node dumps) is
stripped: it would make the files depend on where the repository lives and doubles their size.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import onnx
import torch
from torch import nn

from musicbox.errors import MusicBoxError
from musicbox.quantize import fuse

if TYPE_CHECKING:
    from musicbox.model.nets import Autoencoder, Denoiser, Embed, Head, MusicModel

log = logging.getLogger(__name__)

OPSET = 18
"""ONNX opset of every exported stage (LayerNormalization needs >= 17; the dynamo exporter >= 18)."""
MAX_BATCH = 1024
"""Upper bound the exporter is told for the symbolic batch ``B`` (the box runs B = 1 or 2)."""
DENOISER_INPUTS = (
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


@dataclass(frozen=True)
class StageGraph:
    """One exported stage: its ``name`` (``encoder``, ``decoder``, ``denoiser.00`` ...) and ONNX model."""

    name: str
    model: onnx.ModelProto

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.model.graph.input)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.model.graph.output)


class Encoder(nn.Module):
    """``planes [B,6,16,64] -> latent [B,4,64]``."""

    def __init__(self, autoencoder: Autoencoder):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, planes):
        return self.autoencoder.encode(planes)


class Decoder(nn.Module):
    """``latent [B,4,64] -> probs [B,6,16,64]``."""

    def __init__(self, autoencoder: Autoencoder):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, latent):
        return self.autoencoder.decode(latent)


class DenoiserShard(nn.Module):
    """Blocks ``[start, stop)`` of the denoiser, with ``embed`` in front when ``start == 0`` and the
    ``head`` behind when ``stop`` is the last block. Inputs: the conditioning (first shard) or ``h``
    ``[B, L, d]``; output: ``h`` or ``v [B, 4, 64]`` (last shard). Use :func:`make_shard`."""

    def __init__(self, denoiser: Denoiser, start: int, stop: int):
        super().__init__()
        self.embed: Embed | None = denoiser.embed if start == 0 else None
        self.blocks = nn.ModuleList(denoiser.blocks[start:stop])
        self.head: Head | None = denoiser.head if stop == len(denoiser.blocks) else None

    def run(self, h):
        for block in self.blocks:
            h = block(h)
        return self.head(h) if self.head is not None else h


class FirstShard(DenoiserShard):
    """Shard 0: the contract's conditioning inputs -> ``h0`` (or ``v`` for a one-shard denoiser)."""

    def forward(self, x, sigma, context, context_mask, style_w, attrs, attr_mask, place, meter):
        assert self.embed is not None  # shard 0 always has the embedding
        return self.run(self.embed(x, sigma, context, context_mask, style_w, attrs, attr_mask, place, meter))


class LaterShard(DenoiserShard):
    """Shard k > 0: ``h{k-1} -> h{k}`` (or ``v`` for the last shard)."""

    def forward(self, h):
        return self.run(h)


def make_shard(denoiser: Denoiser, group: range) -> DenoiserShard:
    """The eval-mode torch module of the shard made of blocks ``group``."""
    cls = FirstShard if group.start == 0 else LaterShard
    return cls(denoiser, group.start, group.stop).eval()


def shard_io(index: int, n_shards: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Input and output names of denoiser shard ``index`` of ``n_shards``."""
    inputs = DENOISER_INPUTS if index == 0 else (f"h{index - 1}",)
    outputs = ("v",) if index == n_shards - 1 else (f"h{index}",)
    return inputs, outputs


def denoiser_example(cfg, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Example conditioning inputs (``DENOISER_INPUTS`` order) of a ``DenoiserConfig``, batch ``batch``."""
    g = torch.Generator().manual_seed(0)
    f, d, k = cfg.frames, cfg.latent_dim, len(cfg.context_lags)
    return (
        torch.randn(batch, f, d, generator=g),
        torch.rand(batch, generator=g),
        torch.randn(batch, k * f, d, generator=g),
        torch.ones(batch, k),
        torch.full((batch, cfg.n_styles + 1), 1.0 / (cfg.n_styles + 1)),
        torch.randn(batch, cfg.n_attrs, generator=g),
        torch.ones(batch, cfg.n_attrs),
        torch.eye(cfg.positions)[torch.arange(batch) % cfg.positions],
        torch.eye(len(cfg.meters))[torch.arange(batch) % len(cfg.meters)],
    )


def export_module(name: str, module: nn.Module, args: tuple, input_names, output_names) -> StageGraph:
    """Export ``module(*args)`` with a symbolic batch dimension ``B`` on every input and output."""
    batch = torch.export.Dim("B", min=1, max=MAX_BATCH)
    dynamic = tuple({0: batch} for _ in input_names)  # positional: the shards' arg names are not "h0"
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module.eval(),
                args,
                dynamo=True,
                opset_version=OPSET,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=dynamic,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; say which stage failed
        raise MusicBoxError(f"ONNX export of stage {name} failed: {exc}") from exc
    assert program is not None  # dynamo=True always returns the program
    model = _clean(program.model_proto, input_names)
    onnx.checker.check_model(model)
    return StageGraph(name, model)


def check_stage(graph: StageGraph, args: tuple, expected: torch.Tensor, tol: float = 1e-4) -> None:
    """Run ``graph`` in onnxruntime on ``args`` and require its output within ``tol`` (max abs error,
    relative to the output's max abs) of torch's ``expected``: fusion must not change the function."""
    import onnxruntime as ort

    session = ort.InferenceSession(graph.model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {name: a.numpy() for name, a in zip(graph.input_names, args, strict=True)}
    got = session.run(None, feeds)[0]
    want = expected.numpy()
    err = float(abs(got - want).max() / max(1e-6, float(abs(want).max())))
    if err > tol:
        raise MusicBoxError(
            f"stage {graph.name}: the fused ONNX graph differs from torch by {err:.2e} (max {tol})"
        )


def _clean(model: onnx.ModelProto, input_names) -> onnx.ModelProto:
    """Strip exporter metadata (paths, stack traces) and name the batch dimension ``B`` everywhere."""
    del model.metadata_props[:]
    model.doc_string = ""
    model.graph.doc_string = ""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in [*model.graph.input, *model.graph.output]:
        dim0 = value.type.tensor_type.shape.dim[0]
        dim0.dim_param = "B"
    del model.graph.value_info[:]
    return model


def export_autoencoder(model: MusicModel) -> tuple[StageGraph, StageGraph]:
    """The encoder and decoder stages of a ``MusicModel``."""
    ae = model.autoencoder
    cfg = ae.cfg
    planes = torch.zeros(2, 2 * cfg.tracks, cfg.steps, cfg.pitches)
    latent = torch.zeros(2, cfg.frames, cfg.latent_dim)
    stages = []
    for name, module, arg, io in (
        ("encoder", Encoder(ae), planes, ("planes", "latent")),
        ("decoder", Decoder(ae), latent, ("latent", "probs")),
    ):
        graph = export_module(name, module, (arg,), io[:1], io[1:])
        graph = StageGraph(name, fuse.fuse(graph.model))
        with torch.no_grad():
            check_stage(graph, (arg,), module.eval()(arg))
        stages.append(graph)
    return stages[0], stages[1]


def export_denoiser(model: MusicModel, groups: list[range]) -> list[StageGraph]:
    """One ``StageGraph`` per block group (``shard.plan_shards``), named ``denoiser.00``, ``.01`` ..."""
    dn = model.denoiser
    args: tuple = denoiser_example(dn.cfg)
    graphs = []
    for i, group in enumerate(groups):
        shard = make_shard(dn, group)
        inputs, outputs = shard_io(i, len(groups))
        graph = export_module(f"denoiser.{i:02d}", shard, args, inputs, outputs)
        graph = StageGraph(graph.name, fuse.fuse(graph.model, dn.cfg.n_head, dn.cfg.d_model))
        with torch.no_grad():
            out = shard(*args)
        check_stage(graph, args, out)
        graphs.append(graph)
        args = (out,)
    return graphs
