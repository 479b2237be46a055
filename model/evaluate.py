"""``musicbox eval``: does the box's model write music like the corpus, and does it follow the knobs?

It evaluates the *bundle* (what the box plays), through the runtime's own ``Generator``, against held-out
real phrases and two baselines (``model/baselines.py``), on the same features:

- musical features per 8-bar segment (:func:`segment_features`): in-key ratio, pitch-class entropy,
  note density, polyphony, rhythmic consistency (mean similarity of consecutive bars' onset patterns),
  bar-to-bar continuity (cosine of consecutive bars' pitch-class histograms), plus the fraction of
  empty bars; the distance between two sets is the mean over features of the 1-Wasserstein distance
  between their distributions, in units of the real feature's standard deviation;
- steering: a style classifier (softmax regression on per-bar texture features, trained on real
  training bars) applied to generated bars; the mode of generated segments vs the requested mood; the
  correlation of requested energy (tempo knob) with note density within each style; style blends;
- originality: exact and near (Jaccard >= 0.9 of onset cells) copies of 2-bar training spans (exact
  also in any key: the corpus is in its own keys and the box plays in the key its seed picks), and
  the similarity of segments generated from different seeds for the same knobs; static melodies
  (at most 3 distinct melody pitches in 8 bars), generated against real.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musicbox.model.baselines import MarkovChain, random_in_key, style_medians
from musicbox.model.form_eval import form_evaluation
from musicbox.runtime.controls import Controls
from musicbox.runtime.features import (
    cosine,
    density,
    in_key_ratio,
    pitch_class_histogram,
    polyphony,
    windowed_key,
)
from musicbox.runtime.meter import COMMON, Meter, pad
from musicbox.runtime.pianoroll import KEY_SHIFTS, ONSET, transpose

SEGMENT_BARS = 8
PANEL_SEED = 3
"""The feature panel's own random stream (its real pieces of the other meters), so the sections before
it draw as they did."""
FEATURES = ("in_key", "pc_entropy", "density", "polyphony", "rhythm_consistency", "continuity", "empty_bars")


@dataclass
class Segment:
    """``roll [SEGMENT_BARS, 3, 16, 64]`` and what asked for it."""

    roll: np.ndarray
    style: float
    mood: float = 0.0
    tempo: float = 100.0
    seed: int = 0
    meta: dict = field(default_factory=dict)


# -- features ---------------------------------------------------------------------------------------


def segment_features(roll: np.ndarray) -> dict[str, float]:
    """The musical features of one segment ``[n_bars, 3, 16, 64]`` (NaN where undefined)."""
    tonic, mode, _ = windowed_key(roll, radius=len(roll))
    hist = pitch_class_histogram(roll).sum(axis=0)
    p = hist / hist.sum() if hist.sum() else np.full(12, 1 / 12)
    onsets = (roll == ONSET).any(axis=(1, 3)).reshape(len(roll), -1).astype(np.float32)  # [n, 3*16]
    pcs = pitch_class_histogram(roll)
    with np.errstate(invalid="ignore"):
        return {
            "in_key": float(np.nanmean(in_key_ratio(roll, tonic, mode))),
            "pc_entropy": float(-(p[p > 0] * np.log2(p[p > 0])).sum()),
            "density": float(density(roll).mean()),
            "polyphony": float(polyphony(roll).mean()),
            "rhythm_consistency": float(np.nanmean(1 - np.abs(onsets[1:] - onsets[:-1]).mean(axis=1))),
            "continuity": float(np.nanmean(cosine(pcs[1:], pcs[:-1]))),
            "empty_bars": float((density(roll) == 0).mean()),
        }


def feature_table(segments: list[Segment]) -> np.ndarray:
    """``[n_segments, len(FEATURES)]``."""
    return np.array([[segment_features(s.roll)[f] for f in FEATURES] for s in segments], dtype=np.float64)


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein distance between two 1-D samples (NaNs dropped)."""
    a, b = np.sort(a[~np.isnan(a)]), np.sort(b[~np.isnan(b)])
    if not len(a) or not len(b):
        return float("nan")
    q = np.linspace(0, 1, 201)
    return float(np.abs(np.quantile(a, q) - np.quantile(b, q)).mean())


def distribution_distance(real: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Per-feature Wasserstein distance in units of the real feature's std, and their ``mean``."""
    out = {}
    for i, name in enumerate(FEATURES):
        std = np.nanstd(real[:, i]) or 1.0
        out[name] = wasserstein(real[:, i], other[:, i]) / std
    out["mean"] = float(np.nanmean(list(out.values())))
    return out


# -- style classifier -------------------------------------------------------------------------------


def texture_features(rolls: np.ndarray) -> np.ndarray:
    """Key-independent texture of each bar, ``[n, 3*16 + 3*3 + 1]``: onsets per track and step, per
    track activity / mean pitch / pitch spread, and polyphony."""
    on = rolls == ONSET  # [n, T, S, P]
    steps = on.any(axis=3).reshape(len(rolls), -1).astype(np.float32)
    pitches = np.arange(rolls.shape[-1], dtype=np.float32)
    count = on.sum(axis=(2, 3)).astype(np.float32)  # [n, T]
    per_pitch = on.sum(axis=2)  # [n, T, P]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (per_pitch * pitches).sum(axis=2) / count
        spread = np.sqrt((per_pitch * (pitches - mean[..., None]) ** 2).sum(axis=2) / count)
    active = (count > 0).astype(np.float32)
    extra = np.concatenate([active, np.nan_to_num(mean) / 64, np.nan_to_num(spread) / 12], axis=1)
    return np.concatenate([steps, extra, polyphony(rolls)[:, None] / 4], axis=1)


def windows(features: np.ndarray) -> np.ndarray:
    """Per-bar features ``[n, k]`` -> the mean of each 2-bar window (bars 0-1, 2-3, ...) ``[n // 2, k]``."""
    return (features[0::2][: len(features) // 2] + features[1::2][: len(features) // 2]) / 2


def style_windows(rolls: np.ndarray) -> np.ndarray:
    """The style classifier's input: :func:`texture_features` of 2-bar windows of ``rolls``."""
    return windows(texture_features(rolls))


class SoftmaxClassifier:
    """Softmax regression over ``n`` classes, balanced over the classes seen in training. The style
    classifier reads :func:`style_windows`; the meter classifier ``meter_eval.meter_features``."""

    def __init__(self, n: int, seed: int = 0):
        self.n = n
        self.rng = np.random.default_rng(seed)

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int = 300, lr: float = 0.5) -> SoftmaxClassifier:
        self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-6
        z = (x - self.mean) / self.std
        self.w = np.zeros((z.shape[1], self.n))
        self.b = np.zeros(self.n)
        onehot = np.eye(self.n)[y]
        weights = 1.0 / np.bincount(y, minlength=self.n)[y]  # balance the styles
        weights = weights / weights.sum()
        for _ in range(epochs):
            p = self.proba_z(z)
            g = (p - onehot) * weights[:, None]
            self.w -= lr * (z.T @ g + 1e-4 * self.w)
            self.b -= lr * g.sum(axis=0)
        return self

    def proba_z(self, z: np.ndarray) -> np.ndarray:
        logits = z @ self.w + self.b
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def proba(self, x: np.ndarray) -> np.ndarray:
        return self.proba_z((x - self.mean) / self.std)


def pairs_by_style(dataset, split: int, per_style: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_style`` 2-bar windows per style from ``split``: features and labels (none of a style
    without bars there)."""
    xs, ys = [], []
    for s in range(len(dataset.style_names)):
        idx = np.nonzero((dataset.split == split) & (dataset.style == s))[0]
        idx = idx[:-1][(dataset.piece[idx[:-1]] == dataset.piece[idx[:-1] + 1])]
        if not len(idx):
            continue
        idx = rng.choice(idx, min(per_style, len(idx)), replace=False)
        rolls = np.stack([dataset.rolls[idx], dataset.rolls[idx + 1]], axis=1).reshape(
            -1, *dataset.rolls.shape[1:]
        )
        xs.append(style_windows(rolls))
        ys.append(np.full(len(idx), s))
    return np.concatenate(xs), np.concatenate(ys)


# -- samples ----------------------------------------------------------------------------------------


def real_segments(dataset, split: int, per_style: int, rng) -> list[Segment]:
    """Random 8-bar windows of ``split`` pieces, ``per_style`` per style."""
    out = []
    for s in range(len(dataset.style_names)):
        idx = np.nonzero((dataset.split == split) & (dataset.style == s))[0]
        ok = idx[idx + SEGMENT_BARS <= len(dataset.piece)]
        ok = ok[dataset.piece[np.minimum(ok + SEGMENT_BARS - 1, len(dataset.piece) - 1)] == dataset.piece[ok]]
        for i in rng.choice(ok, min(per_style, len(ok)), replace=False):
            out.append(Segment(dataset.rolls[i : i + SEGMENT_BARS], float(s), float(dataset.attrs[i, 1])))
    return out


def generate(bundle, controls: Controls, seed: int, n_bars: int = SEGMENT_BARS) -> tuple[np.ndarray, float]:
    """``n_bars`` bars from a fresh generator: roll ``[n_bars, 3, 16, 64]`` (a 12-step bar padded with
    silence) and mean seconds per bar."""
    from musicbox.runtime.generator import Generator

    gen = Generator(bundle, seed=seed)
    bars = [gen.next_bar(controls) for _ in range(n_bars)]
    return np.concatenate([pad(b.roll) for b in bars]), float(np.mean([b.gen_seconds for b in bars]))


def model_segments(bundle, styles: list[int], seeds: int, meter: Meter = COMMON) -> list[Segment]:
    """Every style of ``styles`` x mood corner (-1, +1) x tempo (70, 130 BPM) x ``seeds`` seeds, in
    ``meter``."""
    out = []
    for s in styles:
        for mood in (-1.0, 1.0):
            for tempo in (70.0, 130.0):
                for seed in range(seeds):
                    controls = Controls(float(s), tempo, mood, meter=meter.name)
                    roll, sec = generate(bundle, controls, seed)
                    out.append(Segment(roll, float(s), mood, tempo, seed, {"sec_per_bar": sec}))
    return out


def baseline_segments(
    dataset, markov: MarkovChain, styles: list[int], count: int, rng, meter: Meter = COMMON
):
    """(random-in-key, Markov) segments in ``meter``: ``count`` per style of ``styles``, half minor, half
    major requested."""
    medians = style_medians(dataset)
    rand, mark = [], []
    for s in styles:
        for i in range(count):
            mood = -1.0 if i % 2 == 0 else 1.0
            rand.append(Segment(random_in_key(SEGMENT_BARS, medians[s], mood, rng, meter), float(s), mood))
            mark.append(Segment(markov.generate(s, SEGMENT_BARS, mood, meter), float(s), mood))
    return rand, mark


# -- steering and originality -----------------------------------------------------------------------


def style_accuracy(clf: SoftmaxClassifier, segments: list[Segment]) -> dict:
    """Per-style accuracy of the classifier on 2-bar windows of segments generated at style detents."""
    hits: dict[int, list[bool]] = {}
    for seg in segments:
        pred = clf.proba(style_windows(seg.roll)).argmax(axis=1)
        hits.setdefault(int(seg.style), []).extend((pred == int(seg.style)).tolist())
    per = {k: float(np.mean(v)) for k, v in sorted(hits.items())}
    return {"per_style": per, "mean": float(np.mean(list(per.values())))}


def mode_match(segments: list[Segment]) -> float:
    """Share of segments whose estimated mode (whole segment) matches the requested mood's sign."""
    ok = []
    for seg in segments:
        _, mode, _ = windowed_key(seg.roll, radius=len(seg.roll))
        ok.append(np.sign(np.mean(mode)) == np.sign(seg.mood))
    return float(np.mean(ok))


def energy_correlation(bundle, styles: list[int], seeds: int, meter: Meter = COMMON) -> dict:
    """Pearson correlation of the tempo knob's energy with measured note density, within each style of
    ``styles``, in ``meter``."""
    t = bundle.manifest.controls.tempo
    tempos = np.linspace(t.min_bpm, t.max_bpm, 5)
    per = {}
    for s in styles:
        e, d = [], []
        for tempo in tempos:
            for seed in range(seeds):
                controls = Controls(float(s), float(tempo), 0.0, meter=meter.name)
                roll, _ = generate(bundle, controls, 100 + seed, n_bars=4)
                e.append((tempo - t.min_bpm) / (t.max_bpm - t.min_bpm))
                d.append(density(roll).mean())
        per[s] = float(np.corrcoef(e, d)[0, 1]) if np.std(d) > 0 else 0.0
    return {"per_style": per, "mean": float(np.mean(list(per.values())))}


def blend_curve(bundle, clf: SoftmaxClassifier, a: int, b: int, seeds: int) -> dict:
    """Classifier probability of style ``b`` (and ``a``) along the knob from ``a`` to ``b``."""
    positions = np.linspace(0, 1, 5)
    pb, pa = [], []
    for x in positions:
        probs = []
        for seed in range(seeds):
            roll, _ = generate(bundle, Controls(a + (b - a) * float(x), 100.0, 0.0), 200 + seed)
            probs.append(clf.proba(style_windows(roll)).mean(axis=0))
        p = np.mean(probs, axis=0)
        pb.append(float(p[b]))
        pa.append(float(p[a]))
    mono = bool(np.all(np.diff(pb) >= -0.05))
    return {"styles": [a, b], "position": positions.tolist(), "p_a": pa, "p_b": pb, "monotone": mono}


def _onset_bits(rolls: np.ndarray) -> np.ndarray:
    """2-bar windows of onset cells, packed: ``[n - 1, bytes]``."""
    on = (rolls == ONSET).reshape(len(rolls), -1)
    pairs = np.concatenate([on[:-1], on[1:]], axis=1)
    return np.packbits(pairs, axis=1)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def originality(dataset, segments: list[Segment], rng, max_train: int = 60000) -> dict:
    """Copies of 2-bar training spans (exact: identical onset cells; near: Jaccard >= 0.9), over
    generated 2-bar spans with at least 4 onsets, against up to ``max_train`` training spans.
    ``exact_copies`` compares the spans as played; ``exact_copies_any_key`` also moved by each of
    :data:`KEY_SHIFTS` (a shift that drops a note out of the range does not count)."""
    idx = np.nonzero(dataset.split == 0)[0]
    idx = idx[:-1][dataset.piece[idx[:-1]] == dataset.piece[idx[:-1] + 1]]
    idx = rng.choice(idx, min(max_train, len(idx)), replace=False)
    train = np.packbits(
        np.concatenate(
            [
                (dataset.rolls[idx] == ONSET).reshape(len(idx), -1),
                (dataset.rolls[idx + 1] == ONSET).reshape(len(idx), -1),
            ],
            axis=1,
        ),
        axis=1,
    )
    train_count = _POPCOUNT[train].sum(axis=1)
    exact = set(map(bytes, train))
    best, copies, any_key, near, spans = [], 0, 0, 0, 0
    for seg in segments:
        moved = [_onset_bits(transpose(seg.roll, k)) for k in KEY_SHIFTS]
        for j, span in enumerate(_onset_bits(seg.roll)):
            count = _POPCOUNT[span].sum()
            if count < 4:
                continue
            spans += 1
            copies += bytes(span) in exact
            any_key += any(_POPCOUNT[m[j]].sum() == count and bytes(m[j]) in exact for m in moved)
            inter = _POPCOUNT[np.bitwise_and(train, span)].sum(axis=1)
            jac = inter / (train_count + count - inter)
            best.append(float(jac.max()))
            near += jac.max() >= 0.9
    return {
        "spans": spans,
        "exact_copies": int(copies),
        "exact_copies_any_key": int(any_key),
        "near_copies": int(near),
        "nn_jaccard_p50": float(np.median(best)) if best else 0.0,
        "nn_jaccard_max": float(np.max(best)) if best else 0.0,
        "train_spans": len(idx),
    }


def seed_diversity(segments: list[Segment]) -> float:
    """Mean Jaccard of onset cells between segments of the same knobs and different seeds (1 = same)."""
    groups: dict[tuple, list[np.ndarray]] = {}
    for s in segments:
        groups.setdefault((s.style, s.mood, s.tempo), []).append((s.roll == ONSET).ravel())
    sims = []
    for rolls in groups.values():
        for i in range(len(rolls)):
            for j in range(i + 1, len(rolls)):
                union = np.logical_or(rolls[i], rolls[j]).sum()
                sims.append(np.logical_and(rolls[i], rolls[j]).sum() / union if union else 1.0)
    return float(np.mean(sims)) if sims else float("nan")


STATIC_PITCHES = 3
"""A segment whose melody strikes at most this many distinct pitches in its 8 bars is *static*."""


def melody_pitches(roll: np.ndarray) -> int:
    """Distinct pitches the melody (track 0) strikes in ``roll [n_bars, 3, 16, 64]``."""
    return int((roll[:, 0] == ONSET).any(axis=(0, 1)).sum())


def static_melodies(dataset, generated: list[Segment], per_style: int = 600) -> dict:
    """Share of 8-bar segments with a static melody (at most :data:`STATIC_PITCHES` pitches), per style:
    generated (all knob corners, and the slow tempo corner alone) against held-out real segments (all,
    and the sparsest third by melody onsets, the slow corner's company). Segments whose melody is silent
    are left out. The real segments come from their own random stream, so the eval's other draws stay
    as they were."""
    real = real_segments(dataset, 2, per_style, np.random.default_rng(1))
    slow = min(s.tempo for s in generated)

    def share(segs: list[Segment]) -> float:
        counts = [melody_pitches(s.roll) for s in segs]
        counts = [c for c in counts if c]
        return float(np.mean([c <= STATIC_PITCHES for c in counts])) if counts else float("nan")

    out = {}
    for style in sorted({int(s.style) for s in generated}):
        mine = [s for s in real if int(s.style) == style]
        onsets = np.array([(s.roll[:, 0] == ONSET).sum() for s in mine])
        third = np.percentile(onsets, 100 / 3) if len(mine) else 0
        sparse = [s for s, n in zip(mine, onsets, strict=True) if n <= third]
        gen = [s for s in generated if int(s.style) == style]
        out[style] = {
            "real": share(mine),
            "real_sparse": share(sparse),
            "model": share(gen),
            "model_slow": share([s for s in gen if s.tempo == slow]),
        }
    return out


# -- the whole evaluation ---------------------------------------------------------------------------


def evaluate(bundle, dataset, out_dir: Path, seeds: int = 3, per_style: int = 60, progress=None) -> dict:
    """Run everything, write ``report.md``, ``results.json``, plots, and MIDI/PNG samples to ``out_dir``.

    ``dataset`` holds every meter the model plays; the sections before ``meters`` are its 4/4 pieces and
    4/4 music of every style (every style's own meter), the ``meters`` section (``model/meter_eval.py``)
    repeats the targets per meter for the styles that play it."""
    from musicbox.model.meter_eval import meter_evaluation
    from musicbox.model.panel import panel_evaluation
    from musicbox.model.report import write_report

    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    styles = bundle.manifest.controls.styles
    n = len(styles)
    start = time.time()
    step = progress or (lambda name: None)
    every_meter, dataset = dataset, dataset.in_meters((COMMON.name,))
    step("real phrases and baselines")
    real = real_segments(dataset, 2, per_style, rng)
    markov = MarkovChain().fit(dataset)
    rand, mark = baseline_segments(dataset, markov, list(range(n)), per_style // 4, rng)
    step("style classifier")
    clf = SoftmaxClassifier(n).fit(*pairs_by_style(dataset, 0, 3000, rng))
    xt, yt = pairs_by_style(dataset, 2, 500, rng)
    clf_real = float((clf.proba(xt).argmax(axis=1) == yt).mean())
    step("model samples")
    gen = model_segments(bundle, list(range(n)), seeds)
    tables = {
        name: feature_table(segs)
        for name, segs in (("real", real), ("model", gen), ("markov", mark), ("random", rand))
    }
    step("steering")
    results = {
        "bundle_precision": bundle.precision,
        "features": {
            k: dict(zip(FEATURES, np.nanmean(v, axis=0).round(4).tolist(), strict=True))
            for k, v in tables.items()
        },
        "distance_to_real": {
            k: distribution_distance(tables["real"], tables[k]) for k in ("model", "markov", "random")
        },
        "style_classifier_real_test_accuracy": clf_real,
        "style_accuracy": style_accuracy(clf, gen),
        "mode_match": mode_match(gen),
        "mode_match_markov": mode_match(mark),
        "energy_density_correlation": energy_correlation(bundle, list(range(n)), seeds),
        "blends": [blend_curve(bundle, clf, i, i + 1, seeds) for i in range(n - 1)],
        "originality": originality(dataset, gen, rng),
        "seed_similarity": seed_diversity(gen),
        "static_melodies": static_melodies(dataset, gen),
        "style_names": [s.name for s in styles],
        "model_sec_per_bar": float(np.mean([s.meta["sec_per_bar"] for s in gen])),
        "eval_seconds": 0.0,
    }
    step("form")
    pieces: dict = {}
    results["form"] = form_evaluation(bundle, dataset, clf, markov, out_dir, seeds, rng, pieces)
    d = results["distance_to_real"]
    results["markov_over_model_distance"] = d["markov"]["mean"] / max(d["model"]["mean"], 1e-9)
    step("meters")
    results["meters"] = meter_evaluation(bundle, every_meter, seeds, per_style, rng)
    step("feature panel")
    results["panel"] = panel_evaluation(bundle, every_meter, seeds, np.random.default_rng(PANEL_SEED), pieces)
    results["eval_seconds"] = round(time.time() - start, 1)
    step("report")
    write_report(results, tables, gen, bundle.manifest, out_dir)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results
