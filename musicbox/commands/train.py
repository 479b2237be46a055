"""`musicbox train`: train the autoencoder and the denoiser on the phrase dataset (CPU, resumable)."""

from __future__ import annotations

from pathlib import Path


def register(sub):
    p = sub.add_parser("train", help="train the model on the phrase dataset (workstation; needs [train])")
    p.add_argument("--out", type=Path, default=Path("assets/checkpoint"), help="checkpoint folder to write")
    p.add_argument("--run-dir", type=Path, default=Path("runs/default"), help="resumable state + loss curves")
    p.add_argument("--fresh", action="store_true", help="discard the run folder's saved state first")
    p.add_argument("--cache", type=Path, default=None, help="dataset cache folder (default: $MUSICBOX_CACHE)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ae-steps", type=int, default=None)
    p.add_argument("--dn-steps", type=int, default=None)
    p.add_argument(
        "--autoencoder-from",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="keep this checkpoint's autoencoder and train only the denoiser (same representation)",
    )
    p.add_argument(
        "--denoiser-from",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="start the denoiser from this checkpoint's (a model trained before the meter input goes on)",
    )
    p.add_argument("--dn-lr", type=float, default=None, help="the denoiser's peak learning rate")
    p.add_argument(
        "--dn-notes",
        type=float,
        default=None,
        help="weight of the denoiser's loss in note space (TrainSettings.dn_notes; default 0: flow MSE only)",
    )
    p.add_argument(
        "--fp32",
        action="store_true",
        help="train the denoiser in float32, not under bfloat16 autocast (for a CPU without bf16 instructions)",
    )
    p.add_argument("--quick", action="store_true", help="a tiny model for a few steps (smoke test)")
    p.set_defaults(run=run)


def run(args) -> int:
    import shutil
    from dataclasses import replace

    from musicbox.model.data import load_dataset
    from musicbox.model.styles import MODEL_METERS
    from musicbox.model.train import TrainSettings, quick_settings, train

    settings = TrainSettings(seed=args.seed)
    if args.quick:
        settings = quick_settings(settings)
    if args.ae_steps is not None:
        settings = replace(settings, ae_steps=args.ae_steps)
    if args.dn_steps is not None:
        settings = replace(settings, dn_steps=args.dn_steps)
    if args.autoencoder_from is not None:
        settings = replace(settings, autoencoder_from=str(args.autoencoder_from))
    if args.denoiser_from is not None:
        settings = replace(settings, denoiser_from=str(args.denoiser_from))
    if args.dn_lr is not None:
        settings = replace(settings, dn_lr=args.dn_lr)
    if args.dn_notes is not None:
        settings = replace(settings, dn_notes=args.dn_notes)
    if args.fp32:
        settings = replace(settings, dn_bf16=False)
    if args.fresh and args.run_dir.exists():
        shutil.rmtree(args.run_dir)
    out = train(load_dataset(args.cache).in_meters(MODEL_METERS), settings, args.run_dir, args.out)
    print(f"checkpoint written to {out}; loss curves in {args.run_dir / 'loss.png'}")
    return 0
