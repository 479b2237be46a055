"""The dataset report of ``musicbox data stats``: Markdown tables and PNG plots.

What it shows: bars per style and split, per collection, per meter (kept and dropped, in source measures
and in 16-step-bar equivalents = quarter lengths / 4), mode balance, density, register and polyphony
histograms per style, and everything the builder dropped or changed, with the reason (the counters of
``model/corpus.py``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from musicbox.model.data import SPLITS, Dataset

RARE_METER_SHARE = 0.001
"""Meters with fewer than this share of all measures are grouped as "other" in the plots."""

NOTE_COUNTERS = {
    "notes_kept": "kept",
    "notes_quantized": "moved onto the 16th grid (within 1/3 step; kept)",
    "notes_folded": "folded by octaves into MIDI 33..96 (kept)",
    "notes_offgrid": "dropped: onset too far off the 16th grid",
    "notes_too_short": "dropped: no length left after quantization",
    "notes_grace": "dropped: grace note",
}

MEASURE_REASONS = {
    "dropped:meter": "meter other than 4/4, 3/4, 6/8 or one joined or split into them (3/2, ...) or none",
    "dropped:incomplete_measure": "short measure that is neither a pickup nor joinable",
    "dropped:overfull_measure": "measure longer than its time signature",
    "dropped:unpaired_2/4": "2/4 measure without a partner to make a 4/4 bar",
    "dropped:unpaired_3/8": "3/8 measure without a partner to make a 6/8 bar",
}


def write_report(ds: Dataset, meta: dict, out: str | Path) -> Path:
    """Write ``report.md`` and its PNG plots into ``out``; returns the Markdown file's path."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total: Counter[str] = Counter()
    for c in meta["counts"].values():
        total.update(c)
    sections = [
        _header(ds, meta),
        _styles(ds, meta, out),
        _collections(meta),
        _meters(ds, total, out),
        _mode(ds, out),
        _repetition(ds, out),
        _repeat_labels(ds),
        _forms(ds),
        _histograms(ds, out),
        _dropped(total),
    ]
    path = out / "report.md"
    path.write_text("\n\n".join(sections) + "\n")
    return path


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _header(ds: Dataset, meta: dict) -> str:
    works = len({name.split("@")[0] for name in ds.piece_names})
    limit = meta.get("limit_per_collection")
    lines = [
        "# musicbox phrase dataset",
        "",
        f"- {len(ds):,} bars (sixteenth steps: 16 in 4/4, 12 in 3/4 and 6/8) in "
        f"{len(ds.piece_names):,} gap-free pieces from {works:,} source works; {len(ds.phrase_starts()):,} windows of 3 consecutive bars",
        f"- builder `{meta['builder']}`, built {meta['built']}",
        f"- collections: {', '.join(meta['collections'])}"
        + (f" (at most {limit} pieces each)" if limit else " (complete)"),
        f"- melody-only bars: {int(ds.melody_only.sum()):,} ({ds.melody_only.mean():.0%})",
    ]
    return "\n".join(lines)


def _styles(ds: Dataset, meta: dict, out: Path) -> str:
    import matplotlib.pyplot as plt

    rows = []
    counts = np.bincount(ds.style, minlength=len(ds.style_names))
    for s, name in enumerate(ds.style_names):
        sel = ds.style == s
        splits = [int((ds.split[sel] == k).sum()) for k in range(len(SPLITS))]
        pieces = len(np.unique(ds.piece[sel]))
        rows.append(
            [name, meta["style_labels"][s], f"{counts[s]:,}", f"{counts[s] / len(ds):.1%}", pieces, *splits]
        )
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(ds.style_names, counts, color="tab:blue")
    ax.set_ylabel("bars")
    ax.set_title("bars per style")
    _save(fig, out / "bars_per_style.png")
    header = ["style", "what", "bars", "share", "pieces", *SPLITS]
    return "## Bars per style\n\n" + _table(header, rows) + "\n\n![bars per style](bars_per_style.png)"


def _collections(meta: dict) -> str:
    rows = []
    for name, c in meta["counts"].items():
        seen = sum(v for k, v in c.items() if k.startswith("ql:")) / 4
        rows.append(
            [name, c.get("scores", 0), c.get("pieces", 0), f"{c.get('bars_kept', 0):,}", f"{seen:,.0f}"]
        )
    header = ["collection", "scores", "pieces", "bars kept", "bar equivalents in source"]
    return "## Collections\n\n" + _table(header, rows)


def _meters(ds: Dataset, total: Counter, out: Path) -> str:
    import matplotlib.pyplot as plt

    meters = sorted(
        (k.split(":", 1)[1] for k in total if k.startswith("measures:")), key=lambda m: -total[f"ql:{m}"]
    )
    all_measures = sum(total[f"measures:{m}"] for m in meters) or 1
    kept_bars = Counter({ds.meter_names[i]: int(n) for i, n in enumerate(np.bincount(ds.meter)) if n})
    plot: Counter[tuple[str, str]] = Counter()
    rare: list[str] = []
    for m in meters:
        key = m if total[f"measures:{m}"] / all_measures >= RARE_METER_SHARE else "other"
        rare += [m] if key == "other" else []
        for field in ("measures", "measures_dropped", "ql", "ql_dropped"):
            plot[(key, field)] += total[f"{field}:{m}"]
        plot[(key, "bars")] += kept_bars[m]
    labels = [k for k in dict.fromkeys(k for k, _ in plot) if k != "other"] + (["other"] if rare else [])
    rows = [
        [m, *(f"{plot[(m, f)]:,.0f}" for f in ("measures", "measures_dropped"))]
        + [f"{plot[(m, 'ql')] / 4:,.0f}", f"{plot[(m, 'ql_dropped')] / 4:,.0f}", f"{plot[(m, 'bars')]:,}"]
        for m in labels
    ]
    kept = [(plot[(m, "ql")] - plot[(m, "ql_dropped")]) / 4 for m in labels]
    dropped = [plot[(m, "ql_dropped")] / 4 for m in labels]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    x = np.arange(len(labels))
    ax.bar(x, kept, label="kept", color="tab:green")
    ax.bar(x, dropped, bottom=kept, label="dropped")
    ax.set_xticks(x, labels, rotation=45)
    ax.set_ylabel("16-step bar equivalents")
    ax.set_title("source meters: kept vs dropped")
    ax.legend()
    _save(fig, out / "meters.png")
    header = ["meter", "measures", "measures dropped", "bar equiv.", "bar equiv. dropped", "dataset bars"]
    text = (
        "## Meters\n\nSource measures per time signature as music21 reads them, and what they cost. 2/4 "
        "and 3/8 measures are joined in pairs, 4/2, 2/1 and 12/8 split in two, so *dataset bars* differ "
        "from *measures*; *bar equiv.* is the source length in 4/4 bars.\n\n"
    )
    note = f"\n\n*other*: {len(rare)} rare signatures (under {RARE_METER_SHARE:.1%} of the measures each, "
    note += "mostly malformed ABC bars): " + ", ".join(rare) if rare else ""
    return (
        text
        + _table(header, rows)
        + note
        + "\n\n![meters](meters.png)\n\n"
        + _meter_by_style(ds)
        + "\n\n"
        + _meter_profiles(ds, out)
    )


def _meter_profiles(ds: Dataset, out: Path) -> str:
    """Onsets per bar at each grid step of a bar, per dataset meter: the accents a meter puts where."""
    import matplotlib.pyplot as plt

    from musicbox.runtime.meter import METERS
    from musicbox.runtime.pianoroll import ONSET

    fig, rows = plt.figure(figsize=(7, 3.5)), []
    for i, meter in enumerate(ds.bar_meter_names):
        bars = ds.rolls[ds.bar_meter == i]
        if not len(bars):
            continue
        steps = METERS[meter].steps
        profile = (bars[:, :, :steps] == ONSET).sum(axis=(1, 3)).mean(axis=0)  # onsets per bar at each step
        rows.append([meter, f"{len(bars):,}", " ".join(f"{v:.2f}" for v in profile)])
        plt.plot(np.arange(steps), profile, marker="o", label=meter)
    plt.xlabel("grid step (sixteenth) in the bar")
    plt.ylabel("onsets per bar")
    plt.title("onsets by position in the bar, per meter")
    plt.legend()
    _save(fig, out / "meter_profiles.png")
    text = (
        "Onsets per bar at each sixteenth of the bar, all tracks (3/4 peaks on its three beats, steps 0, 4 "
        "and 8; 6/8 on its two dotted beats, 0 and 6, and its eighths):\n\n"
    )
    return (
        text
        + _table(["meter", "bars", "onsets at steps 0, 1, ..."], rows)
        + "\n\n![profiles](meter_profiles.png)"
    )


def _meter_by_style(ds: Dataset) -> str:
    """Dataset bars per dataset meter (4/4 16 steps, 3/4 and 6/8 12 steps) and style."""
    counts = np.zeros((len(ds.bar_meter_names), len(ds.style_names)), np.int64)
    np.add.at(counts, (ds.bar_meter, ds.style), 1)
    rows = [
        [meter, *(f"{n:,}" for n in counts[i]), f"{counts[i].sum():,}"]
        for i, meter in enumerate(ds.bar_meter_names)
    ]
    text = "Dataset bars per meter (a 3/4 or 6/8 bar is 12 steps of the 16-step row) and style:\n\n"
    return text + _table(["meter", *ds.style_names, "all"], rows)


def _mode(ds: Dataset, out: Path) -> str:
    import matplotlib.pyplot as plt

    mode = ds.attrs[:, 1]
    rows, shares = [], []
    for s, name in enumerate(ds.style_names):
        m = mode[ds.style == s]
        share = (
            [float((m > 0).mean()), float((m < 0).mean()), float((m == 0).mean())] if len(m) else [0, 0, 0]
        )
        shares.append(share)
        rows.append([name, *(f"{v:.1%}" for v in share)])
    table = np.array(shares)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bottom = np.zeros(len(ds.style_names))
    for k, label in enumerate(("major", "minor", "silent")):
        ax.bar(ds.style_names, table[:, k], bottom=bottom, label=label)
        bottom += table[:, k]
    ax.set_ylabel("share of bars")
    ax.set_title("mode (5-bar key window)")
    ax.legend()
    _save(fig, out / "mode.png")
    text = "## Mode balance\n\nMode of each bar from a 5-bar Krumhansl-Schmuckler key window.\n\n"
    return text + _table(["style", "major", "minor", "silent"], rows) + "\n\n![mode](mode.png)"


def _repetition(ds: Dataset, out: Path, max_pieces: int = 300) -> str:
    """Per style, on pieces of 16+ bars (repeats played, at most ``max_pieces`` each): how often 2-bar
    phrases and bars return, and the mean bar similarity by lag (``model/form.py``)."""
    import matplotlib.pyplot as plt

    from musicbox.model.form import lag_peak, lag_profile, phrase_return_rate, similarity_matrix

    rng = np.random.default_rng(0)
    starts = ds.piece_starts()
    ends = np.r_[starts[1:], len(ds.piece)]
    rows, fig = [], plt.figure(figsize=(7, 3.5))
    for s, name in enumerate(ds.style_names):
        spans = [(a, b) for a, b in zip(starts, ends, strict=True) if ds.style[a] == s and b - a >= 16]
        chosen = [spans[i] for i in rng.permutation(len(spans))[:max_pieces]]
        profiles, returns = [], []
        for a, b in chosen:
            roll = ds.rolls[a : min(b, a + 64)]
            profiles.append(lag_profile(similarity_matrix(roll)))
            returns.append(phrase_return_rate(roll))
        if not chosen:
            continue
        with np.errstate(invalid="ignore"):
            prof = np.nanmean(np.array(profiles), axis=0)
        peak = {lag: lag_peak(prof, lag) for lag in (4, 8)}
        rows.append(
            [
                name,
                len(chosen),
                f"{np.nanmean(returns):.3f}",
                *(f"{prof[lag]:.3f}" for lag in (1, 2, 4, 8, 16)),
                f"{peak[4]:+.3f}",
                f"{peak[8]:+.3f}",
            ]
        )
        plt.plot(range(1, len(prof)), prof[1:], marker="o", label=name)
    plt.xlabel("lag (bars)")
    plt.ylabel("mean onset Jaccard")
    plt.title("bar similarity by lag (repeats played)")
    plt.legend()
    _save(fig, out / "repetition.png")
    header = [
        "style",
        "pieces",
        "2-bar returns",
        "lag 1",
        "lag 2",
        "lag 4",
        "lag 8",
        "lag 16",
        "lag-4 peak",
        "lag-8 peak",
    ]
    text = (
        "## Repetition structure\n\nPieces of 16 bars or more, repeats played (first 64 bars): the share of "
        "2-bar spans nearly repeating an earlier one (onset Jaccard >= 0.8), the mean similarity of bars "
        "`lag` apart, and how far lags 4 and 8 stand above their neighbours (`model/form.py`). The form "
        "planner's per-style forms (`model/styles.py`) are chosen from these.\n\n"
    )
    return text + _table(header, rows) + "\n\n![repetition](repetition.png)"


def _repeat_labels(ds: Dataset) -> str:
    """Per style: the share of bars whose ``repeats`` label says they nearly repeat an earlier bar, by how
    far back it is, and the share of pieces beginning with an upbeat (``place`` counts from the bar after)."""
    from musicbox.model.form import LAGS, SECTION_BARS

    starts = ds.piece_starts()
    rows = []
    for s, name in enumerate(ds.style_names):
        mine = ds.style == s
        if not mine.any():
            continue
        r = ds.repeats[mine]
        first = starts[ds.style[starts] == s]
        upbeat = ds.place[first] == SECTION_BARS - 1  # bar 0 of an upbeat piece ends a section
        other = (r > 0) & ~np.isin(r, LAGS)
        rows.append(
            [
                name,
                int(mine.sum()),
                f"{(r > 0).mean():.3f}",
                *(f"{(r == lag).mean():.3f}" for lag in LAGS),
                f"{other.mean():.3f}",
                f"{upbeat.mean():.2f}",
            ]
        )
    header = ["style", "bars", "repeat an earlier bar", *(f"lag {lag}" for lag in LAGS), "other lags"]
    text = (
        "## Which bar a bar repeats\n\nThe dataset's `repeats` label: the nearest earlier bar (within 16) "
        "that a bar nearly repeats (onset Jaccard >= 0.8), by how far back it is; the denoiser's "
        "structural context lags (8, 4, 2, 1) are where these concentrate. `place` (a bar's position in "
        "its 8-bar section, the denoiser's position input) counts from the first full bar: the last "
        "column is the share of pieces that begin with an upbeat.\n\n"
    )
    return text + _table([*header, "upbeat pieces"], rows)


def _forms(ds: Dataset) -> str:
    """Per style, and per meter where a style has 20 pieces or more in it: the tune forms of its training
    pieces (``model/form_plans.py``), which the form planner draws each tune's form from."""
    from musicbox.model.form_plans import form_statistics
    from musicbox.model.styles import DEFAULT_FORM, FORMS

    rows = []
    for s, name in enumerate(ds.style_names):
        phrase = int(FORMS.get(name, DEFAULT_FORM).get("phrase_bars", 4))  # type: ignore[call-overload]
        scopes: list[tuple[str, int | None]] = [("all", None)]
        starts = ds.piece_starts()
        for k, meter_name in enumerate(ds.bar_meter_names):
            if ((ds.style[starts] == s) & (ds.bar_meter[starts] == k) & (ds.split[starts] == 0)).sum() >= 20:
                scopes.append((meter_name, k))
        for label, meter in scopes:
            st = form_statistics(ds, s, phrase, meter)
            if not st["pieces"]:
                continue
            plans = ", ".join(
                f"{p['sections']}/{p['section_bars']}/{p['phrase_bars']}{('/' + p['phrases']) if p['phrases'] else ''} "
                f"{p['weight']:.2f}"
                for p in st["plans"][:4]
            )
            tune = "/".join(f"{v:.0f}" for v in st["tune_bars"])
            rows.append(
                [
                    name,
                    label,
                    st["pieces"],
                    tune,
                    f"{st['sections_4']:.2f}",
                    f"{st['sections_8']:.2f}",
                    f"{st['phrase_pairs']:.2f}",
                    f"{st['returning']:.2f}",
                    plans,
                ]
            )
    header = [
        "style",
        "meter",
        "pieces",
        "tune bars p10/p50/p90",
        "4-bar sections",
        "8-bar sections",
        "phrase pairs",
        "returning",
        "plans (sections/section bars/phrase bars/phrases weight)",
    ]
    text = (
        "## Tune forms\n\nThe tune form (sections of 4 or 8 bars, phrases, phrase pairs returning within a "
        "section) that best explains each training piece's returns (`model/form_plans.py`; pieces from "
        "their first full bar, repeats played), per style and per meter it has 20 pieces in: the shares of "
        "pieces whose form has 4- and 8-bar sections, returning phrase pairs and any return, and the most "
        "frequent forms with their weights (the `plans` of the style's form table that each tune draws "
        "from).\n\n"
    )
    return text + _table(header, rows)


def _histograms(ds: Dataset, out: Path) -> str:
    import matplotlib.pyplot as plt

    specs: list[tuple[int, str, str, np.ndarray | None]] = [
        (0, "density", "onsets per bar", np.arange(0, 81, 2)),
        (2, "register", "mean MIDI pitch", None),
    ]
    specs.append((3, "polyphony", "sounding notes", np.arange(0, 8.25, 0.25)))
    rows = []
    for col, name, unit, bins in specs:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        values = ds.attrs[:, col]
        edges = bins if bins is not None else np.arange(np.floor(values.min()), np.ceil(values.max()) + 1)
        for s, style in enumerate(ds.style_names):
            v = values[ds.style == s]
            if len(v):
                ax.hist(v, bins=edges.tolist(), histtype="step", density=True, label=style, linewidth=1.5)
                p10, p50, p90 = np.percentile(v, [10, 50, 90])
                rows.append([name, style, f"{p10:.1f}", f"{p50:.1f}", f"{p90:.1f}"])
        ax.set_xlabel(unit)
        ax.set_ylabel("density")
        ax.set_title(f"{name} per bar")
        ax.legend()
        _save(fig, out / f"{name}.png")
    images = "\n".join(f"![{n}]({n}.png)" for _, n, _, _ in specs)
    header = ["attribute", "style", "p10", "p50", "p90"]
    return "## Density, register, polyphony\n\n" + _table(header, rows) + "\n\n" + images


def _dropped(total: Counter) -> str:
    notes = total["notes"] or 1
    note_rows = [[label, f"{total[k]:,}", f"{total[k] / notes:.2%}"] for k, label in NOTE_COUNTERS.items()]
    measure_rows = [[label, f"{total[k]:,}"] for k, label in MEASURE_REASONS.items()]
    other = [
        ["pickups padded with silence to the bar line", f"{total['pickup_padded']:,}"],
        ["pairs of short measures joined into one", f"{total['measures_joined']:,}"],
        ["bars dropped in runs shorter than 3 bars", f"{total['bars_short_run']:,}"],
        ["scores music21 could not read", f"{total['scores_unreadable']:,}"],
        ["scores that failed to convert", f"{total['scores_failed']:,}"],
        ["scores without measures", f"{total['scores_without_measures']:,}"],
    ]
    return (
        "## What was dropped or changed\n\n"
        f"Notes (of {total['notes']:,} inside kept bars, grace notes apart):\n\n"
        + _table(["notes", "count", "share"], note_rows)
        + "\n\nMeasures dropped, by reason:\n\n"
        + _table(["reason", "measures"], measure_rows)
        + "\n\nOther:\n\n"
        + _table(["what", "count"], other)
    )


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
