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
    p.add_argument(
        "--panel-only",
        action="store_true",
        help="only the feature panel (model/panel.py): writes panel.json and panel.md to --out",
    )
    p.add_argument(
        "--forms",
        choices=("corpus", "hand"),
        default=None,
        help="play each style with the form tables a retrain (or `musicbox restyle`) writes from the "
        "dataset, not the bundle's own: the tune forms of its corpus pieces or its hand-set form, each "
        "with the corpus's key journeys (model/styles.py style_tables)",
    )
    p.set_defaults(run=run)


def run_panel(args, bundle, dataset, console) -> int:
    """``--panel-only``: the feature panel alone, generated vs held-out real per style."""
    import json

    import numpy as np

    from musicbox.model.evaluate import PANEL_SEED
    from musicbox.model.panel import panel_evaluation, panel_report_lines

    with console.status("evaluating: feature panel"):
        panel = panel_evaluation(bundle, dataset, args.seeds, np.random.default_rng(PANEL_SEED))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "panel.json").write_text(json.dumps(panel, indent=2))
    (args.out / "panel.md").write_text("\n".join(panel_report_lines(panel)))
    console.print(f"report: {args.out / 'panel.md'}")
    console.print_json(
        data={
            name: {"share_within": row["share_within"], "outside": row["outside"]}
            for name, row in panel["per_style"].items()
        }
    )
    return 0


def run(args) -> int:
    from rich.console import Console

    from musicbox.model.data import load_dataset
    from musicbox.model.evaluate import evaluate
    from musicbox.model.styles import MODEL_METERS
    from musicbox.runtime.bundle import Bundle

    console = Console(stderr=True)
    bundle = Bundle.open(args.bundle, precision=args.precision)
    dataset = load_dataset(args.cache).in_meters(MODEL_METERS)
    if args.forms:
        from musicbox.model.styles import with_forms

        bundle = with_forms(bundle, dataset, corpus_forms=args.forms == "corpus")
    if args.panel_only:
        return run_panel(args, bundle, dataset, console)
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
        | {"panel_share_within": {k: v["share_within"] for k, v in results["panel"]["per_style"].items()}}
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
