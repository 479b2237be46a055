"""`musicbox restyle CHECKPOINT`: write the form tables a retrain would into a checkpoint, weights untouched.

A style's form (its tune forms, cadences, contour and key journeys: ``model/styles.py``) is counted from
the corpus when a model trains and travels in the checkpoint's ``config.json``. This rewrites only the
``form`` of each style the dataset has (matched by name), so a better form reaches a trained model
without training it again; ``musicbox quantize`` then builds the bundle that plays it, or ``--bundle``
rewrites the same tables in a bundle already built from this checkpoint (its manifest's copy of them;
the ONNX files are left as they are).
"""

from __future__ import annotations

from pathlib import Path


def register(sub):
    p = sub.add_parser("restyle", help="rewrite a checkpoint's form tables from the dataset (workstation)")
    p.add_argument("checkpoint", type=Path, help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument(
        "--forms",
        choices=("hand", "corpus"),
        default="hand",
        help="each style's one hand-set form (what `musicbox train` writes), or the tune forms counted "
        "from its corpus pieces; both with the corpus's key journeys",
    )
    p.add_argument(
        "--bundle", type=Path, default=None, help="also rewrite them in this bundle built from the checkpoint"
    )
    p.add_argument("--cache", type=Path, default=None, help="dataset cache folder (default: $MUSICBOX_CACHE)")
    p.set_defaults(run=run)


def run(args) -> int:
    import json

    import msgspec
    from rich.console import Console

    from musicbox.errors import MusicBoxError
    from musicbox.model.checkpoint import CONFIG, WEIGHTS, read_config
    from musicbox.model.data import load_dataset
    from musicbox.model.styles import MODEL_METERS, style_tables
    from musicbox.runtime.digest import sha256_file
    from musicbox.runtime.form import FormSpec
    from musicbox.runtime.manifest import load_manifest, parse_table

    console = Console(stderr=True)
    config = read_config(args.checkpoint)
    if args.bundle is not None:
        built = load_manifest(args.bundle).model.provenance.checkpoint_sha256
        if built != sha256_file(args.checkpoint / WEIGHTS):
            raise MusicBoxError(
                f"{args.bundle}: built from another checkpoint than {args.checkpoint} (its weights' sha256 "
                "differs); build this checkpoint's bundle with `musicbox quantize`"
            )
    dataset = load_dataset(args.cache).in_meters(MODEL_METERS)
    tables = style_tables(dataset, corpus_forms=args.forms == "corpus")
    forms = {t["name"]: msgspec.to_builtins(parse_table(t["form"], FormSpec, "$.form")) for t in tables}
    styles = config["controls"]["styles"]
    for style in styles:
        style["form"] = forms.get(style["name"], style["form"])
    (args.checkpoint / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    done = f"{args.checkpoint / CONFIG}"
    if args.bundle is not None:
        path = args.bundle / "manifest.json"
        manifest = json.loads(path.read_text())
        for style in manifest["controls"]["styles"]:
            style["form"] = forms.get(style["name"], style["form"])
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        load_manifest(args.bundle)  # still a manifest this musicbox reads
        done += f" and {path}"
    console.print(
        f"{done}: the forms of {sum(s['name'] in forms for s in styles)} styles rewritten ({args.forms})"
    )
    if args.bundle is None:
        console.print(f"build its bundle with `musicbox quantize {args.checkpoint} --out BUNDLE_DIR`")
    return 0
