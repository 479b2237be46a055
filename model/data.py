"""The phrase dataset: build it from the music21 corpus (cached, in parallel) and load it.

``musicbox data build`` parses the corpus collections of ``model/corpus.py`` (where every musical decision
is documented: meters, pickups, ties, off-grid and grace notes, repeats, tracks, pitch range, styles) and
writes one table with a row per 16-step bar. :func:`load_dataset` reads it back in a few seconds.

Cache layout (``$MUSICBOX_CACHE``, default ``~/.cache/musicbox``)::

    dataset/
      units/music21-<version>-builder-<n>/<key>.npz   one per work unit (a file or 60 ABC tunes):
                                                       its rolls and a JSON sidecar (pieces, counters)
      dataset.npz                                      the table (compressed numpy arrays)
      dataset.json                                     names, provenance, counters per collection
      report/                                          ``musicbox data stats``

A unit's cache key holds the music21 version, :data:`corpus.BUILDER_VERSION`, the file's sha1 and the
tune chunk, so a rebuild parses only what changed; labels (``attrs``, ``tonic``, ``split``) are computed
at assembly from the cached rolls, so changing them needs no parse.

Labels
------
- ``attrs`` = ``features.bar_attrs(rolls of the piece)`` (density, mode, register, polyphony), computed per
  piece so the 5-bar key window sees the neighbouring bars; ``tonic`` from the same window
  (``features.windowed_key``).
- ``split``: by source work (all runs ``name@k`` of one score share it), from the sha1 of its name:
  80 % train, 10 % validation, 10 % test. Deterministic, independent of what else is built.
- ``meter``: the source time signature of the bar (index into ``meter_names``); ``bar_meter``: the
  dataset meter of the bar (index into ``corpus.METERS``: 4/4, 3/4, 6/8), which sets how many of its
  16 steps it uses (16, 12, 12).
- ``place``: the bar's position in its 8-bar section, counted from the first full bar
  (``form.section_positions``: an upbeat bar is the last bar of the section before). Measured on 300
  pieces a style, cadences (tonic bass under a held melody note) then peak at the phrase ends, positions
  3 and 7 (chorale 0.22 / 0.21 of downbeats against 0.11-0.13 elsewhere, folk 0.26 / 0.33, celtic 0.077
  at 7), where counting from bar 0 puts them on the phrase starts of the ~70 % of chorale, folk and
  celtic pieces that begin with an upbeat.
- ``repeats``: how many bars back the nearest earlier bar this bar nearly repeats is (``form.repeat_lags``,
  within 16 bars), 0 for none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from musicbox.errors import DatasetError
from musicbox.model import form
from musicbox.runtime import features

log = logging.getLogger(__name__)

DATASET_FORMAT = 3
"""Version of dataset.npz/dataset.json's layout; bump when fields change."""

SPLITS = ("train", "validation", "test")
SPLIT_PERCENT = (80, 10, 10)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$MUSICBOX_CACHE``, else ``~/.cache/musicbox``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("MUSICBOX_CACHE") or Path.home() / ".cache" / "musicbox")


def dataset_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of the dataset inside the cache (``<cache>/dataset``)."""
    return cache_root(cache_dir) / "dataset"


@dataclass(frozen=True)
class Dataset:
    """One row per 16-step bar; bars of a piece are consecutive rows in order (N rows).

    rolls: uint8 ``[N, 3, 16, 64]`` OFF/HELD/ONSET (``runtime/pianoroll.py``).
    piece: int32 ``[N]`` index into ``piece_names``.
    bar: int32 ``[N]`` bar index within its piece, 0..n-1 without gaps.
    style: int8 ``[N]`` index into ``style_names``.
    split: int8 ``[N]`` 0 train, 1 validation, 2 test (by source work).
    attrs: float32 ``[N, 4]`` raw ``features.bar_attrs`` in ``features.ATTRS`` order.
    tonic: int8 ``[N]`` windowed key tonic, pitch class 0..11.
    melody_only: bool ``[N]`` the piece has one part (harmony and bass empty by source).
    meter: int8 ``[N]`` index into ``meter_names`` (source time signature).
    bar_meter: int8 ``[N]`` index into ``bar_meter_names`` (the dataset meter: 4/4, 3/4, 6/8).
    place: int8 ``[N]`` position of the bar in its 8-bar section, pickup-aligned (0..7).
    repeats: int8 ``[N]`` bars back to the earlier bar it nearly repeats (1..16), 0 for none.
    style_names, piece_names, meter_names, bar_meter_names: tuples of str.
    builder: the :func:`builder_key` it was built with ("" for a dataset made in memory).
    """

    rolls: np.ndarray
    piece: np.ndarray
    bar: np.ndarray
    style: np.ndarray
    split: np.ndarray
    attrs: np.ndarray
    tonic: np.ndarray
    melody_only: np.ndarray
    meter: np.ndarray
    bar_meter: np.ndarray
    place: np.ndarray
    repeats: np.ndarray
    style_names: tuple[str, ...]
    piece_names: tuple[str, ...]
    meter_names: tuple[str, ...]
    bar_meter_names: tuple[str, ...]
    builder: str = ""

    def __len__(self) -> int:
        return len(self.rolls)

    def in_meters(self, names: tuple[str, ...]) -> Dataset:
        """The pieces whose bars are in one of the meters ``names`` (``bar_meter_names``); a piece is in
        one meter, so its rows stay whole and consecutive."""
        keep = np.isin(self.bar_meter, [self.bar_meter_names.index(n) for n in names])
        arrays = {k: getattr(self, k)[keep] for k in _ARRAYS}
        return replace(self, **arrays)

    def piece_starts(self) -> np.ndarray:
        """Row index of each piece's first bar, int64 ``[n_pieces]`` (rows of a piece are consecutive)."""
        return np.r_[0, np.nonzero(np.diff(self.piece))[0] + 1]

    def phrase_starts(self, length: int = 3, split: int | None = None) -> np.ndarray:
        """Row indices ``i`` where rows ``i .. i+length-1`` are consecutive bars of one piece.

        split: keep only starts of that split (0 train, 1 validation, 2 test); None for all.
        Returns int64 ``[n_phrases]``.
        """
        n = len(self) - length + 1
        if n <= 0:
            return np.zeros(0, dtype=np.int64)
        ok = (self.piece[length - 1 :] == self.piece[:n]) & (
            self.bar[length - 1 :] - self.bar[:n] == length - 1
        )
        if split is not None:
            ok &= self.split[:n] == split
        return np.nonzero(ok)[0]


_ARRAYS = (
    "rolls",
    "piece",
    "bar",
    "style",
    "split",
    "attrs",
    "tonic",
    "melody_only",
    "meter",
    "bar_meter",
    "place",
    "repeats",
)


def load_dataset(cache_dir: str | os.PathLike | None = None) -> Dataset:
    """Load the dataset built by ``musicbox data build`` from ``<cache>/dataset``.

    Raises :class:`DatasetError` if it is missing, incomplete or of another format version.
    """
    folder = dataset_dir(cache_dir)
    meta = read_meta(cache_dir)
    try:
        with np.load(folder / "dataset.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in _ARRAYS}
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(
            f"{folder / 'dataset.npz'} is unreadable or incomplete ({exc}); rebuild it with `musicbox data build`"
        ) from exc
    return Dataset(
        **arrays,
        style_names=tuple(meta["style_names"]),
        piece_names=tuple(meta["piece_names"]),
        meter_names=tuple(meta["meter_names"]),
        bar_meter_names=tuple(meta["bar_meter_names"]),
        builder=meta["builder"],
    )


def read_meta(cache_dir: str | os.PathLike | None = None) -> dict:
    """The dataset's ``dataset.json`` (names, provenance, counters); :class:`DatasetError` if absent/stale."""
    path = dataset_dir(cache_dir) / "dataset.json"
    if not path.is_file():
        raise DatasetError(
            f"no dataset at {path.parent} (set MUSICBOX_CACHE or pass cache_dir to use another cache); "
            "build it with `musicbox data build`"
        )
    meta = json.loads(path.read_text())
    if meta.get("format") != DATASET_FORMAT:
        raise DatasetError(
            f"{path} has format {meta.get('format')}, this musicbox reads format {DATASET_FORMAT}; "
            "rebuild it with `musicbox data build`"
        )
    return meta


def split_of(work: str) -> int:
    """Split of a source work (0 train, 1 validation, 2 test): a fixed function of its name."""
    h = int(hashlib.sha1(work.encode()).hexdigest()[:8], 16) % 100
    return 0 if h < SPLIT_PERCENT[0] else 1 if h < SPLIT_PERCENT[0] + SPLIT_PERCENT[1] else 2


# --------------------------------------------------------------------------------------------------
# Building


@dataclass(frozen=True)
class BuildSummary:
    """What a build did: bars and pieces written, units parsed vs taken from the cache, seconds."""

    bars: int
    pieces: int
    units: int
    units_parsed: int
    seconds: float
    path: Path


def builder_key() -> str:
    """``music21-<version>-builder-<n>``: the part of every cache key that the code decides."""
    from musicbox.model import corpus

    return f"music21-{corpus.music21_version()}-builder-{corpus.BUILDER_VERSION}"


def build_dataset(
    cache_dir: str | os.PathLike | None = None,
    jobs: int | None = None,
    limit_per_collection: int | None = None,
    collections: list[str] | None = None,
    progress: bool = True,
) -> BuildSummary:
    """Parse what is not cached yet (``jobs`` processes, default all CPUs), then write the table.

    limit_per_collection: at most this many pieces (files or ABC tunes) per collection.
    collections: names from ``corpus.COLLECTIONS`` (default all).
    """
    from musicbox.model import corpus

    t0 = time.monotonic()
    units = corpus.discover(collections, limit_per_collection)
    if not units:
        raise DatasetError("no corpus files matched; check --collections and --limit-per-collection")
    unit_dir = dataset_dir(cache_dir) / "units" / builder_key()
    unit_dir.mkdir(parents=True, exist_ok=True)
    todo = [u for u in units if not (unit_dir / f"{u.key(builder_key())}.npz").is_file()]
    log.info("%d work units, %d cached, %d to parse", len(units), len(units) - len(todo), len(todo))
    _parse_all(todo, unit_dir, jobs or os.cpu_count() or 1, progress)
    bars, pieces = assemble(units, unit_dir, cache_dir, limit_per_collection)
    _prune_old_units(unit_dir)
    summary = BuildSummary(bars, pieces, len(units), len(todo), time.monotonic() - t0, dataset_dir(cache_dir))
    log.info("dataset: %d bars in %d pieces, %.1f s, at %s", bars, pieces, summary.seconds, summary.path)
    return summary


def _parse_all(todo: list, unit_dir: Path, jobs: int, progress: bool) -> None:
    """Parse and cache every unit of ``todo``, biggest first, with a progress bar."""
    if not todo:
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    todo = sorted(todo, key=lambda u: -u.cost)
    jobs = max(1, min(jobs, len(todo)))
    columns: tuple[ProgressColumn, ...] = (
        TextColumn("parsing corpus"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[bars]} bars"),
    )
    columns += (TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("parse", total=len(todo), bars=0)
        bars, done, next_log = 0, 0, time.monotonic() + 30
        for n_bars in _run_units(todo, unit_dir, jobs):
            bars, done = bars + n_bars, done + 1
            bar.update(task, advance=1, bars=bars)
            if time.monotonic() > next_log or done == len(todo):
                log.info("parsed %d/%d units, %d bars", done, len(todo), bars)
                next_log = time.monotonic() + 30


def _run_units(todo: list, unit_dir: Path, jobs: int):
    """Yield the bar count of each unit as it finishes (in a process pool when ``jobs`` > 1)."""
    args = [(u, str(unit_dir)) for u in todo]
    if jobs == 1:
        yield from map(_parse_and_store, args)
        return
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(jobs, maxtasksperchild=200) as pool:
        yield from pool.imap_unordered(_parse_and_store, args, chunksize=1)


def _parse_and_store(arg) -> int:
    """Worker: parse one unit and write its cache file atomically; returns its bar count."""
    from musicbox.model import corpus

    unit, unit_dir = arg
    result = corpus.parse_unit(unit)
    pieces = [
        {
            "name": p.name,
            "work": p.work,
            "bars": len(p.rolls),
            "meters": p.meters,
            "meter": p.meter,
            "melody_only": p.melody_only,
        }
        for p in result.pieces
    ]
    meta = {"unit": unit.path, "tunes": list(unit.tunes), "pieces": pieces, "counts": dict(result.counts)}
    rep_shape = (0, 3, 16, 64)
    rolls = (
        np.concatenate([p.rolls for p in result.pieces]) if result.pieces else np.zeros(rep_shape, np.uint8)
    )
    path = Path(unit_dir) / f"{unit.key(builder_key())}.npz"
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, rolls=rolls, meta=np.array(json.dumps(meta)))
    os.replace(tmp, path)
    return len(rolls)


def _read_unit(path: Path) -> tuple[np.ndarray, dict]:
    with np.load(path, allow_pickle=False) as z:
        return z["rolls"], json.loads(str(z["meta"]))


def assemble(units: list, unit_dir: Path, cache_dir, limit: int | None) -> tuple[int, int]:
    """Join the cached units (in discovery order) into dataset.npz + dataset.json; returns (bars, pieces)."""
    from musicbox.model import corpus

    style_names = tuple(corpus.STYLES)
    table = _Table(tuple(corpus.METERS))
    counts: dict[str, Counter] = {}
    for u in units:
        rolls, meta = _read_unit(unit_dir / f"{u.key(builder_key())}.npz")
        counts.setdefault(u.collection, Counter()).update(meta["counts"])
        style = style_names.index(corpus.collection(u.collection).style)
        start = 0
        for p in meta["pieces"]:
            table.add(rolls[start : start + p["bars"]], p, style)
            start += p["bars"]
    if not table.rolls:
        raise DatasetError("the corpus gave no usable bars; see the counters in the build log")
    arrays: dict[str, Any] = table.arrays()  # Any: savez_compressed types its **kwds loosely
    folder = dataset_dir(cache_dir)
    tmp = folder / "dataset.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, folder / "dataset.npz")
    meta = {
        "format": DATASET_FORMAT,
        "builder": builder_key(),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "limit_per_collection": limit,
        "collections": sorted(counts),
        "style_names": list(style_names),
        "style_labels": [corpus.STYLES[s] for s in style_names],
        "piece_names": table.names,
        "meter_names": table.meter_names,
        "bar_meter_names": list(corpus.METERS),
        "counts": {k: dict(sorted(v.items())) for k, v in counts.items()},
    }
    (folder / "dataset.json").write_text(json.dumps(meta, indent=1))
    return len(arrays["rolls"]), len(table.names)


class _Table:
    """Accumulates pieces into the dataset's columns."""

    def __init__(self, bar_meters: tuple[str, ...]) -> None:
        self.bar_meters = bar_meters
        self.rolls: list[np.ndarray] = []
        self.cols: dict[str, list[np.ndarray]] = {k: [] for k in _ARRAYS if k != "rolls"}
        self.names: list[str] = []
        self.meter_names: list[str] = []

    def add(self, rolls: np.ndarray, piece: dict, style: int) -> None:
        n = len(rolls)
        tonic, _, _ = features.windowed_key(rolls)
        for m in piece["meters"]:
            if m not in self.meter_names:
                self.meter_names.append(m)
        c = self.cols
        c["piece"].append(np.full(n, len(self.names), np.int32))
        c["bar"].append(np.arange(n, dtype=np.int32))
        c["style"].append(np.full(n, style, np.int8))
        c["split"].append(np.full(n, split_of(piece["work"]), np.int8))
        c["attrs"].append(features.bar_attrs(rolls))
        c["tonic"].append(tonic.astype(np.int8))
        c["melody_only"].append(np.full(n, piece["melody_only"], bool))
        c["meter"].append(np.array([self.meter_names.index(m) for m in piece["meters"]], np.int8))
        c["bar_meter"].append(np.full(n, self.bar_meters.index(piece["meter"]), np.int8))
        c["place"].append(form.section_positions(rolls))
        c["repeats"].append(form.repeat_lags(rolls))
        self.rolls.append(rolls)
        self.names.append(piece["name"])

    def arrays(self) -> dict[str, np.ndarray]:
        out = {k: np.concatenate(v) for k, v in self.cols.items()}
        out["rolls"] = np.concatenate(self.rolls)
        return out


def _prune_old_units(unit_dir: Path) -> None:
    """Delete unit caches of other builder keys (other music21 or builder versions)."""
    for other in unit_dir.parent.iterdir():
        if other != unit_dir and other.is_dir():
            for f in other.glob("*.npz"):
                f.unlink()
            other.rmdir()
            log.info("removed stale unit cache %s", other)
