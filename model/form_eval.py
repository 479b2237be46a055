"""The form section of ``musicbox eval``: long generated pieces against real pieces and the baselines.

Per style, on the metrics of :mod:`musicbox.model.form`:

- **real**: held-out corpus pieces (validation and test splits) of at least :data:`REAL_MIN_BARS`
  bars, their repeats played (the dataset expands them);
- **model**: ``2 x seeds`` :data:`~musicbox.model.form.FORM_BARS`-bar pieces per style from the bundle through the runtime's
  ``Generator`` (its form planner) at the default variation, and at the variation control's two ends
  (0: literal returns, 1: new music at every return, i.e. no planned returns);
- **markov**: the first-order Markov baseline, same length.

Also the style turn: the eval's style classifier's probability of the new style on the first bar
after a turn from each other style, over the same on the first bar of a piece started in that style;
and the mood turn (:func:`mood_turns`): how much of the music after a turn from -1 to +1 is in major,
against a piece started at +1.
A self-similarity PNG per style shows a real piece beside a generated one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicbox.model.form import FORM_BARS, piece_metrics, similarity_matrix, summarize
from musicbox.runtime.controls import VARIATION, Controls

REAL_MIN_BARS = 16
"""Shortest real piece (repeats played) in the form comparison."""

VARIATIONS = {"model": VARIATION, "model_literal": 0.0, "model_new": 1.0}
"""Generated sets: the default variation and the control's two ends."""


def real_pieces(dataset, style: int, count: int, rng) -> list[np.ndarray]:
    """Up to ``count`` held-out pieces of ``style`` with at least :data:`REAL_MIN_BARS` bars, each at
    most :data:`FORM_BARS` bars (from its start)."""
    held_out = (dataset.split > 0) & (dataset.style == style)
    pieces, starts, lengths = np.unique(dataset.piece[held_out], return_index=True, return_counts=True)
    index = np.nonzero(held_out)[0]
    long = [(index[s], n) for s, n in zip(starts, lengths, strict=True) if n >= REAL_MIN_BARS]
    chosen = rng.permutation(len(long))[:count]
    return [dataset.rolls[long[i][0] : long[i][0] + min(long[i][1], FORM_BARS)] for i in chosen]


def generated_piece(
    bundle, controls: Controls, seed: int, bars: int = FORM_BARS, voicing: bool = True
) -> np.ndarray:
    """``bars`` bars from a fresh generator, ``[bars, 3, 16, 64]`` (``voicing`` False: without the
    voice-leading pass, ``runtime/voicing.py``)."""
    from musicbox.runtime.generator import Generator

    gen = Generator(bundle, seed=seed, voicing=voicing)
    return np.concatenate([gen.next_bar(controls).roll for _ in range(bars)])


def style_turns(bundle, clf, seeds: int) -> dict:
    """Classifier probability of the new style on the first bar after a turn, relative to a start."""
    from musicbox.model.evaluate import style_windows
    from musicbox.runtime.generator import Generator

    n = len(bundle.manifest.controls.styles)

    def p_style(bar_roll: np.ndarray, style: int) -> float:
        return float(clf.proba(style_windows(np.concatenate([bar_roll, bar_roll])))[0, style])

    per = {}
    for target in range(n):
        turned, started = [], []
        for seed in range(seeds):
            started.append(p_style(generated_piece(bundle, Controls(float(target)), 500 + seed, 1), target))
            for source in (s for s in range(n) if s != target):
                gen = Generator(bundle, seed=500 + seed)
                for _ in range(4):
                    gen.next_bar(Controls(float(source)))
                turned.append(p_style(gen.next_bar(Controls(float(target))).roll, target))
        per[target] = {"turned": float(np.mean(turned)), "started": float(np.mean(started))}
        per[target]["ratio"] = per[target]["turned"] / max(per[target]["started"], 1e-9)
    return {"per_style": per, "mean_ratio": float(np.mean([v["ratio"] for v in per.values()]))}


MOOD_TURN_BAR = 6
"""The bar at which :func:`mood_turns` turns the mood from -1 to +1."""


def major_share(roll: np.ndarray) -> float:
    """The share of consecutive 2-bar windows of ``roll [n, 3, S, 64]`` whose key (Krumhansl-Schmuckler on
    the window's pitch classes) is major."""
    from musicbox.runtime.features import estimate_key, pitch_class_histogram

    hist = pitch_class_histogram(roll)
    windows = hist[: len(hist) // 2 * 2].reshape(-1, 2, 12).sum(axis=1)
    _, mode, _ = estimate_key(windows)
    return float(np.mean(mode > 0)) if len(mode) else float("nan")


def mood_turns(bundle, seeds: int, bars: int = 24, variation: float = VARIATION) -> dict:
    """Per style: the share of 2-bar windows in major over the ``bars`` bars after a mood turn -1 -> +1 at
    bar :data:`MOOD_TURN_BAR` (``variation``), against the same bars of a piece started at +1 with the same
    seed, and of one started at -1 (a style whose two ends differ by less than 0.2 does not play both
    modes)."""
    from musicbox.runtime.generator import Generator

    out = {}
    n = MOOD_TURN_BAR + bars
    for s, style in enumerate(bundle.manifest.controls.styles):
        shares: dict[str, list[float]] = {"turned": [], "bright": [], "dark": []}
        for seed in range(seeds):
            for name, moods in (
                ("turned", [-1.0] * MOOD_TURN_BAR + [1.0] * bars),
                ("bright", [1.0] * n),
                ("dark", [-1.0] * n),
            ):
                gen = Generator(bundle, seed=700 + seed)
                rolls = [gen.next_bar(Controls(float(s), 100.0, m, variation)).roll for m in moods]
                shares[name].append(major_share(np.concatenate(rolls[MOOD_TURN_BAR:])))
        figure = {name: float(np.mean(v)) for name, v in shares.items()}
        figure["both_modes"] = figure["bright"] - figure["dark"] >= 0.2
        figure["ratio"] = figure["turned"] / max(figure["bright"], 1e-9)
        out[style.name] = figure
    return out


def plot_self_similarity(real: np.ndarray, generated: np.ndarray, title: str, path: Path) -> None:
    """Two self-similarity matrices side by side (bars x bars, onset Jaccard)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, roll, name in zip(axes, (real, generated), ("real (repeats played)", "generated"), strict=True):
        ax.imshow(np.nan_to_num(similarity_matrix(roll)), cmap="magma", vmin=0, vmax=1, origin="lower")
        ax.set_title(f"{name}: {len(roll)} bars")
        ax.set_xlabel("bar")
    axes[0].set_ylabel("bar")
    fig.suptitle(f"{title}: self-similarity of bars (onset Jaccard)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def form_evaluation(
    bundle, dataset, clf, markov, out_dir: Path, seeds: int, rng, pieces: dict | None = None
) -> dict:
    """Every form metric per style and overall for real, model (three variations) and Markov pieces;
    the style-turn figure; a self-similarity PNG per style in ``out_dir``. ``pieces``: when given, each
    style's real and default-variation pieces are put in it (style name -> {"real", "model"}: the feature
    panel, ``model/panel.py``, reads the same pieces)."""
    styles = bundle.manifest.controls.styles
    count = 2 * seeds  # generated pieces per set and style
    per_style: dict[str, dict] = {}
    for s, style in enumerate(styles):
        phrase = style.form.phrase_bars
        sets = {"real": real_pieces(dataset, s, 40, rng)}
        for name, variation in VARIATIONS.items():
            sets[name] = [
                generated_piece(bundle, Controls(float(s), 100.0, (-0.5, 0.5)[seed % 2], variation), seed)
                for seed in range(count)
            ]
        sets["markov"] = [markov.generate(s, FORM_BARS, 0.0) for _ in range(count)]
        if pieces is not None:
            pieces[style.name] = {"real": sets["real"], "model": sets["model"]}
        per_style[style.name] = {
            name: summarize([piece_metrics(r, phrase) for r in rolls]) | {"pieces": len(rolls)}
            for name, rolls in sets.items()
        }
        if sets["real"]:
            path = out_dir / f"self_similarity_{style.name}.png"
            plot_self_similarity(sets["real"][0], sets["model"][0], style.label, path)
    names = next(iter(per_style.values())).keys()
    overall = {
        name: summarize([{k: v for k, v in per_style[s][name].items() if k != "pieces"} for s in per_style])
        for name in names
    }
    return {
        "per_style": per_style,
        "overall": overall,
        "style_turn": style_turns(bundle, clf, seeds),
        "mood_turn": mood_turns(bundle, seeds),
    }


REPORTED = (
    ("phrase_return_rate", "2-bar phrases that return"),
    ("bar_repeat_rate", "bars repeating an earlier bar"),
    ("similarity_lag1", "similarity lag 1"),
    ("similarity_lag2", "similarity lag 2"),
    ("similarity_lag4", "similarity lag 4"),
    ("similarity_lag8", "similarity lag 8"),
    ("similarity_lag16", "similarity lag 16"),
    ("lag4_peak", "lag-4 peak"),
    ("lag8_peak", "lag-8 peak"),
    ("cadence_rate", "cadence downbeats"),
    ("cadence_phrase_end", "cadences at phrase ends / downbeats"),
    ("melody_range", "melody range (semitones / 16 bars)"),
    ("long_notes", "melody notes >= 1 bar"),
    ("melody_rests_per_100", "bars with a melody rest >= 1 beat, per 100"),
    ("melody_chord_onsets", "melody onsets with 2+ melody pitches"),
    ("parallel_fifths_per_100", "parallel fifths per 100 moves"),
    ("parallel_octaves_per_100", "parallel octaves per 100 moves"),
    ("strong_beat_clashes", "strong-beat semitone clashes"),
    ("home_key", "8-bar windows in the home key"),
    ("mode_flips", "windows in the other mode"),
)
SETS = ("real", "model", "model_literal", "model_new", "markov")


def form_checks(form: dict) -> list[tuple[str, float, str, bool]]:
    """The form targets: (what, model value, bound from the real value, met), overall and per style.
    Bounds are multiples of the real figure, so a style whose real pieces hardly return (or show no
    lag-8 stripe) asks the same of the model."""
    checks = []
    scopes = {"overall": form["overall"], **form["per_style"]}
    for scope, sets in scopes.items():
        real, model = sets["real"], sets["model"]
        r, m = real["phrase_return_rate"], model["phrase_return_rate"]
        checks.append(
            (
                f"{scope}: phrase return rate",
                m,
                f"{0.6 * r:.3g} .. {1.5 * r:.3g} (real {r:.3g})",
                0.6 * r <= m <= 1.5 * r,
            )
        )
        r, m = real["lag8_peak"], model["lag8_peak"]
        checks.append((f"{scope}: lag-8 peak", m, f">= {0.6 * r:.3g} (real {r:.3g})", bool(m >= 0.6 * r)))
        for key in ("melody_chord_onsets", "parallel_fifths_per_100", "strong_beat_clashes"):
            if np.isfinite(real[key]) and np.isfinite(model[key]):
                r, m = real[key], model[key]
                checks.append((f"{scope}: {key}", m, f"<= {2 * r:.3g} (real {r:.3g})", m <= 2 * r))
    if "chorale" in form["per_style"]:
        value = form["per_style"]["chorale"]["model"]["cadence_phrase_end"]
        checks.append(("chorale: cadences at phrase ends / downbeats", value, ">= 0.05", value >= 0.05))
    turn = form["style_turn"]["mean_ratio"]
    checks.append(("first bar after a style turn / a start (classifier)", turn, ">= 0.7", turn >= 0.7))
    for name, turn in form.get("mood_turn", {}).items():
        if turn["both_modes"]:
            checks.append(
                (
                    f"{name}: major windows after a mood turn -1 -> +1 / a start at +1",
                    turn["ratio"],
                    ">= 0.85",
                    turn["ratio"] >= 0.85,
                )
            )
    lit, new = form["overall"]["model_literal"], form["overall"]["model_new"]
    spread = lit["phrase_return_rate"] - new["phrase_return_rate"]
    checks.append(("return rate, variation 0 minus variation 1", spread, "> 0", spread > 0))
    return checks


def form_report_lines(form: dict) -> list[str]:
    """The Markdown of the form section."""
    lines = [
        "## Form",
        "",
        f"Generated pieces: {FORM_BARS} bars from a fresh generator (its form planner) at the default "
        f"variation {VARIATION} (`model`), at variation 0 (`model_literal`) and 1 (`model_new`); real: "
        f"held-out corpus pieces of at least {REAL_MIN_BARS} bars with their repeats played (at most "
        f"{FORM_BARS} bars each); `markov`: the Markov baseline. Metrics: `model/form.py`.",
        "",
        "| target | model | bound | met |",
        "|---|---|---|---|",
    ]
    for what, value, bound, ok in form_checks(form):
        lines.append(f"| {what} | {value:.3f} | {bound} | {'yes' if ok else 'NO'} |")
    for scope, sets in {"overall": form["overall"], **form["per_style"]}.items():
        counts = (
            ", ".join(f"{name} {sets[name].get('pieces', '-')}" for name in SETS)
            if scope != "overall"
            else ""
        )
        lines += ["", f"### {scope}" + (f" (pieces: {counts})" if counts else ""), ""]
        lines += ["| metric | " + " | ".join(SETS) + " |", "|---|" + "---|" * len(SETS)]
        for key, label in REPORTED:
            lines.append(f"| {label} | " + " | ".join(f"{sets[name][key]:.3f}" for name in SETS) + " |")
        if scope != "overall":
            lines += ["", f"![self-similarity {scope}](self_similarity_{scope}.png)"]
    t = form["style_turn"]["per_style"]
    lines += [
        "",
        "Style turns: the classifier's probability of the new style on the first bar after a turn from "
        "each other style (after 4 bars), and on the first bar of a piece started in it:",
        "",
        "| style | after a turn | at a start | ratio |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {v['turned']:.3f} | {v['started']:.3f} | {v['ratio']:.2f} |" for k, v in t.items()]
    if "mood_turn" in form:
        lines += [
            "",
            f"Mood turns: the share of 2-bar windows in major over the {24} bars after a turn of the mood "
            f"from -1 to +1 at bar {MOOD_TURN_BAR} (variation {VARIATION}; returns of themes written at -1 "
            "come back in the major), against the same bars of pieces started at +1 and at -1 with the "
            "same seeds:",
            "",
            "| style | after the turn | started at +1 | started at -1 | ratio |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {k} | {v['turned']:.3f} | {v['bright']:.3f} | {v['dark']:.3f} | {v['ratio']:.2f} |"
            for k, v in form["mood_turn"].items()
        ]
    return lines + [""]
