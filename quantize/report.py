"""The build report: Markdown + PNG plots of sizes, latencies, per-node quantization error, agreement.

``write_report(result, out_dir)`` writes ``report.md``, ``sizes_latency.png`` (per stage file: bytes and
p50 latency, FP32 / INT8 / dynamic INT8 side by side) and ``node_error.png`` (per quantized node: SQNR
of its activation input and weight, from onnxruntime's ``qdq_loss_debug``, with the keep-float
threshold). Every figure comes from the manifest's ``validation`` and the build's quantization results.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from musicbox.precision import PRECISIONS  # noqa: E402
from musicbox.quantize.bundle import BuildResult  # noqa: E402
from musicbox.runtime.bundle import stage_bytes  # noqa: E402
from musicbox.targets import targets_of  # noqa: E402


def _stage_rows(result: BuildResult) -> list[tuple[str, dict, dict]]:
    """Per stage file name: bytes and latency (p50/p95 ms) per variant."""
    m = result.manifest
    latency = m.validation["latency_ms"]
    rows = []
    for i, stage in enumerate(m.variant("fp32").files()):
        name = stage.file.split("/")[-1]
        sizes = {p: stage_bytes(m.variant(p).files()[i]) for p in PRECISIONS}
        lat = {p: latency[p][name] for p in PRECISIONS}
        rows.append((name, sizes, lat))
    return rows


def plot_sizes_latency(result: BuildResult, path: Path) -> Path:
    rows = _stage_rows(result)
    names = [r[0].removesuffix(".onnx") for r in rows]
    x = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    for j, p in enumerate(PRECISIONS):
        ax1.bar(x + (j - 1) * 0.27, [r[1][p] / 1e6 for r in rows], 0.27, label=p)
        ax2.bar(x + (j - 1) * 0.27, [r[2][p]["p50_ms"] for r in rows], 0.27, label=p)
    for ax, title in ((ax1, "size (MB, model + weights)"), (ax2, "latency p50 (ms, 1 thread, B=2/1)")):
        ax.set_xticks(x, names, rotation=20)
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_node_error(result: BuildResult, path: Path, threshold: float) -> Path:
    errors = [(stage, e) for stage, q in result.quant.items() for e in q.first_pass]
    fig, ax = plt.subplots(figsize=(max(8, 0.25 * len(errors)), 4))
    x = np.arange(len(errors))
    ax.bar(x - 0.2, [min(e.act_sqnr_db, 80) for _, e in errors], 0.4, label="activation SQNR")
    ax.bar(x + 0.2, [e.weight_sqnr_db or 0 for _, e in errors], 0.4, label="weight SQNR")
    ax.plot(x, [min(e.xmodel_sqnr_db, 80) for _, e in errors], "k.", label="vs float model (accumulated)")
    ax.axhline(threshold, color="r", linestyle="--", label=f"keep-float threshold {threshold:g} dB")
    ax.set_xticks(x, [f"{s}:{e.node}" for s, e in errors], rotation=90, fontsize=6)
    ax.set_ylabel("SQNR (dB, capped at 80)")
    ax.set_title("per-node quantization error (pass 1: every MatMul/Gemm/Conv with a weight)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _agreement_md(v: dict) -> list[str]:
    lines = ["| figure | int8 (static QDQ) | int8_dynamic | target |", "|---|---|---|---|"]
    targets = {t.name: str(t) for t in targets_of("quantize")}
    for key in (
        "note_f1",
        "note_f1_free_running",
        "latent_cosine",
        "latent_cosine_min",
        "size_ratio",
        "denoiser_speedup",
        "notes",
    ):
        lines.append(f"| {key} | {v[f'int8_{key}']} | {v[f'int8_dynamic_{key}']} | {targets.get(key, '')} |")
    return lines


def _stages_md(result: BuildResult) -> list[str]:
    lines = [
        "| stage | bytes fp32 | int8 | int8_dynamic | p50/p95 ms fp32 | int8 | int8_dynamic |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, sizes, lat in _stage_rows(result):
        cells = [f"{sizes[p]:,}" for p in PRECISIONS]
        cells += [f"{lat[p]['p50_ms']:.3f} / {lat[p]['p95_ms']:.3f}" for p in PRECISIONS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    d = result.manifest.validation["latency_ms"]
    cells = [f"{d[p]['denoiser']['p50_ms']:.3f} / {d[p]['denoiser']['p95_ms']:.3f}" for p in PRECISIONS]
    bytes_ = result.manifest.validation["bytes"]
    lines.append(
        "| **all** | "
        + " | ".join(f"{bytes_[p]:,}" for p in PRECISIONS)
        + " | "
        + " | ".join(cells)
        + " (denoiser) |"
    )
    return lines


def _nodes_md(result: BuildResult) -> list[str]:
    lines = [
        "| stage | node | op | activation | act SQNR dB | weight SQNR dB | vs float dB | kept float |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stage, q in result.quant.items():
        for e in q.first_pass:
            w = f"{e.weight_sqnr_db:.1f}" if e.weight_sqnr_db is not None else "-"
            kept = "yes" if e.node in q.excluded else ""
            lines.append(
                f"| {stage} | {e.node} | {e.op} | {e.activation} | {e.act_sqnr_db:.1f} | {w} | "
                f"{e.xmodel_sqnr_db:.1f} | {kept} |"
            )
    return lines


def write_report(result: BuildResult, out_dir, threshold: float) -> Path:
    """Write ``report.md`` and its two PNGs into ``out_dir``; returns the Markdown file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_sizes_latency(result, out / "sizes_latency.png")
    plot_node_error(result, out / "node_error.png", threshold)
    m, v = result.manifest, result.manifest.validation
    outputs = [
        f"{s}: " + ", ".join(f"{k} {db:.1f} dB" for k, db in q.output_sqnr_db.items())
        for s, q in result.quant.items()
    ]
    lines = [
        f"# Bundle report: {m.model.name}",
        "",
        f"Checkpoint sha256 `{m.model.provenance.checkpoint_sha256}`, {m.model.parameters:,} parameters; "
        f"denoiser in {len(result.shards)} shard(s): "
        + ", ".join(f"blocks {g.start}..{g.stop - 1}" for g in result.shards)
        + ".",
        f"Calibration rows (batch rows recorded along sampler trajectories): {result.calibration_rows}.",
        "",
        "## Agreement with FP32 (runtime Bundle + Generator, fixed seeds)",
        "",
        *_agreement_md(v),
        "",
        f"Plan: {v['plan']}. Per-bar figures compare both generators from the same context each bar.",
        "",
        "## Sizes and latency per stage (side by side, one run, 1 thread)",
        "",
        *_stages_md(result),
        "",
        "![sizes and latency](sizes_latency.png)",
        "",
        "## Per-node quantization error (onnxruntime qdq_loss_debug)",
        "",
        f"Nodes below {threshold:g} dB stay float. Stage outputs after the final pass: "
        + "; ".join(outputs)
        + ".",
        "",
        *_nodes_md(result),
        "",
        "![per-node error](node_error.png)",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
