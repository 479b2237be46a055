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


def style_tables(dataset) -> list[dict]:
    """One entry per style (dataset order): quantiles p10/p50/p90 of density and register, median
    polyphony and the arrangement."""
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
            }
        )
    return tables
