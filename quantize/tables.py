"""The checkpoint config's tables as the runtime manifest's dataclasses (copied, never recomputed).

The checkpoint's ``config.json`` carries ``representation``, ``sampler`` and ``controls`` in the
manifest's own layout (model/train.py ``Trainer.config``); these functions turn them into
``musicbox.runtime.manifest`` objects so the calibration (which runs the runtime's conditioning) and the
manifest use the very same tables. A missing table is a ``CheckpointError`` naming it.
"""

from __future__ import annotations

from musicbox.errors import CheckpointError
from musicbox.runtime.form import FormSpec
from musicbox.runtime.manifest import (
    Arrangement,
    AttrsInfo,
    ControlsInfo,
    MoodInfo,
    RepresentationInfo,
    SamplerInfo,
    StyleInfo,
    TempoInfo,
)


def _section(config: dict, key: str) -> dict:
    if key not in config:
        raise CheckpointError(
            f"checkpoint config.json has no {key!r} table; it was written by an older `musicbox train`: "
            "retrain, or add the table in the manifest's layout (docs/architecture.md)"
        )
    return config[key]


def representation_info(config: dict) -> RepresentationInfo:
    """``config['representation']`` (grid, pitch range, latent geometry, context bars, model key)."""
    r = _section(config, "representation")
    return RepresentationInfo(
        steps_per_bar=int(r["steps_per_bar"]),
        tracks=tuple(r["tracks"]),
        pitch_low=int(r["pitch_low"]),
        n_pitches=int(r["n_pitches"]),
        latent_frames=int(r["latent_frames"]),
        latent_dim=int(r["latent_dim"]),
        context_bars=int(r["context_bars"]),
        tonic=None if r.get("tonic") is None else int(r["tonic"]),
    )


def sampler_info(config: dict) -> SamplerInfo:
    """``config['sampler']`` (kind, steps, schedule, shift, guidance, threshold)."""
    s = _section(config, "sampler")
    return SamplerInfo(
        kind=s["kind"],
        steps=int(s["steps"]),
        schedule=s["schedule"],
        shift=float(s["shift"]),
        guidance=float(s["guidance"]),
        threshold=float(s["threshold"]),
    )


def _style(s: dict) -> StyleInfo:
    a = s["arrangement"]
    return StyleInfo(
        name=s["name"],
        label=s["label"],
        density=tuple(float(v) for v in s["density"]),
        register=tuple(float(v) for v in s["register"]),
        polyphony=float(s["polyphony"]),
        arrangement=Arrangement(
            programs=tuple(int(p) for p in a["programs"]),
            drums=a["drums"],
            swing=float(a["swing"]),
            velocity=int(a["velocity"]),
        ),
        form=FormSpec(**s["form"]) if "form" in s else FormSpec(),
    )


def controls_info(config: dict) -> ControlsInfo:
    """``config['controls']``: attribute normalization, tempo range, mood gain and the style tables."""
    c = _section(config, "controls")
    a = c["attrs"]
    return ControlsInfo(
        attrs=AttrsInfo(
            names=tuple(a["names"]),
            mean=tuple(float(v) for v in a["mean"]),
            std=tuple(float(v) for v in a["std"]),
        ),
        tempo=TempoInfo(**{k: float(v) for k, v in c["tempo"].items()}),
        mood=MoodInfo(density_gain=float(c["mood"]["density_gain"])),
        styles=tuple(_style(s) for s in c["styles"]),
    )
