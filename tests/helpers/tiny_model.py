"""A small random-note dataset and a tiny trained checkpoint for tests of the model and quantize paths.

The notes are random (so no corpus parse is needed); the structure of the dataset, the model and the
checkpoint are the real ones. The shipped checkpoint is trained on the music21 corpus instead.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from musicbox.model.data import Dataset
from musicbox.runtime.features import bar_attrs
from musicbox.runtime.pianoroll import Note, notes_to_roll

STYLES = ("chorale", "renaissance", "quartet", "folk", "celtic")


def random_dataset(n_pieces: int = 20, bars: int = 16, seed: int = 0) -> Dataset:
    """``n_pieces`` pieces of ``bars`` bars of random notes; piece p has style p % 5 and is in 3/4 when p %
    4 == 1, 6/8 when p % 4 == 3 (12-step bars, the rest of the 16-step row silent), else 4/4; every 10th
    piece goes to validation and the one before it to test."""
    rng = np.random.default_rng(seed)
    rolls = []
    for _ in range(n_pieces):
        starts = rng.integers(0, bars * 16, bars * 8)
        notes = [
            Note(int(rng.integers(0, 3)), int(s), int(rng.integers(50, 80)), int(rng.integers(1, 6)))
            for s in starts
        ]
        roll = notes_to_roll(notes, bars)
        rolls.append(roll)
    piece = np.repeat(np.arange(n_pieces, dtype=np.int32), bars)
    bar_meter = np.select([piece % 4 == 1, piece % 4 == 3], [1, 2], 0).astype(np.int8)
    rolls = np.concatenate(rolls)
    rolls[bar_meter > 0, :, 12:] = 0
    split = np.select([piece % 10 == 9, piece % 10 == 8], [1, 2], 0).astype(np.int8)
    return Dataset(
        rolls=rolls,
        piece=piece,
        bar=np.tile(np.arange(bars, dtype=np.int32), n_pieces),
        style=(piece % len(STYLES)).astype(np.int8),
        split=split,
        attrs=bar_attrs(rolls),
        tonic=np.zeros(len(piece), np.int8),
        melody_only=np.zeros(len(piece), bool),
        meter=np.zeros(len(piece), np.int8),
        bar_meter=bar_meter,
        place=(np.tile(np.arange(bars), n_pieces) % 8).astype(np.int8),
        repeats=np.zeros(len(piece), np.int8),
        style_names=STYLES,
        piece_names=tuple(f"random-{i}" for i in range(n_pieces)),
        meter_names=("4/4",),
        bar_meter_names=("4/4", "3/4", "6/8"),
    )


def tiny_checkpoint(out_dir: Path, full_size: bool = False) -> Path:
    """Train a checkpoint for a few steps on random notes (seconds); ``full_size`` keeps the shipped
    model's dimensions (for export/quantize tests), else a small one."""
    from musicbox.model.train import TrainSettings, quick_settings, train

    settings = quick_settings(TrainSettings())
    if full_size:
        base = TrainSettings()
        settings = replace(base, ae_steps=5, ae_batch=16, dn_steps=5, dn_batch=16)
    return train(random_dataset(), settings, Path(out_dir) / "run", Path(out_dir) / "checkpoint")
