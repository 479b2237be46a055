"""Knobs -> model conditioning, through the bundle manifest's tables (docs/architecture.md).

- style position ``s`` (clipped to ``0 .. S-1``) blends style rows ``floor(s)`` and ``ceil(s)``
  (``controls.style_blend``):
  ``style_w[floor] = 1 - frac``, ``style_w[ceil] = frac`` (column ``S``, "no style", stays 0); the per-style
  tables (density, register, polyphony) are blended with the same weights;
- energy ``e = (bpm - min_bpm) / (max_bpm - min_bpm)`` clipped to [0, 1] (``controls.energy``);
- raw density ``= interp(e, [0, .5, 1], style.density[meter]) * (1 + density_gain * mood)`` (onsets per
  bar of the bar's meter; a meter the style does not list takes its own meter's table scaled by the
  ratio of the bars' steps);
- mode ``= mood`` (-1 minor .. +1 major);
- register ``= interp(mood, [-1, 0, 1], style.register)`` (MIDI pitch), asked at a phrase's first bar
  only (``Shaping.asks_register``; elsewhere its mask is 0 and the model follows its context);
- polyphony ``= style.polyphony``;
- then every attribute is normalized ``(raw - mean) / std`` with the manifest's ``attrs`` table, as in
  training (whose table has mean 0, std 1 for mode, so mode reaches the model as the raw -1..+1).

The unconditional row for classifier-free guidance has ``style_w`` one-hot on column ``S``, ``attrs`` 0
and ``attr_mask`` 0; the contrast row of meter guidance is the conditional row with the ``meter`` it
steers away from (:func:`contrast_meter`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from musicbox.runtime.controls import MOOD_RANGE, Controls, energy, nearest_style, style_blend
from musicbox.runtime.features import ATTRS
from musicbox.runtime.form import PLAIN, Shaping
from musicbox.runtime.manifest import ControlsInfo, SamplerInfo, StyleInfo
from musicbox.runtime.meter import COMMON, METERS, Meter


@dataclass(frozen=True)
class Conditioning:
    """One conditioning row. style_w: float32 ``[S+1]`` summing to 1. raw: float32 ``[4]`` attributes in
    ``features.ATTRS`` order and natural units (onsets/bar, -1..1, MIDI pitch, notes). attrs: float32
    ``[4]``, the normalized model input. attr_mask: float32 ``[4]``, 1 = attribute given."""

    style_w: np.ndarray
    raw: np.ndarray
    attrs: np.ndarray
    attr_mask: np.ndarray


def style_weights(style: float, n_styles: int) -> np.ndarray:
    """Blend weights float32 ``[n_styles + 1]`` of a style knob position (``controls.style_blend``)."""
    lo, hi, frac = style_blend(style, n_styles)
    w = np.zeros(n_styles + 1, dtype=np.float32)
    w[lo] += 1.0 - frac
    w[hi] += frac
    return w


def style_density(style: StyleInfo, meter: Meter) -> np.ndarray:
    """Onsets per bar at energy 0 / 0.5 / 1 of ``style`` in ``meter``: its table for the meter, or for a
    meter it does not play its own meter's table scaled by the bars' length."""
    if meter.name in style.density:
        return np.array(style.density[meter.name])
    own = style.meters[0]
    return np.array(style.density[own]) * meter.steps / METERS[own].steps


def raw_attributes(
    controls: Controls, table: ControlsInfo, shaping: Shaping = PLAIN, meter: Meter = COMMON
) -> np.ndarray:
    """The requested raw attributes float32 ``[4]`` (``features.ATTRS`` order) for ``controls`` and a bar
    of ``meter``, with the form planner's ``shaping`` of the bar (a cadence asks for fewer notes, a
    section for its register)."""
    w = style_weights(controls.style, len(table.styles))[:-1].astype(np.float64)
    density = w @ np.array([style_density(s, meter) for s in table.styles])
    register = w @ np.array([s.register for s in table.styles])
    polyphony = float(w @ np.array([s.polyphony for s in table.styles]))
    e = energy(controls.tempo_bpm, table.tempo.min_bpm, table.tempo.max_bpm)
    mood = float(np.clip(controls.mood, *MOOD_RANGE))
    values = {
        "density": np.interp(e, [0.0, 0.5, 1.0], density)
        * (1.0 + table.mood.density_gain * mood)
        * shaping.density,
        "mode": mood,
        "register": np.interp(mood, [-1.0, 0.0, 1.0], register) + shaping.register,
        "polyphony": polyphony,
    }
    return np.array([values[name] for name in ATTRS], dtype=np.float32)


def normalize(raw: np.ndarray, table: ControlsInfo) -> np.ndarray:
    """Raw attributes ``[..., 4]`` -> model input ``(raw - mean) / std`` (the manifest's table)."""
    out = (raw - np.asarray(table.attrs.mean, np.float32)) / np.asarray(table.attrs.std, np.float32)
    return out.astype(np.float32)


def condition(
    controls: Controls, table: ControlsInfo, shaping: Shaping = PLAIN, meter: Meter = COMMON
) -> Conditioning:
    """The conditioning row of ``controls`` (``shaping``, ``meter``: see :func:`raw_attributes`)."""
    raw = raw_attributes(controls, table, shaping, meter)
    mask = np.ones(len(ATTRS), dtype=np.float32)
    mask[ATTRS.index("register")] = float(shaping.asks_register)
    return Conditioning(
        style_w=style_weights(controls.style, len(table.styles)),
        raw=raw,
        attrs=normalize(raw, table),
        attr_mask=mask,
    )


def unconditional(table: ControlsInfo) -> Conditioning:
    """The "no condition" row for guidance: style one-hot on column S, attributes masked out."""
    n = len(table.styles)
    style_w = np.zeros(n + 1, dtype=np.float32)
    style_w[n] = 1.0
    zeros = np.zeros(len(ATTRS), dtype=np.float32)
    return Conditioning(style_w=style_w, raw=zeros, attrs=zeros, attr_mask=zeros)


def meter_onehot(name: str | None, meters: tuple[str, ...]) -> np.ndarray:
    """The ``meter`` input ``[M]`` for meter ``name`` in the model's ``meters``; all zeros (meter
    unknown, as training's meter dropout shows it) for ``None``."""
    row = np.zeros(len(meters), np.float32)
    if name is not None:
        row[meters.index(name)] = 1
    return row


def contrast_meter(sampler: SamplerInfo, meter: Meter, meters: tuple[str, ...]) -> np.ndarray:
    """The ``meter`` input ``[M]`` that meter guidance steers a bar of ``meter`` away from: the one-hot
    of ``sampler.meter_contrast``'s meter for it, or meter unknown where it names none."""
    return meter_onehot(sampler.meter_contrast.get(meter.name), meters)


def leading_style(controls: Controls, table: ControlsInfo) -> str:
    """The name of the style that leads the blend at the style knob's position (``controls.nearest_style``:
    the larger blend weight, the upper style at an exact midpoint)."""
    return table.styles[nearest_style(controls.style, len(table.styles))].name


def conditioning_feeds(
    controls: Controls,
    table: ControlsInfo,
    sampler: SamplerInfo,
    meters: tuple[str, ...],
    shaping: Shaping = PLAIN,
    meter: Meter = COMMON,
) -> dict[str, np.ndarray]:
    """Denoiser feeds ``style_w [B, S+1]``, ``attrs [B, 4]``, ``attr_mask [B, 4]`` and ``meter [B, M]``
    (one-hot in the order of ``meters``, the model's): row 0 conditional, then the unconditional row
    when the sampler guides, then the conditional row with :func:`contrast_meter` when it guides
    ``meter``, then the conditional row with the contrast style (``SamplerInfo.contrast_style``) when it
    guides the leading style in ``meter`` (``shaping``, ``meter``: see :func:`raw_attributes`)."""
    cond = condition(controls, table, shaping, meter)
    meter_guided = sampler.meter_guided(meter.name)
    rows = [cond] + [unconditional(table)] * sampler.guided + [cond] * meter_guided
    onehot = meter_onehot(meter.name, meters)
    meter_rows = [onehot] * (1 + sampler.guided) + [contrast_meter(sampler, meter, meters)] * meter_guided
    away = sampler.contrast_style(meter.name, leading_style(controls, table))
    if away is not None:
        names = [s.name for s in table.styles]
        rows.append(replace(cond, style_w=style_weights(float(names.index(away)), len(names))))
        meter_rows.append(onehot)
    return {
        "style_w": np.stack([r.style_w for r in rows]),
        "attrs": np.stack([r.attrs for r in rows]),
        "attr_mask": np.stack([r.attr_mask for r in rows]),
        "meter": np.stack(meter_rows),
    }
