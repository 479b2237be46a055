"""A checkpoint is a folder: ``model.safetensors`` (weights) + ``config.json`` (everything else).

The config carries the model's hyper-parameters and the tables the box needs (representation, styles,
attribute normalization, sampler), so the quantize tool copies them into the bundle's manifest and nothing
is guessed downstream. No pickles.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from musicbox.errors import CheckpointError
from musicbox.model.nets import MusicModel

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


def load_checkpoint(path: str | Path) -> tuple[MusicModel, dict]:
    """Load a checkpoint folder into an eval-mode model; returns ``(model, config)``."""
    folder = Path(path)
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise CheckpointError(
                f"{folder / name}: missing; a checkpoint folder holds {WEIGHTS} and {CONFIG} "
                "(train one with `musicbox train`)"
            )
    config = json.loads((folder / CONFIG).read_text())
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{folder / CONFIG}: format {config.get('format')!r}, expected {FORMAT!r}")
    model = MusicModel.from_config(config)
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
    except RuntimeError as exc:
        raise CheckpointError(f"{folder / WEIGHTS}: weights do not match {CONFIG}: {exc}") from exc
    return model.eval(), config
