"""MIDI files keep what was played (render and SAVE): a note held over bar lines is one MIDI note,
velocities and micro-timing are the synth's, the drums are a channel-10 part."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from musicbox.cli import main
from musicbox.config import SynthConfig, shipped_bundle
from musicbox.runtime import midi
from musicbox.runtime.arrangement import DRUM_CHANNEL, Arranger, Played, bar_notes
from musicbox.runtime.box.recorder import PlayedBar
from musicbox.runtime.controls import Controls
from musicbox.runtime.manifest import load_manifest
from musicbox.runtime.pianoroll import Note, notes_to_roll

CELTIC = 4.0  # the shipped bundle's fifth style: drums (folk pattern family)


def _absolute(track):
    tick = 0
    for m in track:
        tick += m.time
        yield tick, m


def _notes(track) -> list[tuple[int, int, int, int]]:
    """(on tick, off tick, key, velocity) of a track's notes."""
    sounding, out = {}, []
    for tick, m in _absolute(track):
        if m.type == "note_on" and m.velocity > 0:
            sounding[m.note] = (tick, m.velocity)
        elif m.type in ("note_on", "note_off") and m.note in sounding:
            on, velocity = sounding.pop(m.note)
            out.append((on, tick, m.note, velocity))
    return out


def _controls():
    return load_manifest(shipped_bundle() / "manifest.json").controls


def test_a_note_held_over_two_bar_lines_is_one_note_with_the_played_velocity():
    """Three bars, the melody's C held from step 4 of bar 0 to step 8 of bar 2 (HELD across two bar
    lines): one note-on, its velocity the arranged one, its end where the synth ends it."""
    roll = notes_to_roll([Note(0, 4, 72, 36), Note(2, 0, 48, 16)], 3)
    arranger = Arranger.from_manifest(_controls(), seed=1)
    controls = Controls(style=0.0, tempo_bpm=100.0)
    plans = [arranger.arrange(bar_notes(bar)[0], controls, ties=bar_notes(bar)[1]) for bar in roll]
    assert [p.tied for p in plans[1].notes if p.key == 72] == [True]  # the roll says: continues
    bars = [
        PlayedBar(bar_notes(bar)[0], controls, 0, played=p.notes) for bar, p in zip(roll, plans, strict=True)
    ]
    mid = midi.played_to_midi(bars, None, _controls())
    (held,) = [n for n in _notes(mid.tracks[1]) if n[2] == 72]
    first = next(p for p in plans[0].notes if p.key == 72)
    last = next(p for p in plans[2].notes if p.key == 72)
    assert held[0] == round(first.on * 120) and held[1] == round((32 + last.off) * 120)
    assert held[3] == first.velocity
    assert Note(0, 4, 72, 36) in midi.midi_to_notes(mid)[0]  # and it reads back as the roll's note


def test_a_turn_inside_a_bar_ends_the_old_notes_at_its_beat_line():
    head = [Played(0.0, 16.0, 0, 60, 90, False), Played(10.0, 12.0, 1, 64, 70, False)]
    rest = [Played(8.0, 16.0, 0, 62, 50, False)]
    assert midi.join_turn(head, rest, 8) == [Played(0.0, 8.0, 0, 60, 90, False), *rest]


def test_played_velocities_and_timing_reach_the_file_and_drums_are_channel_ten(tmp_path):
    """Bars the real synth played (celtic: drums, swing, accents, humanized): the file's note-ons are
    the renderer's played notes, one for one, velocity for velocity, to the tick."""
    pytest.importorskip("fluidsynth")
    from musicbox.runtime.bundle import Bundle
    from musicbox.runtime.generator import Generator
    from musicbox.runtime.render import Renderer

    bundle = Bundle.open(shipped_bundle())
    controls = Controls(style=CELTIC, tempo_bpm=120.0, mood=0.5)
    generator = Generator(bundle, seed=3)
    dry = SynthConfig(soundfont=None, gain=0.5, reverb=0.0)
    with Renderer(bundle.manifest.controls, dry) as renderer:
        bars, played = [], []
        for _ in range(4):
            bar = generator.next_bar(controls)
            renderer.render_roll(bar.roll, bar.controls, bar.meter)
            bars.append(bar)
            played.append(renderer.last_plan.notes)
    bundle.close()
    mid = midi.played_to_midi(bars, tmp_path / "p.mid", renderer.arranger, played=played)
    names = [next(m.name for m in tr if m.type == "track_name") for tr in mid.tracks]
    assert names == ["musicbox", "melody", "harmony", "bass", "drums"]
    drums = mid.tracks[4]
    assert {m.channel for m in drums if m.type == "note_on"} == {DRUM_CHANNEL}
    starts = np.cumsum([0] + [b.meter.steps for b in bars])
    heard_drums = sorted(
        (round((at + p.on) * 120), p.key, p.velocity)
        for at, notes in zip(starts, played, strict=False)
        for p in notes
        if p.channel == DRUM_CHANNEL
    )
    assert sorted((on, key, v) for on, _, key, v in _notes(drums)) == heard_drums
    velocities = [v for track in mid.tracks[1:4] for *_, v in _notes(track)]
    heard = [p.velocity for notes in played for p in notes if p.channel != DRUM_CHANNEL and not p.tied]
    assert sorted(velocities) == sorted(heard) and np.std(velocities) > 3  # not one velocity for all
    off_grid = [on % 120 for track in mid.tracks[1:] for on, *_ in _notes(track)]
    assert any(off_grid)  # swing and humanization: not every onset on a 16th


def test_render_writes_the_drums_and_the_played_velocities(tmp_path, capsys):
    out, path = tmp_path / "a.wav", tmp_path / "a.mid"
    argv = ["render", "--seconds", "8", "--style", "celtic", "--seed", "2", "--out", str(out)]
    assert main([*argv, "--midi", str(path)]) == 0
    mid = mido.MidiFile(path)
    (drums,) = [t for t in mid.tracks if any(m.type == "track_name" and m.name == "drums" for m in t)]
    assert len(_notes(drums)) >= 8 and {m.channel for m in drums if m.type == "note_on"} == {9}
    melody = _notes(mid.tracks[1])
    assert len({v for *_, v in melody}) > 3
    capsys.readouterr()
