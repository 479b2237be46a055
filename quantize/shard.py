"""Cut the denoiser into block-group shards by size, and write ONNX files with memory-mappable weights.

Sharding: the device loads shards one at a time under a memory budget (runtime/bundle.py, streaming
mode), so a shard's size is what matters. ``plan_shards`` groups consecutive transformer blocks greedily
so that every shard's FP32 weights (the embedding counted with the first shard, the head with the last)
stay within ``shard_mb`` MiB; a single block larger than the budget gets a shard of its own.

External weights: ``write_onnx`` moves every initializer of at least ``EXTERNAL_MIN_BYTES`` into
``<file>.data`` at offsets aligned to ``PAGE`` bytes, so onnxruntime can ``mmap`` each tensor straight
from the file (the runtime prepacks those weights; see runtime/bundle.py's measurements). The layout is
a pure function of the model, so the same model gives byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import onnx
from onnx import external_data_helper, numpy_helper
from torch import nn

from musicbox.errors import MusicBoxError

if TYPE_CHECKING:
    from musicbox.model.nets import Denoiser

PAGE = 4096
"""Alignment of every tensor in an external-data file (bytes): the page size of ARM64 Linux and x86."""
EXTERNAL_MIN_BYTES = 1024
"""Initializers at least this large (bytes) go to the ``.onnx.data`` file; small ones stay inline."""
MIB = 1024 * 1024


def module_bytes(module: nn.Module) -> int:
    """FP32 bytes of a module's parameters and buffers."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * 4 for t in tensors)


def plan_shards(denoiser: Denoiser, shard_mb: float) -> list[range]:
    """Block index ranges, one per shard, each within ``shard_mb`` MiB of FP32 weights where possible.

    ``denoiser`` has ``embed``, ``blocks`` (ModuleList) and ``head``; the embedding's bytes count
    against the first shard and the head's against the last.
    """
    if shard_mb <= 0:
        raise MusicBoxError(f"--shard-mb {shard_mb}: must be > 0 (MiB of FP32 weights per shard)")
    budget = shard_mb * MIB
    sizes = [module_bytes(b) for b in denoiser.blocks]
    sizes[0] += module_bytes(denoiser.embed)
    sizes[-1] += module_bytes(denoiser.head)
    groups, start, used = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and used + size > budget:
            groups.append(range(start, i))
            start, used = i, 0
        used += size
    groups.append(range(start, len(sizes)))
    return groups


def write_onnx(model: onnx.ModelProto, path: Path, external: bool = True) -> tuple[Path, Path | None]:
    """Write ``model`` to ``path``; with ``external`` its large initializers go to ``path + '.data'``,
    each at a ``PAGE``-aligned offset. Returns ``(onnx_file, data_file or None)``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())  # the caller's copy stays inline
    path.parent.mkdir(parents=True, exist_ok=True)
    data_path = path.with_name(path.name + ".data")
    data_path.unlink(missing_ok=True)
    blob = bytearray()
    if external:
        for tensor in model.graph.initializer:
            if not tensor.HasField("raw_data"):  # typed fields (float_data ...) -> raw bytes
                tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
            if len(tensor.raw_data) < EXTERNAL_MIN_BYTES:
                continue
            blob.extend(b"\0" * (-len(blob) % PAGE))
            offset = len(blob)
            blob.extend(tensor.raw_data)
            external_data_helper.set_external_data(tensor, data_path.name, offset, len(tensor.raw_data))
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
    path.write_bytes(model.SerializeToString(deterministic=True))
    if not blob:
        return path, None
    data_path.write_bytes(bytes(blob))
    return path, data_path


def read_onnx(path: Path) -> onnx.ModelProto:
    """Load an ONNX file with its external weights inline."""
    return onnx.load(str(path), load_external_data=True)
