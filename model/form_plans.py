"""The forms of the corpus: which tune form explains each real piece's repetition, counted per style.

A *candidate* is a concrete tune form the planner can play (``runtime/form.py`` :class:`FormPlan`):
sections (letters A-D, a repeated letter returns the first playing), bars per section (2 to 16), bars
per phrase and phrase letters (a repeated phrase letter returns the earlier phrase but for its last
bar). Played over a piece one tune after another, a candidate predicts which earlier bar each bar
returns. A piece's *best* candidate maximizes the sum over its predicted returns of (onset-Jaccard
similarity of the two bars, ``model/form.py``) minus :data:`THRESHOLD`: a predicted return that is
heard scores, one that is not costs; a form predicting nothing scores 0. Among equal scores, sections
of 4 or 8 bars win (a form whose returns say nothing of its lengths keeps the common ones and the
style's phrase length), then the tune length nearest the piece's (a corpus piece is one tune, its
repeats played). Pieces count from
their first full bar (an upbeat bar left out) and are read up to :data:`~musicbox.model.form.FORM_BARS`
bars.

:func:`corpus_plans` counts the best candidates of a style's training pieces (the :data:`MAX_PLANS`
most frequent: a piece whose own best is not among them counts for the best of those): its plans and
their weights, which ``model/styles.py`` writes into the style's form table and the planner draws each
tune's form from. The lengths of sections, phrases and tunes and the distances at which phrases return (2-4
bars where a phrase letter repeats) are the plans' own.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from musicbox.model.form import FORM_BARS, SECTION_BARS, similarity_matrix, window_keys
from musicbox.model.form_eval import REAL_MIN_BARS
from musicbox.runtime.form import FormSpec

THRESHOLD = 0.5
"""Similarity above which a predicted return counts for a candidate, below which against it."""

SECTION_LENGTHS = (2, 3, 4, 5, 6, 8, 12, 16)
"""Bars per section of the candidates (a chorale's Stollen is often 3 or 5 bars long, a reel's phrase
pair 2 + 2; sections of 12 and 16 bars make tunes of up to 96 bars, whose returns 16-48 bars back a form
of shorter sections could only play with more than :data:`MAX_SECTIONS` of them: of the 2-bar spans
of the training pieces that return, the share whose nearest earlier match lies 17 bars back or more is
quartet 0.52, renaissance 0.21, folk 0.10, celtic 0.12, chorale 0.07)."""

PHRASED_SECTIONS = 8
"""Longest section whose phrases may return within it (phrase pairs at 2-4 bars); a longer section's
phrases all differ (its returns are whole sections)."""

PLAIN_SECTIONS = (4, 8)
"""Section lengths a piece's form takes unless returns at other lengths say otherwise."""

ODD_SECTIONS = 2e-3
"""What a candidate with sections of another length than :data:`PLAIN_SECTIONS` gives up: more than any
difference in tune length, less than any return it explains."""

MAX_SECTIONS = 6
"""Most sections per tune of the candidates (tunes of up to 96 bars: a quartet's theme returns after
its development)."""

MIN_BARS = REAL_MIN_BARS
"""Shortest piece (from its first full bar) whose form is counted: as long as the eval's real pieces
(``model/form_eval.py``), for a form needs room to return (a chorale's pieces of 8-15 bars, a third of
them, hardly return: of 315 pieces of 8 bars or more, the best forms of 55 % return; the form eval's
held-out pieces of 16 bars or more return 0.22 of their 2-bar spans, which forms counted on pieces of 8
bars or more give generated pieces at half that rate)."""

PIECES = 400
"""Training pieces of a style read (a random draw, fixed seed)."""

MAX_PLANS = 32
"""Most plans kept per style (the most frequent). A form that explains a single piece is kept too: the
forms that return are many and each rare (a chorale's Stollen of 3, 4, 5 or 6 bars, each with its own
Abgesang), so a floor on a form's share of the pieces (1 %) gave their pieces to the frequent forms,
which return less (`musicbox eval --panel-only --forms corpus --seeds 6`, 2-bar spans returning: chorale
0.120 -> 0.145, real 0.223; folk's lag-8 peak 0.191 -> 0.153, real 0.067)."""


class Candidate(NamedTuple):
    sections: str
    section_bars: int
    phrase_bars: int
    phrases: str

    @property
    def tune_bars(self) -> int:
        return len(self.sections) * self.section_bars


def letter_strings(length: int, letters: str) -> list[str]:
    """Every string of ``length`` letters from ``letters`` in which each letter first appears after the
    ones before it in ``letters`` (``AAB``, ``ABA``, not ``BBA``): the distinct repetition patterns."""
    out = [letters[0]]
    for _ in range(length - 1):
        out = [s + c for s in out for c in letters[: len(set(s)) + 1]]
    return out


def candidates(phrase_bars: int) -> tuple[Candidate, ...]:
    """Every candidate form; ``phrase_bars``: the style's phrase length, for forms whose phrases all
    differ (their phrase length changes no return, so it stays the style's where it divides the
    section)."""
    out = []
    for bars in SECTION_LENGTHS:
        plain = next((p for p in (phrase_bars, 4, 3, 2) if p <= bars and bars % p == 0), bars)
        phrasings = [(plain, "")]
        for length in (2, 4):
            if bars <= PHRASED_SECTIONS and bars % length == 0 and bars // length >= 2:
                for phrases in letter_strings(bars // length, "abcd"):
                    if len(set(phrases)) < len(phrases):
                        phrasings.append((length, phrases))
        for n in range(2, MAX_SECTIONS + 1):
            for sections in letter_strings(n, "ABCD"):
                out += [Candidate(sections, bars, p, phrases) for p, phrases in phrasings]
    return tuple(out)


def returns(candidate: Candidate, bars: int = FORM_BARS) -> list[tuple[int, int]]:
    """The (bar, earlier bar it returns) pairs ``candidate`` predicts over ``bars`` bars, tune after tune."""
    spec = FormSpec(candidate.sections, candidate.section_bars, candidate.phrase_bars, candidate.phrases)
    pairs = []
    for i in range(bars):
        tune, local = divmod(i, candidate.tune_bars)
        section, position = divmod(local, candidate.section_bars)
        start = tune * candidate.tune_bars
        first = candidate.sections.index(candidate.sections[section])
        if first < section:
            pairs.append((i, start + first * candidate.section_bars + position))
            continue
        source = spec.phrase_source(position)
        if source is not None:
            pairs.append((i, start + section * candidate.section_bars + source))
    return pairs


@lru_cache(maxsize=2)
def _predictions(phrase_bars: int) -> tuple[tuple[Candidate, ...], np.ndarray, np.ndarray]:
    """The candidates, their predicted returns as flat indices ``bar * FORM_BARS + earlier`` one
    candidate after another, and where each candidate's begin (``[C + 1]``)."""
    cands = candidates(phrase_bars)
    pairs = [[i * FORM_BARS + j for i, j in returns(c)] for c in cands]
    bounds = np.cumsum([0] + [len(p) for p in pairs])
    return cands, np.fromiter((k for p in pairs for k in p), np.int64, bounds[-1]), bounds


CHUNK = 32
"""Pieces scored at once (bounds the memory of the gathered returns)."""


def best_candidates(
    rolls: list[np.ndarray], phrase_bars: int, among: set[Candidate] | None = None
) -> list[Candidate]:
    """The best candidate (see the module) of each piece of ``rolls`` (each from its first full bar);
    ``among``: of those candidates only."""
    cands, flat, bounds = _predictions(phrase_bars)
    if not rolls:
        return []
    gains = np.zeros((FORM_BARS * FORM_BARS, len(rolls)), np.float32)
    lengths = np.array([min(len(r), FORM_BARS) for r in rolls])
    for k, roll in enumerate(rolls):
        roll = roll[:FORM_BARS]
        sim = np.nan_to_num(similarity_matrix(roll), nan=THRESHOLD)  # two silent bars: neither way
        gain = np.zeros((FORM_BARS, FORM_BARS), np.float32)
        gain[: len(roll), : len(roll)] = sim - THRESHOLD
        gains[:, k] = gain.reshape(-1)
    scores = np.zeros((len(cands), len(rolls)), np.float32)  # a form predicting no return scores 0
    some = np.diff(bounds) > 0
    for lo in range(0, len(rolls), CHUNK):
        scores[some, lo : lo + CHUNK] = np.add.reduceat(
            gains[flat, lo : lo + CHUNK], bounds[:-1][some], axis=0
        )
    tune = np.array([c.tune_bars for c in cands], np.float32)
    odd = np.array([c.section_bars not in PLAIN_SECTIONS for c in cands], np.float32)
    scores -= ODD_SECTIONS * odd[:, None] + 1e-3 * np.abs(tune[:, None] - lengths[None, :]) / FORM_BARS
    if among is not None:
        scores[[c not in among for c in cands]] = -np.inf
    return [cands[c] for c in scores.argmax(axis=0)]


def style_pieces(
    dataset, style: int, count: int = PIECES, seed: int = 0, meter: int | None = None, whole: bool = False
) -> list[np.ndarray]:
    """Up to ``count`` training pieces of ``style`` (all splits if it has none there; only those in
    ``meter``, an index into ``bar_meter_names``, when given) of at least :data:`MIN_BARS` bars from
    their first full bar, each without its upbeat bar and cut at :data:`FORM_BARS` bars (``whole``: not)."""
    if not len(dataset):
        return []
    starts = dataset.piece_starts()
    ends = np.r_[starts[1:], len(dataset)]
    mine = [
        (a, b)
        for a, b in zip(starts, ends, strict=True)
        if dataset.style[a] == style and (meter is None or dataset.bar_meter[a] == meter)
    ]
    train = [(a, b) for a, b in mine if dataset.split[a] == 0]
    spans = []
    for a, b in train or mine:
        a += int(dataset.place[a] == SECTION_BARS - 1)  # an upbeat bar is the last of a section
        if b - a >= MIN_BARS:
            spans.append((a, b))
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.permutation(len(spans))[:count])
    limit = 10**9 if whole else FORM_BARS
    return [dataset.rolls[spans[i][0] : min(spans[i][1], spans[i][0] + limit)] for i in chosen]


FORMED = 0.5
"""Least share of a style's pieces whose best form returns for its plans to be drawn: below it, its
pieces' returns lie where no plan of sections places them, and the plans would only say "no return".
The shares fall apart (the training pieces, `musicbox data stats`): celtic 0.99, folk 0.76, chorale 0.65
against quartet 0.22 (whose spans return 0.138 all the same) and Renaissance 0.01."""


def corpus_plans(dataset, style: int, phrase_bars: int = 4, meter: int | None = None) -> list[dict]:
    """A style's form plans from its pieces (see the module; ``meter``: its pieces in that meter only):
    ``FormPlan`` tables (sections, section_bars, phrase_bars, phrases, weight), the most frequent first;
    empty when the style has no piece of :data:`MIN_BARS` bars or fewer than :data:`FORMED` of its pieces
    take a form that returns."""
    best = _frequent(style_pieces(dataset, style, meter=meter), phrase_bars)
    if sum(bool(returns(c)) for c in best) < FORMED * len(best):
        return []
    return _plans(best)


def form_statistics(dataset, style: int, phrase_bars: int = 4, meter: int | None = None) -> dict:
    """What the corpus's forms of a style (in ``meter``, or all) look like: pieces read, the share of
    them whose best form has sections of 4 and of 8 bars, phrases returning within a section (a phrase
    pair, at 2 or 4 bars), any return at all; tune lengths (p10, p50, p90 of the pieces' bars from the
    first full bar, repeats played); and the plans (:func:`corpus_plans`)."""
    pieces = style_pieces(dataset, style, meter=meter, whole=True)
    best = best_candidates([p[:FORM_BARS] for p in pieces], phrase_bars)
    plans = _plans(_frequent([p[:FORM_BARS] for p in pieces], phrase_bars))
    n = max(len(best), 1)
    return {
        "pieces": len(best),
        "sections_4": sum(c.section_bars == 4 for c in best) / n,
        "sections_8": sum(c.section_bars == 8 for c in best) / n,
        "phrase_pairs": sum(len(set(c.phrases)) < len(c.phrases) for c in best) / n,
        "returning": sum(bool(returns(c)) for c in best) / n,
        "tune_bars": np.percentile([len(p) for p in pieces], [10, 50, 90]).tolist() if pieces else [],
        "plans": plans,
    }


def _frequent(rolls: list[np.ndarray], phrase_bars: int) -> list[Candidate]:
    """Each piece's best candidate among the frequent ones: the :data:`MAX_PLANS` most frequent best
    candidates, so a piece whose own best is not among them is counted for the kept form nearest it (not
    dropped, which would leave the plans with the share of the frequent forms)."""
    best = best_candidates(rolls, phrase_bars)
    among = {c for c, _ in Counter(best).most_common(MAX_PLANS)}
    return best_candidates(rolls, phrase_bars, among) if among else []


def _plans(best: list[Candidate]) -> list[dict]:
    """Plans weighted by their share of ``best`` (each piece's form), the most frequent first."""
    kept = Counter(best).most_common()
    total = sum(n for _, n in kept)
    return [
        {
            "sections": c.sections,
            "section_bars": c.section_bars,
            "phrase_bars": c.phrase_bars,
            "phrases": c.phrases,
            "weight": round(n / total, 3),
        }
        for c, n in kept
    ]


MIN_MOVE = 0.04
"""Least share of a style's key moves a move must have to be kept (rarer ones: its keys misread)."""


def key_moves(dataset, style: int, phrase_bars: int = 4) -> dict:
    """Where a style's pieces go from home, section by section: each piece is read in its best form
    (:func:`best_candidates`), and each section whose letter is not A plays its first time in the
    home mode on another tonic or not (the key of its bars against the key of the whole piece). Returns
    the share of those sections that move (``away``) and the tonics they move to, semitones above home,
    with their shares (``moves``, each at least :data:`MIN_MOVE`; the most frequent first). A section in
    the other mode does not count as a move: the mood knob, not the form, picks the mode."""
    pieces = [p[:FORM_BARS] for p in style_pieces(dataset, style)]
    sections = 0
    moves: Counter = Counter()
    for roll, form in zip(pieces, best_candidates(pieces, phrase_bars), strict=True):
        home_tonic, home_mode, _, _, _ = window_keys(roll)
        for k, letter in enumerate(form.sections):
            lo = k * form.section_bars
            if letter == "A" or form.sections.index(letter) < k or lo >= len(roll):
                continue
            tonic, mode, _, _, busy = window_keys(roll[lo : lo + form.section_bars])
            if not busy.any():
                continue
            sections += 1
            if mode == home_mode and tonic != home_tonic:
                moves[(tonic - home_tonic) % 12] += 1
    kept = {k: n for k, n in moves.items() if n >= MIN_MOVE * max(sum(moves.values()), 1)}
    total = sum(kept.values())
    return {
        "away": round(total / max(sections, 1), 3),
        "moves": [
            {"semitones": int(k), "weight": round(n / total, 3)}
            for k, n in sorted(kept.items(), key=lambda kv: -kv[1])
        ],
    }
