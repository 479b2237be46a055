"""`musicbox render` on the shipped bundle: knob values checked against the manifest, outputs checked
before anything is generated, the WAV to stdout."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from musicbox.cli import main


@pytest.mark.parametrize(
    "flag, value, allowed",
    [
        ("--tempo", "0", "--tempo: got 0.0; allowed: a number from 60 to 160"),
        ("--tempo", "-60", "--tempo: got -60.0"),
        ("--tempo", "nan", "--tempo: got nan"),
        ("--tempo", "1", "--tempo: got 1.0"),
        ("--tempo", "10000", "--tempo: got 10000.0"),
        ("--mood", "-50", "--mood: got -50.0; allowed: a number from -1 to 1"),
        ("--style", "jazz", "--style: got 'jazz'; allowed: a number from 0 to 4 or one of chorale, "),
        ("--style", "7", "--style: got '7'"),
    ],
)
def test_knob_values_out_of_the_manifest_ranges_are_refused(tmp_path, capsys, flag, value, allowed):
    out = tmp_path / "a.wav"
    assert (
        main(["render", "--seconds", "2", flag, value, "--out", str(out), "--midi", str(tmp_path / "a.mid")])
        == 78
    )
    captured = capsys.readouterr()
    assert allowed in captured.err and "Traceback" not in captured.err
    assert "bar " not in captured.out and not list(tmp_path.iterdir())  # nothing generated, nothing written


def test_a_script_value_out_of_range_is_refused_the_same_way(tmp_path, capsys):
    script = tmp_path / "knobs.json"
    script.write_text(json.dumps([{"at": 1, "tempo": 10000}]))
    assert main(["render", "--seconds", "2", "--script", str(script), "--out", str(tmp_path / "a.wav")]) == 78
    assert "[0].tempo: got 10000; allowed: a number from 60 to 160" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--out", "--midi"])
def test_a_missing_output_folder_is_refused_before_generating(tmp_path, capsys, flag):
    paths = {"--out": tmp_path / "a.wav", "--midi": tmp_path / "a.mid"}
    paths[flag] = tmp_path / "no" / "such" / "a.out"
    argv = ["render", "--seconds", "2", "--out", str(paths["--out"]), "--midi", str(paths["--midi"])]
    assert main(argv) == 78
    captured = capsys.readouterr()
    assert f"{flag} {paths[flag]}: the folder {tmp_path / 'no' / 'such'} does not exist" in captured.err
    assert "bar " not in captured.out and not list(tmp_path.iterdir())


def test_midi_to_stdout_is_refused(tmp_path, capsys):
    assert main(["render", "--seconds", "1", "--out", str(tmp_path / "a.wav"), "--midi", "-"]) == 78
    assert "--midi -: the MIDI file cannot go to stdout" in capsys.readouterr().err


def test_out_dash_writes_the_wav_to_stdout_and_the_progress_to_stderr():
    import soundfile

    argv = [sys.executable, "-m", "musicbox.cli", "render", "--seconds", "2", "--out", "-"]
    done = subprocess.run(argv, capture_output=True, timeout=120, check=True)
    assert done.stdout[:4] == b"RIFF", (done.stdout[:200], done.stderr[-2000:])  # nothing before the WAV
    pcm, rate = soundfile.read(io.BytesIO(done.stdout))
    assert pcm.shape == (2 * rate, 2) and np.abs(pcm).max() > 0.01
    assert b"bar    0" in done.stderr and b"-> -" in done.stderr


def test_the_same_seed_gives_the_same_notes_in_concurrent_renders(tmp_path):
    """Four renders of --seed 5, three of them at once, on a fresh cache (so the precision is decided
    under load): identical notes."""
    import os

    from musicbox.runtime.midi import midi_to_notes

    env = {**os.environ, "MUSICBOX_CACHE": str(tmp_path / "cache")}

    def start(name: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "musicbox.cli", "render", "--seconds", "10", "--seed", "5"]
        argv += ["--out", str(tmp_path / f"{name}.wav"), "--midi", str(tmp_path / f"{name}.mid")]
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    together = [start(f"c{i}") for i in range(3)]
    outputs = [p.communicate(timeout=300)[0] for p in together]
    later = start("later")
    outputs.append(later.communicate(timeout=300)[0])
    assert all(p.returncode == 0 for p in [*together, later]), outputs
    notes = [midi_to_notes(tmp_path / f"{name}.mid")[0] for name in ("c0", "c1", "c2", "later")]
    assert notes[0] and all(n == notes[0] for n in notes[1:])
    precisions = {
        line.split(":")[1].split("(")[0].strip()
        for out in outputs
        for line in out.splitlines()
        if line.startswith("bundle ")
    }
    assert len(precisions) == 1


def midi_seconds(mid, tick: int) -> float:
    """Seconds at ``tick`` through the file's tempo map (track 0's set_tempo events)."""
    import mido

    changes, at = [], 0
    for message in mid.tracks[0]:
        at += message.time
        if message.type == "set_tempo":
            changes.append((at, message.tempo))
    seconds, last, tempo = 0.0, 0, changes[0][1]
    for at, new in changes[1:]:
        if at >= tick:
            break
        seconds += mido.tick2second(at - last, mid.ticks_per_beat, tempo)
        last, tempo = at, new
    return seconds + mido.tick2second(tick - last, mid.ticks_per_beat, tempo)


def test_midi_follows_the_tempo_map_and_styles_the_audio_played(tmp_path, capsys):
    """A script turning tempo 80 -> 140, the style and the mood: the MIDI used to keep the first tempo
    and instruments (bar lines 10 s off at 30 s, 42 s long for a 30 s WAV)."""
    import mido
    import soundfile

    script = tmp_path / "knobs.json"
    script.write_text(json.dumps([
        {"at": 0, "tempo": 80, "style": "chorale"},
        {"at": 10, "tempo": 140, "style": "folk"},
        {"at": 18, "mood": -1, "style": "celtic"},
        {"at": 24, "tempo": 100},
    ]))  # fmt: skip
    wav, mid_path = tmp_path / "a.wav", tmp_path / "a.mid"
    argv = ["render", "--seconds", "30", "--script", str(script), "--out", str(wav), "--midi", str(mid_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert " bars, 30.0 s of music -> " in out  # the files' length (it said 31.2 s: the bars generated)
    lines = [line for line in out.splitlines() if line.startswith("bar ")]
    wav_bars = [float(line.split(" at ")[1].split()[0]) for line in lines]  # where each bar starts in the WAV
    mid = mido.MidiFile(mid_path)
    bar_ticks = 4 * mid.ticks_per_beat
    drift = [abs(midi_seconds(mid, k * bar_ticks) - at) for k, at in enumerate(wav_bars)]
    assert max(drift) < 0.010
    assert abs(mid.length - soundfile.info(wav).duration) < 0.010 and soundfile.info(wav).duration == 30.0
    programs = {}
    for track in mid.tracks[1:]:
        at = 0
        for message in track:
            at += message.time
            if message.type == "program_change":
                programs.setdefault(at // bar_ticks, []).append(message.program)
    styles = {"chorale": [19, 19, 19], "folk": [73, 24, 32], "celtic": [110, 46, 32]}
    first_folk = next(k for k, line in enumerate(lines) if "style 3.00" in line)
    first_celtic = next(k for k, line in enumerate(lines) if "style 4.00" in line)
    assert programs == {0: styles["chorale"], first_folk: styles["folk"], first_celtic: styles["celtic"]}


@pytest.fixture(scope="module")
def meters_bundle(tmp_path_factory):
    """The synthetic bundle with five styles (chorale, folk, quartet, renaissance, jig), its model
    playing 4/4, 3/4 and 6/8."""
    from tests.helpers.synthetic_bundle import build_bundle

    return build_bundle(tmp_path_factory.mktemp("meters"), n_styles=5)


def _bar_starts(out: str) -> list[float]:
    """Where each bar starts in the WAV, seconds, from the render's progress lines."""
    return [float(line.split(" at ")[1].split()[0]) for line in out.splitlines() if line.startswith("bar ")]


def test_a_meter_the_bundle_does_not_play_is_refused(tmp_path, capsys, meters_bundle):
    argv = ["render", "--bundle", str(meters_bundle), "--seconds", "2", "--meter", "5/4"]
    assert main([*argv, "--out", str(tmp_path / "a.wav")]) == 78
    assert """--meter: got '5/4'; allowed: "" (the style's own), 4/4, 3/4, 6/8""" in capsys.readouterr().err
    script = tmp_path / "knobs.json"
    script.write_text(json.dumps([{"at": 1, "meter": "7/8"}]))
    argv = ["render", "--bundle", str(meters_bundle), "--seconds", "2", "--script", str(script)]
    assert main([*argv, "--out", str(tmp_path / "a.wav")]) == 78
    assert "[0].meter: got '7/8'" in capsys.readouterr().err
    assert not (tmp_path / "a.wav").exists()


@pytest.mark.parametrize("meter", ["3/4", "6/8"])
def test_a_render_in_three_four_or_six_eight_has_bars_of_three_quarter_notes(
    tmp_path, capsys, meters_bundle, meter
):
    """At 120 BPM a bar of three quarter notes is 1.5 s: the WAV is 4 bars of it, the MIDI the same
    4 bars under its time signature."""
    import mido
    import soundfile

    from musicbox.runtime.meter import METERS
    from musicbox.runtime.midi import midi_meters

    wav, mid_path = tmp_path / "a.wav", tmp_path / "a.mid"
    argv = ["render", "--bundle", str(meters_bundle), "--seconds", "6", "--tempo", "120", "--meter", meter]
    assert main([*argv, "--out", str(wav), "--midi", str(mid_path)]) == 0
    out = capsys.readouterr().out
    assert _bar_starts(out) == [0.0, 1.5, 3.0, 4.5] and out.count(f" {meter}\n") == 4
    info = soundfile.info(wav)
    assert info.frames == 4 * 3 * info.samplerate // 2  # bars x 1.5 s
    mid = mido.MidiFile(mid_path)
    (signature,) = [m for m in mid.tracks[0] if m.type == "time_signature"]
    assert f"{signature.numerator}/{signature.denominator}" == meter
    assert midi_meters(mid) == [METERS[meter]] * 4 and mid.length == pytest.approx(6.0, abs=1e-3)  # a tick


def test_a_knob_script_switches_meters_at_bar_lines_and_the_midi_follows(tmp_path, capsys, meters_bundle):
    """3/4 -> 6/8 -> 4/4 with a tempo change on the way: the MIDI's time signatures stand at the bar
    lines where the meter changed, and every bar line of the MIDI is where the WAV's bar starts."""
    import mido
    import soundfile

    from musicbox.runtime.midi import midi_meters

    script = tmp_path / "knobs.json"
    script.write_text(json.dumps([
        {"at": 0, "meter": "3/4", "style": "folk"},
        {"at": 3, "meter": "6/8", "style": "jig", "tempo": 90},
        {"at": 7, "meter": ""},
        {"at": 11, "style": "chorale", "tempo": 150},
    ]))  # fmt: skip
    wav, mid_path = tmp_path / "a.wav", tmp_path / "a.mid"
    config = tmp_path / "box.toml"
    config.write_text("[synth]\nexpression = 0.0\n")  # bars exactly as long as their tempo says
    argv = [
        "render",
        "--bundle",
        str(meters_bundle),
        "--seconds",
        "14",
        "--tempo",
        "120",
        "--script",
        str(script),
        "--config",
        str(config),
    ]
    assert main([*argv, "--out", str(wav), "--midi", str(mid_path)]) == 0
    out = capsys.readouterr().out
    starts = _bar_starts(out)
    meters = [line.split()[-1] for line in out.splitlines() if line.startswith("bar ")]
    # 3/4 at 120: 1.5 s bars; 6/8 at 90: 2 s; the jig's own meter (6/8) at 90; chorale in 4/4 at 150: 1.6 s
    assert starts == pytest.approx([0.0, 1.5, 3.0, 5.0, 7.0, 9.0, 11.0, 12.6])
    assert meters == ["3/4", "3/4", "6/8", "6/8", "6/8", "6/8", "4/4", "4/4"]
    mid = mido.MidiFile(mid_path)
    ticks, signatures = 0, []
    for message in mid.tracks[0]:
        ticks += message.time
        if message.type == "time_signature":
            signatures.append((ticks, f"{message.numerator}/{message.denominator}", message.clocks_per_click))
    assert signatures == [(0, "3/4", 24), (2 * 1440, "6/8", 36), (6 * 1440, "4/4", 24)]
    read = midi_meters(mid)
    assert [m.name for m in read] == meters
    lines = [0]
    for meter in read[:-1]:
        lines.append(lines[-1] + meter.steps * mid.ticks_per_beat // 4)
    drift = [abs(midi_seconds(mid, tick) - at) for tick, at in zip(lines, starts, strict=True)]
    assert max(drift) < 0.010
    assert abs(mid.length - soundfile.info(wav).duration) < 0.010 and soundfile.info(wav).duration == 14.0
