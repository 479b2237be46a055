"""`musicbox data build | stats`: the phrase dataset from the music21 corpus, and its report.

``build`` parses what is not cached yet (in parallel, with a progress bar) and writes
``$MUSICBOX_CACHE/dataset/``; ``stats`` writes a Markdown report with PNG plots about it.
"""

from __future__ import annotations

import os


def register(sub) -> None:
    p = sub.add_parser("data", help="build the phrase dataset from the music21 corpus, or report on it")
    p.add_argument(
        "--cache", default=None, help="cache folder (default $MUSICBOX_CACHE or ~/.cache/musicbox)"
    )
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    b = dsub.add_parser("build", help="parse the corpus (cached per file) and write the dataset")
    b.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="parallel parser processes (default: CPUs)"
    )
    b.add_argument(
        "--limit-per-collection", type=int, default=None, metavar="K", help="at most K pieces per collection"
    )
    b.add_argument(
        "--collections", nargs="+", default=None, metavar="NAME", help="collections (default: all)"
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bar (logs progress instead)")
    b.set_defaults(run=run)
    s = dsub.add_parser("stats", help="write the dataset report (Markdown + PNG plots)")
    s.add_argument("--out", default=None, help="report folder (default <cache>/dataset/report)")
    s.set_defaults(run=run)


def run(args) -> int:
    if args.data_command == "build":
        return _build(args)
    return _stats(args)


def _build(args) -> int:
    from musicbox.errors import DatasetError
    from musicbox.model import corpus, data

    if args.jobs < 1:
        raise DatasetError(f"--jobs {args.jobs}: give at least 1 process")
    if args.limit_per_collection is not None and args.limit_per_collection < 1:
        raise DatasetError(f"--limit-per-collection {args.limit_per_collection}: give at least 1 piece")
    for name in args.collections or ():
        corpus.collection(name)  # fails early with the list of known names
    summary = data.build_dataset(
        cache_dir=args.cache,
        jobs=args.jobs,
        limit_per_collection=args.limit_per_collection,
        collections=args.collections,
        progress=not args.no_progress,
    )
    print(
        f"dataset: {summary.bars} bars in {summary.pieces} pieces from {summary.units} work units "
        f"({summary.units_parsed} parsed, the rest cached) in {summary.seconds:.1f} s -> {summary.path}"
    )
    return 0


def _stats(args) -> int:
    from musicbox.model import data, stats

    out = args.out or data.dataset_dir(args.cache) / "report"
    report = stats.write_report(data.load_dataset(args.cache), data.read_meta(args.cache), out)
    print(f"report: {report}")
    return 0
