"""The key control (``Controls.key``): checked by ControlRanges; a render with ``--key D`` is in D by
key finding over the whole piece; a key turned mid-piece is heard from the next phrase start, not before
(the bars before it are the same notes, the bars from it the same notes moved by the new key)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from musicbox.errors import ConfigError
from musicbox.runtime.controls import TONICS, ControlRanges, Controls, key_only, rewrites
from musicbox.runtime.features import estimate_key
from musicbox.runtime.generator import key_shift, seed_key

mido = pytest.importorskip("mido")
RANGES = ControlRanges(("chorale", "folk"), 60.0, 160.0, ("4/4",))
DRUMS = 9  # channel 10


def test_the_key_is_a_tonic_or_the_seed_s():
    assert [RANGES.check_key(k, "k") for k in ("", "D", "c#", "Bb", " f ")] == ["", "D", "C#", "A#", "F"]
    for bad in ("H", "D minor", 2, None):
        with pytest.raises(ConfigError, match=r"k: got .*; allowed: \"\" \(the seed's\), C, C#, D"):
            RANGES.check_key(bad, "k")
    assert RANGES.apply(Controls(), {"key": "G"}).key == "G"
    with pytest.raises(ConfigError, match="page.key: got 'X'"):
        RANGES.apply(Controls(), {"key": "X"}, "page.")


def test_a_key_turn_alone_rewrites_nothing():
    old = Controls()
    assert key_only(old, Controls(key="D")) and not rewrites(old, Controls(key="D"))
    assert not key_only(old, Controls(key="D", mood=0.5)) and not key_only(old, old)


def test_the_shift_puts_the_model_s_tonic_on_the_key():
    for model_tonic in (0, 7):
        for tonic, name in enumerate(TONICS):
            shift = key_shift(name, model_tonic)
            assert -5 <= shift <= 6 and (model_tonic + shift) % 12 == tonic


def _render(tmp_path: Path, name: str, *args: str) -> tuple[list[tuple[float, int, int]], list[float]]:
    """Render the shipped bundle; its pitched notes (onset s, channel, pitch) and its bar lines (s)."""
    midi = tmp_path / f"{name}.mid"
    cmd = [
        sys.executable,
        "-m",
        "musicbox.cli",
        "render",
        "--seconds",
        "40",
        "--out",
        str(tmp_path / "x.wav"),
    ]
    result = subprocess.run(
        [*cmd, "--midi", str(midi), *args], capture_output=True, text=True, timeout=300, check=True
    )
    bars = [float(t) for t in re.findall(r"^bar\s+\d+\s+at\s+([\d.]+) s", result.stdout, re.M)]
    notes, now = [], 0.0
    for message in mido.MidiFile(midi):  # merged tracks, times in seconds
        now += message.time
        if message.type == "note_on" and message.velocity > 0 and message.channel != DRUMS:
            notes.append((round(now, 4), message.channel, message.note))
    return sorted(notes), bars


def _tonic(notes) -> int:
    hist = np.zeros((1, 12), np.float32)
    for _, _, pitch in notes:
        hist[0, pitch % 12] += 1
    return int(estimate_key(hist)[0][0])


@pytest.mark.parametrize("seed", [0, 1])
def test_a_render_with_key_d_is_in_d(tmp_path, seed):
    own = seed_key(seed) % 12  # the shipped model writes in C: the seed's key is its shift
    assert own != TONICS.index("D")  # else the check below proves nothing
    plain, bars = _render(tmp_path, "plain", "--seed", str(seed))
    in_d, _ = _render(tmp_path, "d", "--seed", str(seed), "--key", "D")
    # the chorale's first tune stays home for 12 bars (seed 0: AABC of 6-bar sections; seed 1: of 4-bar
    # sections, its B at home); the section after moves to the dominant (its key journey)
    home = bars[12] - 1e-3
    assert _tonic([n for n in plain if n[0] < home]) == own
    assert _tonic([n for n in in_d if n[0] < home]) == TONICS.index("D")


def test_a_key_turned_mid_piece_is_heard_from_the_next_phrase_start(tmp_path):
    seed, style = 3, "celtic"  # 4-bar phrases in 8-bar strains: bar 4 is inside A, at home
    # (a section starting at the turn would have drawn its key journey, which the key turn sends home)
    script = tmp_path / "turn.json"
    script.write_text(json.dumps([{"at": 3.0, "key": "D"}]))  # inside bar 1
    plain, bars = _render(tmp_path, "plain", "--seed", str(seed), "--style", style)
    turned, bars_turned = _render(
        tmp_path, "turned", "--seed", str(seed), "--style", style, "--script", str(script)
    )
    assert bars == bars_turned and bars[1] < 3.0 < bars[2]
    phrase = bars[4] - 1e-3  # the first phrase start after the turn
    assert [n for n in turned if n[0] < phrase] == [n for n in plain if n[0] < phrase]  # not before
    delta = key_shift("D", 0) - seed_key(seed)
    assert delta != 0
    moved = {(t, c, p + delta) for t, c, p in plain if t >= phrase}
    after = {n for n in turned if n[0] >= phrase}
    assert after and len(after & moved) >= 0.9 * len(after)  # the same notes in D (a few leave the range)
    before_turn = [n for n in plain if n[0] >= phrase]
    assert _tonic(after) == (_tonic(before_turn) + delta) % 12  # whatever key finding hears, moved
