"""Meters in the playing box, through the real `musicbox play` on a real-time-paced JACK dummy device: the
config's starting meter, a knob script's meter change heard at a bar line without a gap, the meter in the
stats, and SAVE's MIDI with the time signatures and bar lines of the audio that played."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import mido
import pytest
import soundfile

from musicbox.runtime.box.soak import JackDummy
from musicbox.runtime.midi import midi_meters
from tests.helpers.synthetic_bundle import build_bundle

pytestmark = pytest.mark.skipif(
    shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed"
)


@pytest.mark.slow
def test_a_meter_change_plays_at_a_bar_line_and_the_save_keeps_the_meters(tmp_path):
    """Starts in 3/4 ([knobs] meter), turns to 6/8 at 5 s, saves at 11 s: no underrun, no silence; the
    saved MIDI is 3/4 then 6/8, its bars 1.5 s long (three quarter notes at 120 BPM; the last one as far
    as it had played) and as long as the WAV."""
    bundle = build_bundle(tmp_path / "bundle")  # chorale (4/4), folk (4/4, 3/4), quartet (4/4, 3/4, 6/8)
    script = tmp_path / "knobs.json"
    script.write_text(json.dumps([
        {"at": 0, "style": "quartet", "tempo": 120},
        {"at": 5, "meter": "6/8"},
        {"at": 11, "button": "save"},
    ]))  # fmt: skip
    config = tmp_path / "box.toml"
    folder = tmp_path / "rec"
    config.write_text(
        f'[knobs]\nmeter = "3/4"\nscript = "{script}"\n[recording]\nfolder = "{folder}"\n'
        "[synth]\nexpression = 0.0\n"  # bars as long as their meter and tempo say (no ritardando)
    )
    stats = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--bundle", str(bundle)]
    cmd += ["--seconds", "14", "--stats", str(stats), "--backend", "scripted"]
    with JackDummy(name=f"mbmeters{os.getpid()}"):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    final = json.loads(stats.read_text())
    assert final["underruns"] == 0 and final["silence_s"] == 0.0 and final["saves"] == 1, final
    assert final["meter"] == "6/8" and final["controls"]["meter"] == "6/8"
    (wav,) = folder.glob("*.wav")
    mid = mido.MidiFile(wav.with_suffix(".mid"))
    meters = [m.name for m in midi_meters(mid)]
    change = meters.index("6/8")
    assert meters == ["3/4"] * change + ["6/8"] * (len(meters) - change) and 3 <= change <= 5, meters
    # bars of 1.5 s, the last one the bar playing at the save, as far as it had played
    assert 1.5 * (len(meters) - 1) - 0.01 <= mid.length <= 1.5 * len(meters) + 0.01
    assert mid.length == pytest.approx(soundfile.info(wav).duration, abs=0.1)  # the partial bar's tail


def test_a_starting_meter_the_bundle_does_not_play_exits_78(tmp_path):
    bundle = build_bundle(tmp_path / "bundle")
    config = tmp_path / "box.toml"
    config.write_text(f'[knobs]\nmeter = "5/4"\n[recording]\nfolder = "{tmp_path / "rec"}"\n')
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--bundle", str(bundle)]
    done = subprocess.run(
        [*cmd, "--seconds", "1", "--backend", "none"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 78, done.stdout + done.stderr
    assert (
        f"""{config}: [knobs] meter: got '5/4'; allowed: "" (the style's own), 4/4, 3/4, 6/8""" in done.stderr
    )
