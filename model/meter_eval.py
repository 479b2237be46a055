"""``musicbox eval``'s meter section: every target of the evaluation per meter, and whether a bar of 3/4 or
6/8 moves like one.

For each meter the model plays (``representation.meters``), on the styles that play it (a style's
``meters``) and the dataset's pieces in it:

- the existing targets (``model/evaluate.py``): distance of generated 8-bar segments to real ones vs the
  Markov chain's (fit on that meter's pieces, writing that meter's bars), mode matched, style accuracy (a
  style classifier fit on that meter's real bars), energy-density correlation, exact copies of 2-bar
  training spans of that meter;
- the **onset profile**: onsets per bar at each step of the meter's bar (all tracks), generated vs
  real; their Pearson correlation (a 3/4 bar peaks on steps 0, 4 and 8, a 6/8 bar on 0 and 6);
- a **meter classifier** that hears the music without its bar lines: softmax regression over every
  meter on windows of :data:`STREAM_STEPS` sixteenths of consecutive bars played one after another (a
  12-step bar's silent padding left out, so neither a bar's length nor where it starts gives the meter
  away), reading the autocorrelation at lags 1..:data:`LAGS` of three onset series: onsets per step,
  onsets of notes longer than a step, bass onsets. A waltz's accents recur every 12 steps and subdivide
  by 4, a jig's recur every 12 and subdivide by 6, a reel's recur every 16. Fit on real training bars.
  Per meter: the share of generated windows it puts in their meter (``classified_as_meter``), and for
  3/4 and 6/8 the share it gives their meter a higher probability than 4/4 (``told_from_common``: told
  apart from 4/4), each beside the same share on real held-out windows (the classifier's own ceiling).
  Real held-out windows, by the largest lag: 16: 3/4 told from 4/4 0.92, all meters right 0.91; 32:
  0.95, 0.94; 48: 0.94, 0.92; 64: 0.97, 0.95; 6/8 0.99 or more at each. The classifier it replaced read
  the first 12 steps of each bar of 4-bar windows and told real 3/4 from 4/4 on 0.844 only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from musicbox.model.baselines import MarkovChain
from musicbox.model.evaluate import (
    SoftmaxClassifier,
    baseline_segments,
    distribution_distance,
    energy_correlation,
    feature_table,
    mode_match,
    model_segments,
    originality,
    pairs_by_style,
    real_segments,
    style_accuracy,
)
from musicbox.runtime.meter import METERS, Meter
from musicbox.runtime.pianoroll import HELD, ONSET

STREAM_STEPS = 96
"""Sixteenths per window of the meter classifier: 8 bars of 3/4 or 6/8, 6 of 4/4, one generated
segment's first bars in every meter."""
LAGS = 64
"""Largest autocorrelation lag the meter classifier reads, in sixteenths (picked on real held-out
windows, see the module)."""


def stream_series(rolls: np.ndarray, meter: Meter) -> np.ndarray:
    """Consecutive bars ``rolls [n, T, 16, P]`` of ``meter`` played as one stream, padding left out:
    onsets per step, onsets of notes longer than a step, onsets of the bass (the last track):
    ``[3, n * meter.steps]``."""
    flat = rolls[:, :, : meter.steps].transpose(1, 0, 2, 3).reshape(rolls.shape[1], -1, rolls.shape[3])
    onset = flat == ONSET  # [T, time, P]
    held_next = np.zeros_like(onset)
    held_next[:, :-1] = flat[:, 1:] == HELD
    return np.stack(
        [onset.sum(axis=(0, 2)), (onset & held_next).sum(axis=(0, 2)), onset[-1].any(axis=1)]
    ).astype(np.float32)


def meter_features(rolls: np.ndarray, meter: Meter) -> np.ndarray:
    """The meter classifier's input for one window: the autocorrelation at lags 1..:data:`LAGS` of each
    :func:`stream_series` over the first :data:`STREAM_STEPS` steps of ``rolls`` (consecutive bars of
    one piece): ``[3 * LAGS]``."""
    x = stream_series(rolls, meter)[:, :STREAM_STEPS]
    x = x - x.mean(axis=1, keepdims=True)
    var = (x * x).mean(axis=1) + 1e-6
    lags = [(x[:, :-k] * x[:, k:]).mean(axis=1) / var for k in range(1, LAGS + 1)]
    return np.stack(lags, axis=1).reshape(-1)


def onset_profile(rolls: np.ndarray, meter: Meter) -> np.ndarray:
    """Mean onsets per bar at each of the meter's steps, all tracks: ``[meter.steps]``."""
    return (rolls[:, :, : meter.steps] == ONSET).sum(axis=(1, 3)).mean(axis=0)


def _meter_windows(dataset, split: int, per_meter: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_meter`` windows per meter of ``dataset.bar_meter_names`` from ``split``, each from the
    bars of one piece: features and labels."""
    xs, ys = [], []
    for k, name in enumerate(dataset.bar_meter_names):
        meter = METERS[name]
        n_bars = -(-STREAM_STEPS // meter.steps)
        idx = np.nonzero((dataset.split == split) & (dataset.bar_meter == k))[0]
        idx = idx[idx + n_bars <= len(dataset.piece)]
        idx = idx[dataset.piece[idx + n_bars - 1] == dataset.piece[idx]]
        idx = rng.choice(idx, min(per_meter, len(idx)), replace=False)
        xs += [meter_features(dataset.rolls[i : i + n_bars], meter) for i in idx]
        ys.append(np.full(len(idx), k))
    return np.stack(xs), np.concatenate(ys)


def _shares(proba: np.ndarray, k: int) -> tuple[float, float]:
    """Of windows of meter column ``k`` with class probabilities ``proba``: the share put in ``k``, and
    the share giving ``k`` more than column 0 (4/4)."""
    return float((proba.argmax(axis=1) == k).mean()), float((proba[:, k] > proba[:, 0]).mean())


def meter_evaluation(bundle, dataset, seeds: int, per_style: int, rng) -> dict:
    """The meter section of the evaluation (see the module); ``dataset`` holds every meter's pieces."""
    styles = bundle.manifest.controls.styles
    names = dataset.bar_meter_names
    meters_clf = SoftmaxClassifier(len(names)).fit(*_meter_windows(dataset, 0, 4000, rng))
    xt, yt = _meter_windows(dataset, 2, 1000, rng)
    real_proba = meters_clf.proba(xt)
    out: dict[str, Any] = {"classifier_real_test_accuracy": float((real_proba.argmax(axis=1) == yt).mean())}
    for name in bundle.manifest.representation.meters:
        meter = METERS[name]
        playing = [i for i, s in enumerate(styles) if name in s.meters]
        data = dataset.in_meters((name,))
        real = [s for s in real_segments(data, 2, per_style, rng) if int(s.style) in playing]
        markov = MarkovChain().fit(data, meter=meter)
        _, mark = baseline_segments(data, markov, playing, per_style // 4, rng, meter)
        gen = model_segments(bundle, playing, seeds, meter)
        tables = {k: feature_table(v) for k, v in (("real", real), ("model", gen), ("markov", mark))}
        model_d = distribution_distance(tables["real"], tables["model"])["mean"]
        markov_d = distribution_distance(tables["real"], tables["markov"])["mean"]
        style_clf = SoftmaxClassifier(len(styles)).fit(*pairs_by_style(data, 0, 3000, rng))
        real_rolls = np.concatenate([s.roll for s in real])
        gen_rolls = np.concatenate([s.roll for s in gen])
        real_profile, gen_profile = onset_profile(real_rolls, meter), onset_profile(gen_rolls, meter)
        k = names.index(name)
        copies = originality(data, gen, rng)
        gen_windows = np.stack([meter_features(s.roll, meter) for s in gen])
        as_meter, told = _shares(meters_clf.proba(gen_windows), k)
        real_as_meter, real_told = _shares(real_proba[yt == k], k)
        out[name] = {
            "styles": [styles[i].name for i in playing],
            "segments": {"real": len(real), "model": len(gen)},
            "markov_over_model_distance": markov_d / max(model_d, 1e-9),
            "mode_match": mode_match(gen),
            "style_accuracy": style_accuracy(style_clf, gen)["mean"],
            "energy_density_correlation": energy_correlation(bundle, playing, seeds, meter)["mean"],
            "exact_copies": copies["exact_copies"],
            "exact_copies_any_key": copies["exact_copies_any_key"],
            "onset_profile": {"real": real_profile.round(3).tolist(), "model": gen_profile.round(3).tolist()},
            "profile_correlation": float(np.corrcoef(real_profile, gen_profile)[0, 1]),
            "classified_as_meter": as_meter,
            "classified_as_meter_real": real_as_meter,
        }
        if k:
            out[name] |= {"told_from_common": told, "told_from_common_real": real_told}
    return out


def meter_report_lines(section: dict) -> list[str]:
    """The report's meter section: a table of the targets per meter and the onset profiles."""
    from musicbox.targets import target

    keys = (
        "markov_over_model_distance",
        "mode_match",
        "style_accuracy",
        "energy_density_correlation",
        "exact_copies",
        "profile_correlation",
        "told_from_common",
    )
    meters = [m for m in section if m in METERS]
    lines = [
        "## Meters",
        "",
        "Every target per meter, on the styles that play it and the dataset's pieces in it (see "
        "`model/meter_eval.py`). The meter classifier (every meter; the autocorrelation of onsets over "
        f"{STREAM_STEPS} sixteenths of bars played one after another, no bar lines) is right on {section['classifier_real_test_accuracy']:.3f} of real held-out "
        "windows; *told from 4/4*: the share of windows it gives their meter more than 4/4, generated "
        "(real held-out in brackets).",
        "",
        "| meter | styles | " + " | ".join(keys) + " | classified as its meter |",
        "|---|---|" + "---|" * (len(keys) + 1),
    ]
    for m in meters:
        row = section[m]
        cells = [
            f"{row[k]:.3f} {'pass' if target(k).met(row[k]) else 'FAIL'}" if k in row else "-" for k in keys
        ]
        if "told_from_common" in row:
            cells[-1] += f" ({row['told_from_common_real']:.3f})"
        cells.append(f"{row['classified_as_meter']:.3f} ({row['classified_as_meter_real']:.3f})")
        lines.append(f"| {m} | {', '.join(row['styles'])} | " + " | ".join(cells) + " |")
    lines += ["", "Targets: " + ", ".join(f"{k} {target(k)}" for k in keys) + ".", ""]
    lines += ["Onsets per bar at each step (all tracks), real / generated:", ""]
    for m in meters:
        p = section[m]["onset_profile"]
        lines.append(f"- {m} real: " + " ".join(f"{v:.2f}" for v in p["real"]))
        lines.append(f"- {m} model: " + " ".join(f"{v:.2f}" for v in p["model"]))
    return lines + [""]
