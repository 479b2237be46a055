"""`musicbox quantize CHECKPOINT --out BUNDLE_DIR`: checkpoint -> validated FP32 + INT8 ONNX bundle."""

from __future__ import annotations

from pathlib import Path


def register(sub):
    p = sub.add_parser(
        "quantize", help="export a checkpoint to a validated INT8 ONNX bundle (workstation; needs [quantize])"
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint folder (model.safetensors + config.json)")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--shard-mb", type=float, default=4.0, help="FP32 MiB of weights per denoiser shard")
    p.add_argument("--calib-seeds", type=int, default=2, help="noise seeds per knob setting in calibration")
    p.add_argument("--report", type=Path, default=None, help="folder for report.md + PNGs (default: none)")
    p.set_defaults(run=run)


def run(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from musicbox.quantize.bundle import BuildSettings, build_bundle
    from musicbox.quantize.report import write_report

    settings = BuildSettings(shard_mb=args.shard_mb, calib_seeds=args.calib_seeds)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        result = build_bundle(args.checkpoint, args.out, settings, progress)
    v = result.manifest.validation
    console = Console()
    console.print(
        f"bundle written to {result.path}: int8 {v['size_ratio']:.0%} of fp32 bytes, "
        f"denoiser {v['denoiser_speedup']:.2f}x faster, note F1 {v['int8_note_f1']:.3f}, "
        f"latent cosine {v['int8_latent_cosine']:.4f}"
    )
    if args.report is not None:
        console.print(f"report: {write_report(result, args.report, settings.min_sqnr_db)}")
    return 0
