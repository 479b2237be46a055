"""The shipped bundle (assets/bundle, built by `musicbox quantize` from assets/checkpoint) plays end to end."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from musicbox.cli import main
from musicbox.runtime.bundle import Bundle
from musicbox.runtime.controls import Controls
from musicbox.runtime.generator import Generator
from musicbox.runtime.midi import midi_to_roll

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "assets" / "bundle"


@pytest.mark.parametrize("precision", ["fp32", "int8", "int8_dynamic"])
def test_every_variant_validates_and_writes_music(precision):
    bundle = Bundle.open(BUNDLE, precision=precision)
    gen = Generator(bundle, seed=3)
    bars = [gen.next_bar(Controls(1.0, 110.0, 0.5)) for _ in range(3)]
    assert sum(len(b.notes) for b in bars) > 3  # the trained model writes notes, not silence


def test_render_follows_a_knob_script_at_the_beat_lines(tmp_path, capsys):
    import mido
    import soundfile

    script = tmp_path / "knobs.json"
    script.write_text(json.dumps([{"at": 1.0, "style": "celtic"}, {"at": 3.0, "tempo": 150, "mood": -1}]))
    config = tmp_path / "box.toml"
    config.write_text("[synth]\nexpression = 0.0\n")  # bars as long as their tempo says
    wav, mid = tmp_path / "a.wav", tmp_path / "a.mid"
    argv = ["render", "--seconds", "7", "--script", str(script), "--out", str(wav), "--midi", str(mid)]
    assert main([*argv, "--config", str(config)]) == 0
    bars = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bar ")]
    # 100 BPM: beat lines every 0.6 s; the style turn at 1 s is heard from 1.2 s (beat 2 of bar 0), the
    # tempo and mood turn at 3 s from 3.0 s (beat 1 of bar 1, which starts at 2.4 s)
    assert "style 4.00 tempo 100" in bars[0] and "tempo 150 mood -1.00" in bars[1]
    tempos, tick = [], 0
    midi = mido.MidiFile(mid)
    for message in midi.tracks[0]:
        tick += message.time
        if message.type == "set_tempo":
            tempos.append((tick / midi.ticks_per_beat, round(mido.tempo2bpm(message.tempo))))
    assert tempos[:2] == [(0.0, 100), (5.0, 150)]  # quarter 5: beat 1 of bar 1
    pcm, rate = soundfile.read(wav)
    assert pcm.shape == (7 * rate, 2) and np.abs(pcm).max() > 0.01
    roll = midi_to_roll(mid)
    assert len(roll) == len(bars) and (roll == 2).sum() > 0


def test_a_restarted_worker_continues_in_the_same_key():
    import pickle

    from musicbox.config import default_config
    from musicbox.runtime.box.worker import BarProducer, WorkerSettings
    from musicbox.runtime.generator import seed_key

    assert Bundle.open(BUNDLE, precision="fp32").manifest.representation.tonic == 0  # key-normalized
    first = BarProducer(WorkerSettings(BUNDLE, default_config().synth, precision="fp32"))
    fresh = first.make_state(None, seed=5)
    assert fresh.key == seed_key(5) and fresh.index == 0
    first.generator.next_bar(Controls())
    saved = pickle.loads(pickle.dumps(first.generator.get_state()))  # over the pipe
    restarted = BarProducer(WorkerSettings(BUNDLE, default_config().synth, precision="fp32"))
    state = restarted.make_state(saved, seed=5)
    assert (state.index, state.key) == (1, fresh.key)
    np.testing.assert_array_equal(state.context, first.generator.get_state().context)


def test_box_render_and_bench_synthesize_with_the_same_settings(tmp_path):
    """The box's worker, `musicbox render` and `musicbox bench` all play through the config's [synth]
    (before, the box used reverb 0.2 and render and bench 0.5)."""
    from musicbox.commands.bench import _start_and_rss, _synth_and_cpu
    from musicbox.config import load_config
    from musicbox.runtime.box.assemble import worker_settings
    from musicbox.runtime.box.worker import BarProducer

    toml = tmp_path / "box.toml"
    toml.write_text("[synth]\ngain = 0.7\nreverb = 0.35\n")
    config = load_config(toml)
    want = {"gain": 0.7, "reverb": 0.35}

    box = BarProducer(replace(worker_settings(config, BUNDLE), precision="fp32")).renderer
    assert {"gain": box.synth.gain, "reverb": box.reverb} == want
    assert box._synth.get_reverb_level() == pytest.approx(0.35)  # what FluidSynth itself was told

    stats = tmp_path / "stats.json"
    argv = ["render", "--seconds", "2", "--bundle", str(BUNDLE), "--precision", "fp32", "--config", str(toml)]
    assert main([*argv, "--out", str(tmp_path / "a.wav"), "--stats", str(stats)]) == 0
    rendered = json.loads(stats.read_text())["synth"]
    assert {k: rendered[k] for k in want} == want and rendered["soundfont"] == str(box.soundfont)

    synth, _ = _synth_and_cpu(BUNDLE, "fp32", 2, config)
    assert {k: synth[k] for k in want} == want and synth["soundfont"] == str(box.soundfont)
    started = _start_and_rss(BUNDLE, toml)
    assert {k: started["synth"][k] for k in want} == want and started["peak_rss_mb"] > 0
