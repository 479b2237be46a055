"""Per-style tables for the knobs: what each style family sounds like and how the knobs map onto it.

Measured from the dataset (density, register and polyphony quantiles per style) plus the arrangement the
box plays it with (General MIDI programs per track, 0-based; drum family; swing). Copied into the
checkpoint config and from there into the bundle manifest's ``controls.styles``.
"""

from __future__ import annotations

import numpy as np

from musicbox.model.form_plans import corpus_plans, key_moves
from musicbox.runtime.features import ATTRS

MODEL_METERS = ("4/4", "3/4", "6/8")
"""The dataset meters the model is trained and evaluated on (``Dataset.in_meters``; its denoiser's
``meter`` input, ``nets.DenoiserConfig.meters``)."""

STYLE_METER_BARS = 2000
"""A style plays a meter when its training split has at least this many bars in it (chorales have 1,159
bars of 3/4 in all, renaissance none: they stay in 4/4)."""

# name -> (label, programs [melody, harmony, bass], drums, swing 0..1 (1 = triplet swing), base velocity 1..127)
ARRANGEMENTS = {
    "chorale": ("Bach chorales", [19, 19, 19], "none", 0.0, 80),
    "renaissance": ("Renaissance polyphony", [52, 52, 52], "none", 0.0, 72),
    "quartet": ("Classical string quartet", [40, 41, 42], "none", 0.0, 84),
    "folk": ("European folk song", [73, 24, 32], "folk", 0.0, 88),
    "celtic": ("Celtic dance tune", [110, 46, 32], "dance", 0.6, 96),
}
DEFAULT_ARRANGEMENT = ("", [0, 0, 32], "none", 0.0, 80)

# name -> form (runtime/form.py FormSpec). Chosen from the corpus's repetition structure (held-out pieces,
# repeats played: `musicbox data stats`, `musicbox eval`'s form section) and measured on the model at the
# default variation: chorales in bar form (Stollen, Stollen, Abgesang; CHORALE_PLANS) of 2-bar phrases,
# each phrase ending on a held note (cadence_density 0.7: without it 3 % of downbeats cadence at phrase
# ends, with it 10 %); polyphony through-composed but for a loose recall of its opening (the corpus
# repeats 0.5 % of its 2-bar spans); quartets: QUARTET_PLANS; folk songs AABA in 8-bar periods (their
# tunes draw their corpus's forms: CORPUS_FORMED); dance tunes AABB in 8-bar strains. return_noise sets
# how far a return strays at the default variation; since the denoiser sees the bar 8 back (it follows a
# returning strain's first playing by itself), each is chosen so the 2-bar return rate meets the corpus's: 8 pieces of 64 bars a style,
# other seeds than the eval's, chorale 1.1 / 1.3 -> 0.30 / 0.17 (corpus 0.22), folk 1.3 / 1.45 -> 0.27 /
# 0.16 (0.22); 16 pieces: quartet 1.3 / 1.32 -> 0.10 / 0.07 (0.07); renaissance, on the model trained on
# every meter, 48 pieces: 1.32 / 1.34 / 1.36 / 1.4 -> 0.012 / 0.008 / 0.004 / 0.003 (0.005); with the register
# asked once a phrase (runtime/form.py Shaping), folk 24 pieces: 1.35 / 1.25 / 1.15 -> 0.13 / 0.23 / 0.34
# (0.22), renaissance 36 pieces at 1.35: 0.006 (0.005). Each section letter asks for its own
# register (semitones above A): the contour that widens the melody's range toward the corpus's.
# Measured and left out, for what they cost the mood's mode in the first bars (share of 60 8-bar
# segments in the requested mode): a reel's a a' phrases within a strain (0.72 vs 0.78, though their
# lag-4 peak matched the corpus's), 4-bar sections that return at bar 4 (chorale 0.92 vs 0.97, folk
# 0.90 vs 0.98), and phrase-end breathing outside chorales (it also cost distance to the corpus's density).
QUARTET_PLANS = [
    {"sections": "ABCD", "section_bars": 8, "phrase_bars": 4, "phrases": "", "weight": 0.32},
    {"sections": "ABCD", "section_bars": 8, "phrase_bars": 4, "phrases": "aa", "weight": 0.091},
    {"sections": "AABC", "section_bars": 8, "phrase_bars": 4, "phrases": "", "weight": 0.137},
    {"sections": "ABAC", "section_bars": 8, "phrase_bars": 4, "phrases": "", "weight": 0.183},
    {"sections": "ABCA", "section_bars": 8, "phrase_bars": 4, "phrases": "", "weight": 0.268},
]
"""The quartet's tunes: 8-bar sections whose returns lie where the corpus's do. A quartet's returns are few
and far apart, at distances no one plan of sections places (``form_plans.FORMED`` leaves it out), so its
plans are one per distance, weighted by the corpus. The training split's 4/4 quartet pieces of 16 bars or
more (25, first 64 bars): 0.68 of them have a 2-bar span nearly repeating an earlier one (Jaccard >= 0.8,
``model/form.py``); of their returning spans the nearest match lies 4 bars back for 0.158 (a parallel
period: the consequent phrase begins like the antecedent, ``phrases`` "aa", 12 returning bars a tune), 8
bars for 0.158 (AABC), 9-20 for 0.211 (ABAC: back at 16) and 21 or more for 0.309 (ABCA: the opening theme
after the contrasting sections, back at 24); 2, 3 or 6 bars for the other 0.164, which no plan of 8-bar
sections places. Each plan's weight is its share over its returning bars a tune, scaled to the 0.68 that
return; the tunes without a return (0.32) play ABCD. Its returns are as close as the corpus's
(``CORPUS_RETURN_NOISE``, 0.8): at the hand-set 1.32 a return further back than the denoiser's context (8
bars) is not heard (ABAC: 0.000 of 2-bar spans return, 20 pieces of 64 bars). Against AABA at 1.32, 40
pieces of 64 bars (seeds 0-39, the form eval's knobs): lag-8 peak 0.190 -> 0.034 (real held-out 0.027),
2-bar spans returning 0.060 -> 0.085 (0.068); but the lag-4 peak 0.054 (0.024)."""

CHORALE_PLANS = [
    {"sections": "AABC", "section_bars": 4, "phrase_bars": 2, "phrases": "", "weight": 0.74},
    {"sections": "AABC", "section_bars": 6, "phrase_bars": 2, "phrases": "", "weight": 0.12},
    {"sections": "AABC", "section_bars": 8, "phrase_bars": 2, "phrases": "", "weight": 0.14},
]
"""The chorale's tunes: bar form (a Stollen sung twice, then the Abgesang), with the corpus's Stollen
lengths. The training chorales' best forms (``model/form_plans.py`` ``corpus_plans``, 2-bar phrases) that
open on a repeated section: Stollen of 4 bars 0.153 of the pieces, 5 bars 0.145, 6 bars 0.048, 8 bars
0.056 (16: 0.008, left out); a 5-bar Stollen plays as 4 (its 2 + 3 phrases are no plan of 2-bar phrases;
as one 5-bar phrase its cadences missed the phrase ends: 0.036 of downbeats, target 0.05). The pieces
whose best form does not return (0.35: ABCD) are left out: drawn as well, the generated chorales returned
0.12-0.15 of their 2-bar spans, the held-out ones 0.22. Against the one AAB of 8-bar sections,
`musicbox eval --seeds 5`: lag-8 peak 0.325 -> 0.068 (real 0.051), lag-4 peak 0.052 -> 0.173 (0.129),
2-bar return rate 0.223 -> 0.198 (0.223), the panel's share within 0.67-1.5x real 0.78 -> 0.90; but
home-key share 0.730 -> 0.659 (0.772: a B and a C section may move where AAB had its B alone)."""

FORMS = {
    "chorale": {
        "sections": "AAB",
        "section_bars": 8,
        "phrase_bars": 2,
        "cadence_density": 0.7,
        "register": [0.0, 5.0, 0.0, 0.0],
        "plans": CHORALE_PLANS,  # returning as close as the corpus's: CORPUS_RETURN_NOISE
    },
    "renaissance": {
        "sections": "ABCA",
        "section_bars": 8,
        "phrase_bars": 4,
        "cadence_density": 1.0,
        "return_noise": 1.35,
        "register": [0.0, 4.0, -3.0, 2.0],
    },
    "quartet": {
        "sections": "AABA",
        "section_bars": 8,
        "phrase_bars": 4,
        "cadence_density": 1.0,
        "register": [0.0, 7.0, 0.0, 0.0],
        "plans": QUARTET_PLANS,  # returning as close as the corpus's: CORPUS_RETURN_NOISE
    },
    "folk": {
        "sections": "AABA",
        "section_bars": 8,
        "phrase_bars": 4,
        "cadence_density": 1.0,
        "return_noise": 1.25,
        "register": [0.0, 2.0, 0.0, -2.0],
    },
    "celtic": {
        "sections": "AABB",
        "section_bars": 8,
        "phrase_bars": 4,
        "cadence_density": 1.0,
        "return_noise": 1.0,
        "register": [0.0, 5.0, 0.0, 0.0],
    },
}
DEFAULT_FORM = {"sections": "AABB", "section_bars": 8, "phrase_bars": 4, "cadence_density": 0.6}

CORPUS_RETURN_NOISE = {"chorale": 0.8, "quartet": 0.8, "folk": 1.1, "celtic": 1.2}
"""The return noise of a style whose tunes draw plans (its corpus forms, or the quartet's hand-set
:data:`QUARTET_PLANS`; :func:`_form`), where it differs from :data:`FORMS`':
a return as close to its first playing as the corpus's returns are, not as far as the hand-set form's
(whose noise was set on the eval's return rate with a return planned in every other section). The
corpus's returns (each training piece's best form, ``model/form_plans.py``; mean onset Jaccard of a
predicted return with its source / share heard as a repeat, Jaccard >= 0.8; the median is 1.0 in every
style): chorale 0.89 / 0.83, quartet 0.61 / 0.53 (half literal repeats, half not heard), folk 0.85 / 0.80,
celtic 0.91 / 0.85; renaissance: no form returns. The shipped model's returns under the corpus forms at
the default variation, 4 pieces of 64 bars per style (seeds 0-3), at each noise: chorale 1.2: 0.79 / 0.48
(at lags 5 and 6, which its context does not hold, 0.65 and 0.76), 1.0: 0.83 / 0.67, 0.8: 0.88 / 0.86;
quartet (8 returns) 1.32: 0.71 / 0.38, 0.8: 0.82 / 0.62; folk 1.25: 0.87 / 0.67, 1.1: 0.92 / 0.76, 1.0:
0.97 / 0.90, 0.8: 1.0 / 0.98; celtic 1.35: 0.83 / 0.65, 1.2: 0.92 / 0.78, 1.0: 0.99 / 0.99."""


DENSITY_QUANTILES = (25, 50, 90)
"""Percentiles of a style's bars' density the tempo knob asks for at energy 0 / 0.5 / 1. The slow end
is the 25th, not the 10th: asked at every bar, the sparsest tenth of the corpus's bars made tunes of
held notes (folk at 70 BPM, mood +1: eight bars on one pitch at two notes a bar, two of its 2-bar spans
in the corpus). `musicbox eval --seeds 5`, p10 -> p25 (same model and seeds): 4/4 style 0.795 -> 0.840,
energy r 0.923 -> 0.837, copies 2 -> 1; 3/4 style 0.679 -> 0.708."""


CORPUS_FORMED = ("folk",)
"""Styles whose tunes draw the forms counted from their corpus pieces even in the hand-set tables (what
`musicbox train` and `musicbox restyle --forms hand` write): where every target `musicbox eval` checks
holds with them. Folk, `musicbox eval --seeds 5` against its hand-set AABA: lag-8 peak 0.291 -> 0.146
(real 0.110), 2-bar return rate 0.292 -> 0.166 (0.221), the panel's share within 0.67-1.5x real 0.69 ->
0.76. Chorale and celtic fail a target with theirs (docs/design.md)."""


def style_tables(dataset, corpus_forms: bool = False) -> list[dict]:
    """One entry per style (dataset order): its meters (4/4 first where it has it: the meter it starts
    in; then by bar count), quantiles :data:`DENSITY_QUANTILES` of density per meter (onsets per bar: a jig's 6/8 bar
    holds 6 where a reel's 4/4 bar holds 8) and of register, median polyphony, the arrangement and the
    form (the hand-set :data:`FORMS`, every tune in the one form, with the key journeys of the style's
    corpus pieces: :func:`_form`; ``corpus_forms``: with the tune forms of its corpus pieces to draw
    from, which the shipped tables leave out until their return rates hold, ``docs/design.md``)."""
    d, r, p = (ATTRS.index(a) for a in ("density", "register", "polyphony"))
    train = dataset.split == 0
    tables = []
    for i, name in enumerate(dataset.style_names):
        rows = train & (dataset.style == i)
        rows = rows if rows.any() else dataset.style == i
        a = dataset.attrs[rows]
        label, programs, drums, swing, velocity = ARRANGEMENTS.get(name, DEFAULT_ARRANGEMENT)
        bars = {
            m: int((train & (dataset.style == i) & (dataset.bar_meter == k)).sum())
            for k, m in enumerate(dataset.bar_meter_names)
        }
        meters = sorted(
            (m for m in bars if bars[m] >= STYLE_METER_BARS), key=lambda m: (m != "4/4", -bars[m])
        )
        meters = meters or [dataset.bar_meter_names[0]]
        tables.append(
            {
                "name": name,
                "label": label or name,
                "density": {m: _quantiles(dataset, rows, m, d) for m in meters},
                "register": np.percentile(a[:, r], [10, 50, 90]).round(3).tolist(),  # mood -1 / 0 / +1
                "polyphony": round(float(np.median(a[:, p])), 3),
                "meters": meters,
                "arrangement": {"programs": programs, "drums": drums, "swing": swing, "velocity": velocity},
                "form": _form(dataset, i, name, corpus_forms),
            }
        )
    return tables


def _form(dataset, style: int, name: str, corpus_forms: bool = True) -> dict:
    """The style's form table: :data:`FORMS`' (its cadences, return noise and contour) with the tune
    forms its corpus pieces take (``model/form_plans.py``) as the plans its tunes draw from
    (``corpus_forms``), and the key journeys of its pieces (:func:`_journeys`)."""
    table = dict(FORMS.get(name, DEFAULT_FORM))
    if corpus_forms or name in CORPUS_FORMED:
        plans = corpus_plans(dataset, style, int(table.get("phrase_bars", 4)))  # type: ignore[call-overload]
        if plans:
            table["plans"] = plans
    if table.get("plans") and name in CORPUS_RETURN_NOISE:  # tunes drawn from plans return as the corpus's
        table["return_noise"] = CORPUS_RETURN_NOISE[name]
    return table | _journeys(dataset, style, table)


def _journeys(dataset, style: int, table: dict) -> dict:
    """``away`` and ``moves`` of a form table: the key moves of the style's pieces' sections
    (``form_plans.key_moves``)."""
    journeys = key_moves(dataset, style, int(table.get("phrase_bars", 4)))
    return journeys if journeys["moves"] else {}


def _quantiles(dataset, rows: np.ndarray, meter: str, column: int) -> list[float]:
    """:data:`DENSITY_QUANTILES` of attribute ``column`` over ``rows`` (a mask) in ``meter`` (all of
    ``rows`` if none)."""
    in_meter = rows & (dataset.bar_meter == dataset.bar_meter_names.index(meter))
    values = dataset.attrs[in_meter if in_meter.any() else rows, column]
    return np.percentile(values, DENSITY_QUANTILES).round(3).tolist()


def with_forms(bundle, dataset, corpus_forms: bool = False):
    """``bundle`` playing each style with the form :func:`style_tables` writes for it from ``dataset`` (the
    tune forms of its corpus pieces, or the hand-set one: ``corpus_forms``; with its key journeys; matched
    by name, a style the dataset lacks keeps its own): how a bundle plays them before its checkpoint
    carries them (``musicbox eval --forms``)."""
    import copy

    import msgspec

    from musicbox.runtime.form import FormSpec
    from musicbox.runtime.manifest import parse_table

    tables = style_tables(dataset, corpus_forms)
    forms = {t["name"]: parse_table(t["form"], FormSpec, "$.form") for t in tables}
    manifest = bundle.manifest
    styles = tuple(
        msgspec.structs.replace(s, form=forms.get(s.name, s.form)) for s in manifest.controls.styles
    )
    controls = msgspec.structs.replace(manifest.controls, styles=styles)
    played = copy.copy(bundle)
    played.manifest = msgspec.structs.replace(manifest, controls=controls)
    return played
