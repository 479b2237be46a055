"""music21 corpus -> bar-aligned multi-track rolls: which files, and how a score becomes bars.

This module holds every musical decision of the dataset; ``model/data.py`` only caches, labels and
assembles what it returns. It imports music21 at module level: never import it from ``musicbox.runtime``.

Collections and style families (measured bar counts are in ``musicbox data stats``' report)
--------------------------------------------------------------------------------------------
===============  ===========================================================  ==========================
style            collections (music21 corpus folders)                         why
===============  ===========================================================  ==========================
``chorale``      ``bach`` (the four-part chorales, .mxl/.xml)                  one homogeneous idiom, SATB
``renaissance``  ``palestrina`` (.krn), ``monteverdi`` (madrigals, .mxl)       duple alla-breve polyphony;
                                                                              Palestrina is ~97 % of it
``quartet``      ``beethoven``, ``mozart``, ``haydn`` string quartets (.mxl)  the only classical
                                                                              multi-part material
``folk``         ``essenFolksong`` (.abc; skipped: ``han1``/``han2``, 1,200    the largest collection,
                 Chinese songs, and ``test*``/``variant0``, music21's tests)  melody only
``celtic``       ``oneills1850``, ``ryansMammoth``, ``airdsAirs`` (.abc)      dance tunes: reels,
                                                                              jigs, hornpipes, airs
===============  ===========================================================  ==========================

Left out: the Trecento (medieval: none of the five styles fits it), Josquin (8 multi-voice ABC files
music21 parses poorly), single works (Schumann, Joplin, ...), the ``.krn`` duplicates of the Bach
and Beethoven ``.mxl`` files and Mozart's K. 545 (a piano sonata among the quartets) and
``madrigal.3.1_old.mxl`` (a broken duplicate of madrigal 3.1).

From a score to bars
--------------------
- **Grid.** A grid step is a sixteenth note, 1/4 quarter length (ql; music21's unit of time). A 4/4
  bar is 16 steps (``pianoroll.DEFAULT``); a 3/4 or 6/8 bar is 12 steps, written in steps 0..11 of the
  16-step row with steps 12..15 silent (:data:`METERS`).
- **Meters.** Every bar is in one of three meters. 4/4: numerator 2 or 4 and a measure of 2, 4, 8 or
  16 ql: 4/4 and 2/2 give one bar; 2/4 and 4/8 (2 ql) are joined in pairs of consecutive measures into
  one bar (an unpaired one is dropped); 4/2 and 2/1 (8 ql) are split into two bars, 4/1 into four.
  3/4: one bar per measure. 6/8: one bar per measure (two dotted beats); 3/8 measures joined in pairs,
  12/8 split in two. Other meters (3/2, 9/8, 6/4, 5/8, ...) and pieces without a meter are dropped and
  their measures counted per time signature. A meter change ends a piece (each piece is in one meter).
- **Pickups.** A short first measure (of the piece, after a meter change, or right after a dropped
  stretch such as a 3/2 section) is padded with silence *before* it, to the next multiple of its
  meter's bar, so the first full measure starts on a bar line and the upbeat keeps its place (counted
  as ``pickup_padded``). Two short measures in a row that add up to a full one (an ABC section ending
  and the next section's upbeat) are joined into one. Any other short, long or unsupported measure is
  dropped and ends the current run of bars.
- **Runs -> pieces.** Only gap-free runs of bars are kept, so within a piece ``bar`` is exactly
  0..n-1; a score with a gap yields several pieces (``name@2``, ...) that share one split. Runs shorter
  than :data:`MIN_BARS` bars are dropped (counted).
- **Tracks.** Parts are ranked by mean pitch: the highest is ``melody``, the lowest ``bass``, all
  others ``harmony`` (polyphonic). A score with one sounding part is ``melody_only`` (harmony and bass
  empty by source). Chords within a part (double stops) keep all their pitches. Chord symbols of ABC
  tunes are not notes and are ignored.
- **Ties.** Tied notes are merged first (:func:`part_notes`), so a note tied over a bar line is ``HELD``
  at step 0 of the next bar.
- **Off-grid notes.** An onset within :data:`QUANTIZE_TOLERANCE` steps (1/3 step: this includes
  eighth-note triplets) of the grid is moved to the nearest step (``notes_quantized``); further off
  (sixteenth triplets' middle note, 32nd notes off the beat, quintuplets) it is dropped
  (``notes_offgrid``). A note whose quantized end is not after its quantized start is dropped
  (``notes_too_short``).
- **Grace notes** are dropped (``notes_grace``).
- **Repeats are played** (:func:`expand_repeats`): repeat signs, first and second endings, D.C. and
  D.S. are expanded with music21's ``expandRepeats``, so an AABB tune is AABB in the dataset, as a
  listener hears it (the form the model and ``musicbox eval`` learn and measure). A score whose repeat
  marks music21 cannot expand is taken as written (counted as ``repeats_unexpandable``).
- **Pitch.** Notes outside MIDI 33..96 are folded by octaves (``pianoroll.fold_pitch``, counted as
  ``notes_folded``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import music21
import numpy as np
from music21 import converter, harmony, stream

from musicbox.errors import DatasetError
from musicbox.runtime.meter import METERS as BOX_METERS
from musicbox.runtime.pianoroll import DEFAULT, Note, Representation, fold_pitch, notes_to_roll

log = logging.getLogger(__name__)

BUILDER_VERSION = 4
"""Bump when a change here alters the bars produced: every cached piece is then parsed again."""

MIN_BARS = 3
"""A run of fewer bars is dropped: the model samples windows of 3 consecutive bars."""

QUANTIZE_TOLERANCE = 0.34
"""How far (in grid steps) an onset may lie off the 16th grid and still be moved onto it."""

STEP_QL = 0.25
"""One grid step in quarter lengths."""

ABC_CHUNK = 60
"""Tunes of a multi-tune ABC file parsed as one work unit (and cached as one file)."""

_EPS = 1e-6


@dataclass(frozen=True)
class Collection:
    """A music21 corpus folder and the style family it belongs to.

    name: short name used on the command line (``--collections``).
    style: style family (see :data:`STYLES`).
    folder: folder inside music21's corpus.
    patterns: glob patterns (relative to ``folder``) of the files to read.
    exclude: regular expression of relative paths to skip.
    """

    name: str
    style: str
    folder: str
    patterns: tuple[str, ...]
    exclude: str = r"^$"


STYLES: dict[str, str] = {
    "chorale": "Bach chorales",
    "renaissance": "Renaissance polyphony (Palestrina, Monteverdi)",
    "quartet": "Classical string quartets (Haydn, Mozart, Beethoven)",
    "folk": "European folk songs (Essen)",
    "celtic": "Irish and Scottish dance tunes (O'Neill, Ryan, Aird)",
}
"""Style family -> human label, in the order of ``Dataset.style_names``."""

COLLECTIONS: tuple[Collection, ...] = (
    Collection("bach", "chorale", "bach", ("*.mxl", "*.xml")),
    Collection("palestrina", "renaissance", "palestrina", ("*.krn",)),
    Collection("monteverdi", "renaissance", "monteverdi", ("madrigal.*.mxl",), exclude=r"_old\.mxl$"),
    Collection("haydn", "quartet", "haydn", ("**/*.mxl",)),
    Collection("mozart", "quartet", "mozart", ("**/*.mxl",), exclude=r"^k545/"),
    Collection("beethoven", "quartet", "beethoven", ("*.mxl", "**/*.mxl")),
    Collection("essen", "folk", "essenFolksong", ("*.abc",), exclude=r"^(test|variant|han)"),
    Collection("oneills", "celtic", "oneills1850", ("*.abc",)),
    Collection("ryans", "celtic", "ryansMammoth", ("*.abc",)),
    Collection("airds", "celtic", "airdsAirs", ("*.abc",)),
)


def collection(name: str) -> Collection:
    """The collection called ``name``; :class:`DatasetError` listing the known ones otherwise."""
    for c in COLLECTIONS:
        if c.name == name:
            return c
    known = ", ".join(c.name for c in COLLECTIONS)
    raise DatasetError(f"unknown collection {name!r} in --collections; choose among: {known}")


def corpus_root() -> Path:
    """Folder of music21's bundled corpus."""
    return Path(music21.__file__).parent / "corpus"


def music21_version() -> str:
    return music21.__version__


# --------------------------------------------------------------------------------------------------
# Work units: what one worker parses and what one cache file holds


@dataclass(frozen=True)
class WorkUnit:
    """One source file, or a chunk of the tunes of a multi-tune ABC file.

    collection: :attr:`Collection.name`.
    path: file path relative to the corpus root.
    tunes: indices (0-based, in file order) of the ABC tunes in this unit; ``()`` for a whole file.
    digest: sha1 of the file's bytes (so an edited file is parsed again).
    cost: rough parse cost (bytes), to schedule big units first.
    """

    collection: str
    path: str
    tunes: tuple[int, ...]
    digest: str
    cost: int

    def key(self, builder_key: str) -> str:
        """Cache file stem: changes with the builder, the file's content and the tune chunk."""
        text = f"{builder_key}|{self.path}|{self.tunes}|{self.digest}"
        return hashlib.sha1(text.encode()).hexdigest()[:20]


def split_abc(text: str) -> tuple[str, list[str]]:
    """Split an ABC file into its file header and its tunes (each starting with ``X:``)."""
    blocks = re.split(r"(?m)^(?=X:)", text)
    return blocks[0], [b for b in blocks[1:] if b.strip()]


def read_text(path: Path) -> str:
    """Text of a corpus file (UTF-8, else Latin-1 as older ABC collections are)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def discover(names: list[str] | None = None, limit_per_collection: int | None = None) -> list[WorkUnit]:
    """Work units of the chosen collections (all by default), ``limit_per_collection`` pieces each.

    A piece is a file, or one tune of a multi-tune ABC file. Raises :class:`DatasetError` if the
    corpus folder of a collection is missing (music21 without its corpus).
    """
    chosen = [collection(n) for n in names] if names else list(COLLECTIONS)
    units: list[WorkUnit] = []
    for coll in chosen:
        units.extend(_collection_units(coll, limit_per_collection))
    return units


def _collection_files(coll: Collection) -> list[Path]:
    folder = corpus_root() / coll.folder
    if not folder.is_dir():
        raise DatasetError(
            f"music21 corpus folder {folder} is missing (collection {coll.name!r}); "
            "install music21 with its bundled corpus (pip install music21==10.5.1)"
        )
    files = {p for pat in coll.patterns for p in folder.glob(pat) if p.is_file()}
    rel = sorted(files, key=lambda p: str(p.relative_to(folder)))
    return [p for p in rel if not re.search(coll.exclude, str(p.relative_to(folder)))]


def _collection_units(coll: Collection, limit: int | None) -> list[WorkUnit]:
    root = corpus_root()
    units: list[WorkUnit] = []
    remaining = math.inf if limit is None else limit
    for path in _collection_files(coll):
        if remaining <= 0:
            break
        data = path.read_bytes()
        digest = hashlib.sha1(data).hexdigest()
        rel = str(path.relative_to(root))
        if path.suffix != ".abc":
            units.append(WorkUnit(coll.name, rel, (), digest, len(data)))
            remaining -= 1
            continue
        _, tunes = split_abc(read_text(path))
        n = int(min(len(tunes), remaining))
        remaining -= n
        for lo in range(0, n, ABC_CHUNK):
            chunk = tuple(range(lo, min(n, lo + ABC_CHUNK)))
            cost = sum(len(tunes[i]) for i in chunk) * 4  # ABC text is ~4x denser than MusicXML
            units.append(WorkUnit(coll.name, rel, chunk, digest, cost))
    return units


# --------------------------------------------------------------------------------------------------
# Parsed results


@dataclass
class Piece:
    """One gap-free run of bars of a score.

    name: ``collection-folder/file[#Xn][@k]`` (``#Xn``: ABC tune number, ``@k``: k-th run, k >= 2).
    work: the source work (name without ``@k``): the split is decided per work.
    rolls: uint8 ``[n_bars, 3, 16, 64]`` (a 12-step bar silent after step 11).
    meters: source time signature of each bar (``"2/4"`` for a joined pair of 2/4 measures).
    meter: the dataset meter of every bar of the piece (:data:`METERS`; a meter change starts a piece).
    melody_only: the score has a single sounding part.
    """

    name: str
    work: str
    rolls: np.ndarray
    meters: list[str]
    meter: str
    melody_only: bool


@dataclass
class UnitResult:
    """What parsing a work unit gives: its pieces and its counters (see :func:`count_keys`)."""

    pieces: list[Piece] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def parse_unit(unit: WorkUnit, rep: Representation = DEFAULT) -> UnitResult:
    """Parse every score of ``unit`` into pieces; a score music21 cannot read is counted, not raised."""
    result = UnitResult()
    for work, load in _scores(unit):
        result.counts["scores"] += 1
        try:
            score = load()
        except Exception as exc:  # music21 raises many kinds on malformed sources
            result.counts["scores_unreadable"] += 1
            result.counts[f"unreadable:{type(exc).__name__}"] += 1
            continue
        try:
            pieces = score_to_pieces(score, work, result.counts, rep)
        except Exception as exc:  # an odd score must not end a 20-minute build; counted, reported
            result.counts["scores_failed"] += 1
            result.counts[f"failed:{type(exc).__name__}"] += 1
            log.warning("%s: cannot convert (%s: %s); skipped", work, type(exc).__name__, exc)
            continue
        result.pieces.extend(pieces)
    return result


def _scores(unit: WorkUnit):
    """Yield ``(work name, loader)`` for each score of the unit; loaders parse lazily."""
    path = corpus_root() / unit.path
    if not unit.tunes:
        yield unit.path, lambda: converter.parse(path, forceSource=True)
        return
    header, tunes = split_abc(read_text(path))
    for i in unit.tunes:
        tune = tunes[i]
        match = re.match(r"X:\s*(\S+)", tune)
        number = match.group(1) if match else str(i + 1)
        yield f"{unit.path}#X{number}", lambda t=tune: converter.parse(header + t, format="abc")


def expand_repeats(score, counts: Counter):
    """``score`` with its repeats played (a new stream), or as written when music21 cannot expand them."""
    try:
        expanded = score.expandRepeats()
    except Exception:  # music21's expander raises several kinds on inconsistent repeat marks
        counts["repeats_unexpandable"] += 1
        return score
    counts["repeats_expanded"] += 1
    return expanded


def score_to_pieces(score, work: str, counts: Counter, rep: Representation = DEFAULT) -> list[Piece]:
    """Cut a music21 score into gap-free runs of 16-step bars, repeats played (see the module docstring)."""
    if isinstance(score, stream.Opus):
        score = score.scores[0] if score.scores else stream.Score()
    score = expand_repeats(score, counts)
    parts = list(score.parts) if score.parts else [score]
    reference = max(parts, key=lambda p: len(p.getElementsByClass(stream.Measure)))
    measures = list(reference.getElementsByClass(stream.Measure))
    if not measures:
        counts["scores_without_measures"] += 1
        return []
    grid = grid_bars(measures, counts)
    tracks, melody_only = assign_tracks(parts, counts)
    pieces: list[Piece] = []
    for lo, hi in runs(grid):
        n, meter = hi - lo, grid.meters[lo]
        if n < MIN_BARS:
            counts["bars_short_run"] += n
            continue
        bar_rep = replace(rep, steps_per_bar=BOX_METERS[meter].steps)
        notes = run_notes(tracks, grid.origins[lo], grid.starts[lo], n, counts, bar_rep)
        rolls = _pad_steps(notes_to_roll(notes, n, bar_rep), rep.steps_per_bar)
        name = work if not pieces else f"{work}@{len(pieces) + 1}"
        pieces.append(Piece(name, work, rolls, grid.labels[lo:hi], meter, melody_only))
        counts["bars_kept"] += n
        counts[f"bars_kept:{meter}"] += n
    counts["pieces"] += len(pieces)
    return pieces


def _pad_steps(rolls: np.ndarray, steps: int) -> np.ndarray:
    """Rolls ``[n, T, s, P]`` of ``s``-step bars in ``steps``-step rows, silent after step ``s``."""
    return np.pad(rolls, ((0, 0), (0, 0), (0, steps - rolls.shape[2]), (0, 0)))


# --------------------------------------------------------------------------------------------------
# Measures -> bars


METERS: dict[str, float] = {name: m.quarters for name, m in BOX_METERS.items()}
"""The meters of the dataset's bars (the box's, ``runtime/meter.py``) and a bar's length in ql: 16 grid
steps for 4/4, 12 for 3/4 (three beats of four steps) and 6/8 (two dotted beats of six). A 12-step bar
fills steps 0..11 of the 16-step roll; its steps 12..15 stay silent."""


def meter_of(num: int, den: int) -> tuple[str, float] | None:
    """The dataset meter of a ``num/den`` time signature and the length of its measure in ql, or None
    when it is dropped. A measure of half a bar is joined with the next (2/4, 4/8; 3/8 into 6/8), one of
    several bars is split (4/2 and 2/1 into two 4/4 bars, 4/1 into four; 12/8 into two 6/8 bars)."""
    length = num * 4.0 / den
    if num in (2, 4) and length in (2.0, 4.0, 8.0, 16.0):
        return "4/4", length
    if (num, den) == (3, 4):
        return "3/4", length
    if (num, den) in ((6, 8), (3, 8), (12, 8)):
        return "6/8", length
    return None


def meter_of_signature(ts) -> tuple[str, float] | None:
    """:func:`meter_of` of a music21 ``TimeSignature`` (None for none or a malformed one)."""
    if ts is None:
        return None
    try:
        return meter_of(int(ts.numerator), int(ts.denominator))
    except (TypeError, ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class Grid:
    """What :func:`grid_bars` gives per kept bar: the source time (ql) of its step 0, its source time
    signature, its dataset meter (:data:`METERS`), and the source time its music starts (later than
    step 0 only in a pickup's padded bar, whose silence must stay silent)."""

    origins: list[float]
    labels: list[str]
    meters: list[str]
    starts: list[float]


def grid_bars(measures: list, counts: Counter) -> Grid:
    """The bars of a part's measures (see the module docstring for the rules).

    Counts per time signature: ``measures:<m>`` seen, ``measures_dropped:<m>`` dropped, and the quarter
    lengths ``ql:<m>`` / ``ql_dropped:<m>`` (divide by 4 for 4/4 bar equivalents); ``dropped:<reason>``.
    """
    grid = _BarGrid(counts)
    ts = None
    for m in measures:
        ts = m.timeSignature or ts
        grid.measure(float(m.offset), float(m.duration.quarterLength), ts)
    grid.flush()
    return Grid(grid.origins, grid.labels, grid.meters, grid.starts)


class _BarGrid:
    """State of :func:`grid_bars`: the bars so far and the measures waiting for a partner."""

    def __init__(self, counts: Counter) -> None:
        self.counts: Any = counts  # Counter's stub holds ints; the ql: keys add quarter lengths
        self.origins: list[float] = []
        self.starts: list[float] = []
        self.labels: list[str] = []
        self.meters: list[str] = []
        self.pending: tuple[float, float, str] | None = None  # short measure waiting for its complement
        self.half: tuple[float, str, str] | None = None  # half-bar measure waiting for its pair
        self.at_start = True  # a short measure here is a pickup (piece start, or after a dropped stretch)
        self.meter = ""  # the meter of the measures so far

    def measure(self, offset: float, dur: float, ts) -> None:
        label = ts.ratioString if ts is not None else "none"
        self.counts[f"measures:{label}"] += 1
        self.counts[f"ql:{label}"] += dur
        kept = meter_of_signature(ts)
        if kept is None:
            self.drop(label, dur, "meter")
            self.flush()
            self.meter, self.at_start = "", True
            return
        meter, length = kept
        bar = METERS[meter]
        if meter != self.meter:  # a new meter starts a new piece, which may begin with an upbeat
            self.flush()
            self.meter, self.at_start = meter, True
        pending, self.pending = self.pending, None
        if abs(dur - length) < _EPS:
            self.drop_pending(pending)
            self.emit(offset, length, label, meter)
        elif dur > length:
            self.drop_pending(pending)
            self.drop(label, dur, "overfull_measure")
        elif dur <= _EPS:
            self.pending = pending
            return
        elif self.at_start:
            self.drop_pending(pending)
            padded = max(bar, math.ceil(dur / bar - _EPS) * bar)
            self.counts["pickup_padded"] += 1
            self.counts["pickup_padded_ql"] += padded - dur
            self.emit(offset + dur - padded, padded, label, meter, music_from=offset)
        elif (
            pending and abs(pending[0] + pending[1] - offset) < _EPS and abs(pending[1] + dur - length) < _EPS
        ):
            self.counts["measures_joined"] += 1
            self.emit(pending[0], length, label, meter)
        else:
            self.drop_pending(pending)
            self.pending = (offset, dur, label)
        self.at_start = False

    def emit(
        self, origin: float, length: float, label: str, meter: str, music_from: float | None = None
    ) -> None:
        """Bars for a full measure of ``length`` ql starting at ``origin`` (a half-bar measure waits for
        its pair). music_from: where the music starts in a padded pickup (silence before it)."""
        bar = METERS[meter]
        if abs(length - bar / 2) < _EPS:
            half = self.half
            if half is not None and half[2] == meter and abs(half[0] + length - origin) < _EPS:
                self.bar(half[0], half[0], half[1], meter)
                self.half = None
            else:
                self.drop_half()
                self.half = (origin, label, meter)
            return
        self.drop_half()
        for j in range(int(round(length / bar))):
            self.bar(origin + j * bar, max(origin + j * bar, music_from or origin), label, meter)

    def bar(self, origin: float, start: float, label: str, meter: str) -> None:
        self.origins.append(origin)
        self.starts.append(start)
        self.labels.append(label)
        self.meters.append(meter)

    def flush(self) -> None:
        """Drop what still waits for a partner (the run ends here)."""
        self.drop_pending(self.pending)
        self.pending = None
        self.drop_half()

    def drop_pending(self, pending: tuple[float, float, str] | None) -> None:
        if pending is not None:
            self.drop(pending[2], pending[1], "incomplete_measure")

    def drop_half(self) -> None:
        if self.half is not None:
            origin, label, meter = self.half
            self.drop(label, METERS[meter] / 2, f"unpaired_{label}")
            self.half = None

    def drop(self, label: str, ql: float, reason: str) -> None:
        self.counts[f"measures_dropped:{label}"] += 1
        self.counts[f"ql_dropped:{label}"] += ql
        self.counts[f"dropped:{reason}"] += 1


def runs(grid: Grid) -> list[tuple[int, int]]:
    """``[lo, hi)`` index ranges of bars of one meter that follow each other without a gap; a padded
    pickup bar (its music starts after its step 0) always begins a new run."""
    out = []
    lo = 0
    o, m = grid.origins, grid.meters
    for i in range(1, len(o) + 1):
        gap = i == len(o) or m[i] != m[i - 1] or abs(o[i] - o[i - 1] - METERS[m[i - 1]]) > _EPS
        if gap or grid.starts[i] > o[i] + _EPS:
            out.append((lo, i))
            lo = i
    return out


# --------------------------------------------------------------------------------------------------
# Parts -> tracks -> notes


@dataclass
class SourceNote:
    """A note of a part, ties merged: onset and end in ql (absolute), MIDI pitch."""

    onset: float
    end: float
    pitch: int


def part_notes(part, counts: Counter) -> list[SourceNote]:
    """The notes of a part: chords expanded, tied notes merged, chord symbols and grace notes left out.

    Ties are merged here, not with music21's ``stripTies`` (quadratic: minutes on a long quartet): a
    note whose tie starts (or continues) stays open per pitch and absorbs the next note of that pitch
    that begins where it ends and whose tie stops (or continues).
    """
    open_notes: dict[int, SourceNote] = {}
    out: list[SourceNote] = []
    for n in part.flatten().notes:
        if isinstance(n, harmony.Harmony):
            continue
        ties = _pitch_ties(n)
        if n.duration.isGrace:
            counts["notes_grace"] += len(ties)
            continue
        onset = float(n.offset)
        end = onset + float(n.duration.quarterLength)
        for pitch, tie in ties:
            prev = open_notes.pop(pitch, None)
            if prev is not None and tie in ("stop", "continue") and abs(prev.end - onset) < _EPS:
                prev.end = end
                note = prev
            else:
                note = SourceNote(onset, end, pitch)
                out.append(note)
            if tie in ("start", "continue"):
                open_notes[pitch] = note
    return out


def _pitch_ties(n) -> list[tuple[int, str | None]]:
    """``(MIDI pitch, tie type or None)`` of each pitch of a note or chord."""
    if hasattr(n, "pitch"):
        return [(n.pitch.midi, n.tie.type if n.tie else None)]
    out = []
    for cn in n.notes:
        tie = cn.tie or n.tie
        out.append((cn.pitch.midi, tie.type if tie else None))
    return out


def assign_tracks(parts: list, counts: Counter) -> tuple[list[list[SourceNote]], bool]:
    """Notes per track ``[melody, harmony, bass]`` (parts ranked by mean pitch) and ``melody_only``."""
    sounding = [ns for ns in (part_notes(p, counts) for p in parts) if ns]
    sounding.sort(key=lambda ns: -float(np.mean([n.pitch for n in ns])))
    tracks: list[list[SourceNote]] = [[], [], []]
    if not sounding:
        return tracks, True
    tracks[0] = sounding[0]
    if len(sounding) >= 2:
        tracks[2] = sounding[-1]
        tracks[1] = [n for ns in sounding[1:-1] for n in ns]
    return tracks, len(sounding) == 1


def quantize(x: float) -> tuple[int, float]:
    """Nearest grid step of a time in steps, and the distance to it."""
    q = math.floor(x + 0.5)
    return q, abs(x - q)


def run_notes(
    tracks, origin: float, music_from: float, n_bars: int, counts: Counter, rep: Representation
) -> list[Note]:
    """Grid notes of the run of ``n_bars`` bars of ``rep.steps_per_bar`` steps from ``origin`` ql (notes
    from ``music_from`` ql on)."""
    n_steps = n_bars * rep.steps_per_bar
    steps_per_ql = 1.0 / STEP_QL
    out = []
    for t, notes in enumerate(tracks):
        for sn in notes:
            start = (sn.onset - origin) * steps_per_ql
            if sn.onset < music_from - _EPS or start > n_steps - 0.5:
                continue  # sounds outside this run (a dropped measure or another run)
            counts["notes"] += 1
            qs, off = quantize(start)
            if off > QUANTIZE_TOLERANCE:
                counts["notes_offgrid"] += 1
                continue
            if off > _EPS:
                counts["notes_quantized"] += 1
            qe = min(quantize((sn.end - origin) * steps_per_ql)[0], n_steps)
            if qe <= qs:
                counts["notes_too_short"] += 1
                continue
            if not rep.pitch_low <= sn.pitch <= rep.pitch_high:
                counts["notes_folded"] += 1
            out.append(Note(t, qs, fold_pitch(sn.pitch, rep), qe - qs))
    counts["notes_kept"] += len(out)
    return out
