"""`musicbox restyle CHECKPOINT`: write the form tables a retrain would into a checkpoint, weights untouched.

A style's form (its tune forms, cadences, contour and key journeys: ``model/styles.py``) is counted from
the corpus when a model trains and travels in the checkpoint's ``config.json``. This rewrites only the
``form`` of each style the dataset has (matched by name), so a better form reaches a trained model
without training it again; ``musicbox quantize`` then builds the bundle that plays it.
"""

from __future__ import annotations

from pathlib import Path


def register(sub):
    p = sub.add_parser("restyle", help="rewrite a checkpoint's form tables from the dataset (workstation)")
    p.add_argument("checkpoint", type=Path, help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument(
        "--forms",
        choices=("corpus", "hand"),
        default="corpus",
        help="tune forms counted from the corpus's pieces, or each style's one hand-set form "
        "(both with the corpus's key journeys)",
    )
    p.add_argument("--cache", type=Path, default=None, help="dataset cache folder (default: $MUSICBOX_CACHE)")
    p.set_defaults(run=run)


def run(args) -> int:
    import json

    from rich.console import Console

    from musicbox.model.checkpoint import CONFIG, read_config
    from musicbox.model.data import load_dataset
    from musicbox.model.styles import MODEL_METERS, style_tables

    console = Console(stderr=True)
    config = read_config(args.checkpoint)
    dataset = load_dataset(args.cache).in_meters(MODEL_METERS)
    forms = {t["name"]: t["form"] for t in style_tables(dataset, corpus_forms=args.forms == "corpus")}
    styles = config["controls"]["styles"]
    for style in styles:
        style["form"] = forms.get(style["name"], style["form"])
    (args.checkpoint / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    console.print(
        f"{args.checkpoint / CONFIG}: the forms of {sum(s['name'] in forms for s in styles)} styles "
        f"rewritten ({args.forms}); build its bundle with `musicbox quantize {args.checkpoint} --out BUNDLE_DIR`"
    )
    return 0
