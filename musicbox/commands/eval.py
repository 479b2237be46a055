"""`musicbox eval`: musical, steering and originality evaluation of a bundle vs real music and baselines."""

from __future__ import annotations

from pathlib import Path

from musicbox.precision import PRECISIONS


def register(sub):
    p = sub.add_parser("eval", help="evaluate a bundle against held-out music and baselines (workstation)")
    p.add_argument("--bundle", type=Path, default=Path("assets/bundle"), help="bundle folder")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--out", type=Path, default=Path("reports/eval"), help="report folder")
    p.add_argument("--seeds", type=int, default=3, help="seeds per knob setting")
    p.add_argument("--per-style", type=int, default=60, help="real segments per style")
    p.add_argument("--cache", type=Path, default=None, help="dataset cache folder")
    p.set_defaults(run=run)


def run(args) -> int:
    from rich.console import Console

    from musicbox.model.data import load_dataset
    from musicbox.model.evaluate import evaluate
    from musicbox.model.styles import MODEL_METERS
    from musicbox.runtime.bundle import Bundle

    console = Console(stderr=True)
    bundle = Bundle.open(args.bundle, precision=args.precision)
    dataset = load_dataset(args.cache).in_meters(MODEL_METERS)
    with console.status("evaluating") as status:
        results = evaluate(
            bundle,
            dataset,
            args.out,
            seeds=args.seeds,
            per_style=args.per_style,
            progress=lambda name: status.update(f"evaluating: {name}"),
        )
    console.print(f"report: {args.out / 'report.md'}")
    console.print_json(
        data={
            k: results[k]
            for k in (
                "markov_over_model_distance",
                "style_accuracy",
                "mode_match",
                "energy_density_correlation",
            )
        }
        | {"exact_copies": results["originality"]["exact_copies"]}
        | {
            "meters": {
                name: {k: v for k, v in row.items() if k not in ("styles", "segments", "onset_profile")}
                for name, row in results["meters"].items()
                if isinstance(row, dict)
            }
        }
    )
    return 0
