"""Every target the project measures itself against, in one table.

Each :class:`Target` names a figure as its measuring command reports it, the bound, how the figure is
compared with it and its unit. ``musicbox bench`` (``source="bench"``), the soak (``"soak"``; its CPU target ``"soak_cpu"``, held only without kills), the
evaluation report (``"eval"``), the quantize report and ARM64 check (``"quantize"``), ``musicbox bench
remote`` (``"remote"``) and ``musicbox bench save`` (``"save"``) read their targets
here, so a target changes in one place.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

_COMPARE = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}


@dataclass(frozen=True)
class Target:
    """name: the figure's key in its command's output. bound: the limit. comparison: ``<=``, ``>=`` or
    ``==`` (value comparison bound). unit: what the figure counts. source: the command that measures it
    (``bench``, ``soak``, ``eval``, ``quantize``)."""

    name: str
    bound: float
    comparison: str
    unit: str
    source: str

    def met(self, value: float) -> bool:
        """Whether ``value`` meets the target."""
        return bool(_COMPARE[self.comparison](value, self.bound))

    def __str__(self) -> str:
        """The target as written in tables: ``<= 0.01``."""
        return f"{self.comparison} {self.bound:g}"


TARGETS: tuple[Target, ...] = (
    Target("generation_rtf_int8_p95", 0.01, "<=", "generation seconds per second of music", "bench"),
    Target("int8_speedup_per_bar", 2.0, ">=", "FP32 / INT8 seconds per bar", "bench"),
    Target("synth_rtf_p95", 0.02, "<=", "synth CPU seconds per second of music", "bench"),
    Target("start_to_first_audio_s", 1.5, "<=", "seconds", "bench"),
    Target("peak_rss_mb", 150.0, "<=", "MiB", "bench"),
    Target("cpu_seconds_per_music_minute", 1.5, "<=", "CPU seconds per minute of music", "bench"),
    Target("knob_to_change_bars", 1.0, "<=", "bars", "bench"),
    Target("underruns", 0.0, "<=", "audio callbacks without a bar", "soak"),
    Target("rss_drift_mb", 5.0, "<=", "MiB", "soak"),
    Target(
        "box_cpu_s_per_music_minute_steady",
        0.8,
        "<=",
        "CPU seconds of the whole box per minute of music, from 30 s in, no kills",
        "soak_cpu",
    ),
    Target("markov_over_model_distance", 2.0, ">=", "ratio of feature distances to real music", "eval"),
    Target("style_accuracy", 0.70, ">=", "fraction of bars", "eval"),
    Target("mode_match", 0.85, ">=", "fraction of pieces", "eval"),
    Target("energy_density_correlation", 0.70, ">=", "Pearson r", "eval"),
    Target("exact_copies", 0.0, "==", "2-bar spans", "eval"),
    Target("profile_correlation", 0.8, ">=", "Pearson r of onsets per step, generated vs real", "eval"),
    Target(
        "told_from_common", 0.85, ">=", "fraction of 3/4 or 6/8 4-bar windows told apart from 4/4", "eval"
    ),
    Target("note_f1", 0.9, ">=", "note-level F1, INT8 vs FP32", "quantize"),
    Target("size_ratio", 0.30, "<=", "INT8 / FP32 bundle bytes", "quantize"),
    Target("denoiser_speedup", 2.0, ">=", "FP32 / INT8 seconds per denoiser call", "quantize"),
    Target("server_rss_added_mb", 20.0, "<=", "MiB the web remote adds, one page open", "remote"),
    Target(
        "server_cpu_added_pct_mean", 2.0, "<=", "% of a core the web remote adds, one page open", "remote"
    ),
    Target(
        "remote_cpu_s_per_music_minute",
        0.5,
        "<=",
        "CPU seconds per minute of music the page and the stream add, one listener",
        "remote",
    ),
    Target(
        "box_cpu_s_per_music_minute_listening",
        2.0,
        "<=",
        "CPU seconds per minute of music of the whole box, remote on, one listener",
        "remote",
    ),
    Target(
        "save_peak_rss_total_mb",
        400.0,
        "<=",
        "MiB, RSS of all the box's processes summed, at its peak during three SAVEs at once",
        "save",
    ),
    Target("recordings_written", 3.0, "==", "recordings of three SAVEs pressed at once", "save"),
)


def target(name: str) -> Target:
    """The target called ``name`` (``KeyError`` if there is none)."""
    for t in TARGETS:
        if t.name == name:
            return t
    raise KeyError(f"no target named {name!r}; targets: {', '.join(t.name for t in TARGETS)}")


def targets_of(source: str) -> tuple[Target, ...]:
    """The targets one command measures, in table order."""
    return tuple(t for t in TARGETS if t.source == source)
