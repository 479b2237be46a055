"""Per-style tables for the knobs: what each style family sounds like and how the knobs map onto it.

Measured from the dataset (density, register and polyphony quantiles per style) plus the arrangement the
box plays it with (General MIDI programs per track, 0-based; drum family; swing). Copied into the
checkpoint config and from there into the bundle manifest's ``controls.styles``.
"""

from __future__ import annotations

import numpy as np

from musicbox.runtime.features import ATTRS

# name -> (label, programs [melody, harmony, bass], drums, swing 0..1 (1 = triplet swing), base velocity 1..127)
ARRANGEMENTS = {
    "chorale": ("Bach chorales", [19, 19, 19], "none", 0.0, 80),
    "renaissance": ("Renaissance polyphony", [52, 52, 52], "none", 0.0, 72),
    "quartet": ("Classical string quartet", [40, 41, 42], "none", 0.0, 84),
    "folk": ("European folk song", [73, 24, 32], "folk", 0.0, 88),
    "celtic": ("Celtic dance tune", [110, 46, 32], "dance", 0.6, 96),
}
DEFAULT_ARRANGEMENT = ("", [0, 0, 32], "none", 0.0, 80)

# name -> form (runtime/form.py FormSpec): section letters, bars per section, bars per phrase, density at
# a phrase's last bar. From the corpus: chorales in bar form (two Stollen, then the Abgesang) of 2-bar
# phrases ending on a held fermata; dance tunes AABB in 8-bar strains; airs and quartet themes AABA;
# folk songs in 4-bar lines; polyphony through-composed, its points of imitation returning once.
FORMS = {
    "chorale": {"sections": "AAB", "section_bars": 4, "phrase_bars": 2, "cadence_density": 0.5},
    "renaissance": {"sections": "ABAC", "section_bars": 8, "phrase_bars": 4, "cadence_density": 0.7},
    "quartet": {"sections": "AABA", "section_bars": 8, "phrase_bars": 4, "cadence_density": 0.6},
    "folk": {"sections": "AABC", "section_bars": 4, "phrase_bars": 2, "cadence_density": 0.6},
    "celtic": {"sections": "AABB", "section_bars": 8, "phrase_bars": 4, "cadence_density": 0.7},
}
DEFAULT_FORM = {"sections": "AABB", "section_bars": 8, "phrase_bars": 4, "cadence_density": 0.6}


def style_tables(dataset) -> list[dict]:
    """One entry per style (dataset order): quantiles p10/p50/p90 of density and register, median
    polyphony, the arrangement and the form."""
    d, r, p = (ATTRS.index(a) for a in ("density", "register", "polyphony"))
    train = dataset.split == 0
    tables = []
    for i, name in enumerate(dataset.style_names):
        a = dataset.attrs[train & (dataset.style == i)]
        if len(a) == 0:
            a = dataset.attrs[dataset.style == i]
        label, programs, drums, swing, velocity = ARRANGEMENTS.get(name, DEFAULT_ARRANGEMENT)
        tables.append(
            {
                "name": name,
                "label": label or name,
                "density": np.percentile(a[:, d], [10, 50, 90]).round(3).tolist(),
                "register": np.percentile(a[:, r], [10, 50, 90]).round(3).tolist(),
                "polyphony": round(float(np.median(a[:, p])), 3),
                "arrangement": {"programs": programs, "drums": drums, "swing": swing, "velocity": velocity},
                "form": FORMS.get(name, DEFAULT_FORM),
            }
        )
    return tables
