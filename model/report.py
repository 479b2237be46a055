"""The evaluation report: Markdown + PNG plots + MIDI samples (``musicbox eval``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicbox.targets import target

TRACK_COLOURS = ("tab:red", "tab:green", "tab:blue")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_features(tables: dict, names: tuple[str, ...], path: Path) -> None:
    """One histogram per feature, real vs model vs baselines."""
    plt = _plt()
    fig, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(16, 6))
    for i, (ax, name) in enumerate(zip(axes.ravel(), names, strict=False)):
        values = [v[:, i][~np.isnan(v[:, i])] for v in tables.values()]
        lo, hi = min(v.min() for v in values if len(v)), max(v.max() for v in values if len(v))
        bins = np.linspace(lo, hi + 1e-9, 25)
        for label, v in zip(tables, values, strict=True):
            ax.hist(v, bins=bins, histtype="step", density=True, label=label, linewidth=1.5)
        ax.set_title(name)
    axes.ravel()[0].legend()
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_roll(roll: np.ndarray, title: str, ax, pitch_low: int) -> None:
    """Draw a roll ``[n_bars, 3, 16, 64]`` as coloured note bars (melody red, harmony green, bass blue)."""
    n, t, s, p = roll.shape
    flat = roll.transpose(1, 0, 2, 3).reshape(t, n * s, p)
    for track in range(t):
        steps, pitches = np.nonzero(flat[track])
        ax.scatter(steps, pitches + pitch_low, s=4, marker="s", color=TRACK_COLOURS[track], linewidths=0)
    for bar in range(n + 1):
        ax.axvline(bar * s, color="0.85", linewidth=0.5)
    ax.set_title(title, fontsize=8)
    ax.set_xlim(0, n * s)
    ax.set_ylim(pitch_low, pitch_low + p)
    ax.tick_params(labelsize=6)


def plot_corners(segments, style_names, path: Path, pitch_low: int) -> list[tuple]:
    """Piano-rolls of seed 0 for every style x mood corner (slow tempo); returns the segments drawn."""
    plt = _plt()
    picked = [s for s in segments if s.seed == 0 and s.tempo == min(x.tempo for x in segments)]
    fig, axes = plt.subplots(len(style_names), 2, figsize=(14, 2.2 * len(style_names)), squeeze=False)
    drawn = []
    for seg in picked:
        row, col = int(seg.style), 0 if seg.mood < 0 else 1
        mood = "dark (mood -1)" if seg.mood < 0 else "bright (mood +1)"
        plot_roll(seg.roll, f"{style_names[row]}, {mood}, {seg.tempo:.0f} BPM", axes[row, col], pitch_low)
        drawn.append((style_names[row], "dark" if seg.mood < 0 else "bright", seg))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return drawn


def plot_blends(blends: list[dict], style_names, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for b in blends:
        a, c = b["styles"]
        ax.plot(b["position"], b["p_b"], marker="o", label=f"{style_names[a]} -> {style_names[c]}")
    ax.set_xlabel("knob position between the two detents")
    ax.set_ylabel("P(second style)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def check(value: float, name: str) -> str:
    """``pass (>= 2)`` or ``FAIL (>= 2)``: ``value`` against the target ``name`` (musicbox/targets.py)."""
    goal = target(name)
    return f"{'pass' if goal.met(value) else 'FAIL'} ({goal})"


def write_report(results: dict, tables: dict, segments, manifest, out: Path) -> Path:
    """Write ``report.md`` with its plots and the corner samples as MIDI files."""
    from musicbox.runtime.midi import roll_to_midi

    names = results["style_names"]
    from musicbox.model.evaluate import FEATURES

    plot_features(tables, FEATURES, out / "features.png")
    drawn = plot_corners(segments, names, out / "corners.png", manifest.representation.pitch_low)
    plot_blends(results["blends"], names, out / "blends.png")
    (out / "midi").mkdir(exist_ok=True)
    for style, mood, seg in drawn:
        programs = manifest.controls.styles[int(seg.style)].arrangement.programs
        roll_to_midi(seg.roll, out / "midi" / f"{style}-{mood}.mid", bpm=seg.tempo, programs=programs)
    d = results["distance_to_real"]
    lines = [
        "# musicbox evaluation",
        "",
        f"Bundle precision evaluated: `{results['bundle_precision']}`; {results['eval_seconds']} s; "
        f"{results['model_sec_per_bar'] * 1000:.1f} ms per generated bar.",
        "",
        "## Targets",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| Markov distance / model distance | {results['markov_over_model_distance']:.2f} | "
        f"{check(results['markov_over_model_distance'], 'markov_over_model_distance')} |",
        f"| style accuracy (mean over styles) | {results['style_accuracy']['mean']:.3f} | "
        f"{check(results['style_accuracy']['mean'], 'style_accuracy')} |",
        f"| requested mode matched | {results['mode_match']:.3f} | "
        f"{check(results['mode_match'], 'mode_match')} |",
        f"| energy-density correlation (mean within style) | {results['energy_density_correlation']['mean']:.3f} | "
        f"{check(results['energy_density_correlation']['mean'], 'energy_density_correlation')} |",
        f"| copied 2-bar spans (exact) | {results['originality']['exact_copies']} | "
        f"{check(results['originality']['exact_copies'], 'exact_copies')} |",
        "",
        "## Features (mean) and distance to real phrases",
        "",
        "| set | " + " | ".join(FEATURES) + " | distance |",
        "|---|" + "---|" * (len(FEATURES) + 1),
    ]
    for key, feats in results["features"].items():
        dist = d[key]["mean"] if key in d else 0.0
        lines.append(f"| {key} | " + " | ".join(f"{feats[f]:.3f}" for f in FEATURES) + f" | {dist:.3f} |")
    lines += [
        "",
        "Distance: mean over features of the 1-Wasserstein distance to the real distribution, in real "
        "standard deviations. ![features](features.png)",
        "",
        "## Steering",
        "",
        f"Style classifier accuracy on real held-out bars: {results['style_classifier_real_test_accuracy']:.3f}.",
        "",
        "| style | accuracy on generated | energy-density r |",
        "|---|---|---|",
    ]
    for i, name in enumerate(names):
        acc = results["style_accuracy"]["per_style"].get(i, float("nan"))
        r = results["energy_density_correlation"]["per_style"].get(i, float("nan"))
        lines.append(f"| {name} | {acc:.3f} | {r:.3f} |")
    lines += [
        "",
        f"Requested mode matched: model {results['mode_match']:.3f}, Markov baseline (no mood input) "
        f"{results['mode_match_markov']:.3f}.",
        "",
        "Blends (classifier probability of the second style along the knob): ![blends](blends.png)",
        "",
    ]
    for b in results["blends"]:
        a, c = b["styles"]
        lines.append(
            f"- {names[a]} -> {names[c]}: P(second) "
            + ", ".join(f"{p:.2f}" for p in b["p_b"])
            + f" ({'monotone' if b['monotone'] else 'not monotone'})"
        )
    o = results["originality"]
    lines += [
        "",
        "## Originality",
        "",
        f"{o['spans']} generated 2-bar spans against {o['train_spans']} training spans: {o['exact_copies']} "
        f"exact copies as played ({o['exact_copies_any_key']} in any key), {o['near_copies']} near copies "
        f"(Jaccard >= 0.9); nearest-neighbour Jaccard p50 "
        f"{o['nn_jaccard_p50']:.3f}, max {o['nn_jaccard_max']:.3f}. Same knobs, different seeds: mean "
        f"Jaccard {results['seed_similarity']:.3f} (1 would be identical).",
        "",
        "Static melodies (at most 3 distinct melody pitches in 8 bars), share of segments:",
        "",
        "| style | real | real, sparsest third | model | model, slow tempo |",
        "|---|---|---|---|---|",
    ]
    for style, st in results["static_melodies"].items():
        lines.append(
            f"| {names[int(style)]} | {st['real']:.3f} | {st['real_sparse']:.3f} | {st['model']:.3f} | "
            f"{st['model_slow']:.3f} |"
        )
    lines += [
        "",
        "## Samples",
        "",
        "Every style x mood corner at the slow tempo, seed 0 (MIDI files in `midi/`): ![corners](corners.png)",
        "",
    ]
    if "form" in results:
        from musicbox.model.form_eval import form_report_lines

        lines += form_report_lines(results["form"])
    if "meters" in results:
        from musicbox.model.meter_eval import meter_report_lines

        lines += meter_report_lines(results["meters"])
    if "panel" in results:
        from musicbox.model.panel import panel_report_lines

        lines += panel_report_lines(results["panel"])
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
