"""`musicbox distill`: fold a trained checkpoint's guidance rows into one and cut its sampler steps."""

from __future__ import annotations

from pathlib import Path


def register(sub):
    p = sub.add_parser(
        "distill",
        help="distil a checkpoint into a one-row, fewer-step denoiser (workstation; needs [train])",
    )
    p.add_argument("--from", dest="teacher", type=Path, default=Path("assets/checkpoint"), help="the teacher")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write (the student)")
    p.add_argument("--run-dir", type=Path, default=Path("runs/distill"), help="resumable state + loss curve")
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="go on from an earlier student of the same teacher (a distilled checkpoint folder)",
    )
    p.add_argument("--fresh", action="store_true", help="discard the run folder's saved state first")
    p.add_argument("--cache", type=Path, default=None, help="dataset cache folder (default: $MUSICBOX_CACHE)")
    p.add_argument("--steps", type=int, default=None, help="the student's sampler steps (default 4)")
    p.add_argument("--train-steps", type=int, default=None, help="optimizer updates (default 3000)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-4)")
    p.add_argument(
        "--balance",
        type=float,
        default=None,
        help="even out the bars drawn over their mode and onsets within a style and meter (0 off, 1 full)",
    )
    p.add_argument(
        "--mid-mood",
        type=float,
        default=None,
        help="share of samples with their mode input moved toward the mood knob's middle (default 0)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a few updates (smoke test)")
    p.set_defaults(run=run)


def run(args) -> int:
    import shutil
    from dataclasses import replace

    from musicbox.model.data import load_dataset
    from musicbox.model.distill import DistillSettings, distill, quick_settings
    from musicbox.model.styles import MODEL_METERS

    settings = DistillSettings(seed=args.seed)
    if args.quick:
        settings = quick_settings(settings)
    if args.steps is not None:
        settings = replace(settings, steps=args.steps)
    if args.train_steps is not None:
        settings = replace(settings, train_steps=args.train_steps)
    if args.lr is not None:
        settings = replace(settings, lr=args.lr)
    if args.balance is not None:
        settings = replace(settings, balance=args.balance)
    if args.mid_mood is not None:
        settings = replace(settings, p_mid_mood=args.mid_mood)
    if args.fresh and args.run_dir.exists():
        shutil.rmtree(args.run_dir)
    dataset = load_dataset(args.cache).in_meters(MODEL_METERS)
    out = distill(dataset, args.teacher, settings, args.run_dir, args.out, args.init)
    print(f"distilled checkpoint written to {out}; quantize it with `musicbox quantize {out} --out BUNDLE`")
    return 0
