"""The checkpoint config's tables, read as the runtime manifest's types (copied, never recomputed).

The checkpoint's ``config.json`` carries ``representation``, ``sampler`` and ``controls`` in the
manifest's own layout (model/train.py ``Trainer.config``); :func:`read_tables` decodes them with the
manifest's own strict reader (``runtime/manifest.py`` :func:`parse_table`), so the calibration (which
runs the runtime's generator) and the manifest use the very same tables. A missing table is a
``CheckpointError`` naming it; a wrong one a ``ManifestError`` naming its JSON path.
"""

from __future__ import annotations

from typing import NamedTuple

from musicbox.errors import CheckpointError
from musicbox.runtime.manifest import ControlsInfo, RepresentationInfo, SamplerInfo, parse_table

SOURCE = "checkpoint config.json"


class ModelTables(NamedTuple):
    """What the runtime's :class:`~musicbox.runtime.generator.Generator` reads from a manifest: the
    grid and latent geometry, the sampler and the knob tables."""

    representation: RepresentationInfo
    sampler: SamplerInfo
    controls: ControlsInfo


def read_tables(config: dict) -> ModelTables:
    """The three tables of a checkpoint's ``config``."""
    for key in ModelTables._fields:
        if key not in config:
            raise CheckpointError(
                f"{SOURCE} has no {key!r} table; it was written by an older `musicbox train`: "
                "retrain, or add the table in the manifest's layout (docs/architecture.md)"
            )
    return ModelTables(
        parse_table(config["representation"], RepresentationInfo, "$.representation", SOURCE),
        parse_table(config["sampler"], SamplerInfo, "$.sampler", SOURCE),
        parse_table(config["controls"], ControlsInfo, "$.controls", SOURCE),
    )
