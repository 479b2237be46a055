"""A checkpoint is a folder: ``model.safetensors`` (weights) + ``config.json`` (everything else).

The config carries the model's hyper-parameters and the tables the box needs (representation, styles,
attribute normalization, sampler), so the quantize tool copies them into the bundle's manifest and nothing
is guessed downstream. No pickles.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file, save_file

from musicbox.errors import CheckpointError
from musicbox.model.nets import AutoencoderConfig, MusicModel

FORMAT = "musicbox-checkpoint/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save_checkpoint(model: MusicModel, config: dict, out_dir: str | Path) -> Path:
    """Write ``model``'s weights and ``config`` (merged with the model's own hyper-parameters)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full = {"format": FORMAT, **config, **model.config_dict()}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": FORMAT})
    (out / CONFIG).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return out


def read_config(folder: Path) -> dict:
    """A checkpoint folder's config (both files there, the format known), or a CheckpointError."""
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise CheckpointError(
                f"{folder / name}: missing; a checkpoint folder holds {WEIGHTS} and {CONFIG} "
                "(train one with `musicbox train`)"
            )
    config = json.loads((folder / CONFIG).read_text())
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{folder / CONFIG}: format {config.get('format')!r}, expected {FORMAT!r}")
    return config


def load_autoencoder(path: str | Path, cfg: AutoencoderConfig) -> dict:
    """The autoencoder's state dict from a checkpoint folder (for a run that trains only the denoiser
    anew); :class:`CheckpointError` if its autoencoder is not ``cfg``."""
    folder = Path(path)
    config = read_config(folder)
    if config.get("autoencoder") != asdict(cfg):
        raise CheckpointError(
            f"{folder / CONFIG}: its autoencoder {config.get('autoencoder')} is not the one configured "
            f"({asdict(cfg)}); train the autoencoder too (leave out --autoencoder-from)"
        )
    return _part(folder, "autoencoder.")


def load_denoiser(path: str | Path) -> dict:
    """The denoiser's state dict from a checkpoint folder (the start of a run that trains it further)."""
    folder = Path(path)
    read_config(folder)
    return _part(folder, "denoiser.")


def _part(folder: Path, prefix: str) -> dict:
    """The weights under ``prefix`` (a sub-module's name and a dot), named as in that sub-module."""
    return {k[len(prefix) :]: v for k, v in load_file(str(folder / WEIGHTS)).items() if k.startswith(prefix)}


def load_checkpoint(path: str | Path) -> tuple[MusicModel, dict]:
    """Load a checkpoint folder into an eval-mode model; returns ``(model, config)``."""
    folder = Path(path)
    config = read_config(folder)
    model = MusicModel.from_config(config)
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
    except RuntimeError as exc:
        raise CheckpointError(f"{folder / WEIGHTS}: weights do not match {CONFIG}: {exc}") from exc
    return model.eval(), config
