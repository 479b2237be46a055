"""runtime/midi.py: phrase <-> standard MIDI file, exact round trip, one track per part."""

from __future__ import annotations

from dataclasses import replace

import mido
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicbox.runtime import midi
from musicbox.runtime.meter import COMMON, METERS
from musicbox.runtime.pianoroll import DEFAULT, HELD, ONSET, Note, notes_to_roll, roll_to_notes


def _phrase() -> np.ndarray:
    """Three bars: a melody tied over the first bar line, a chord in harmony, a silent last bar."""
    notes = [
        Note(0, 0, 72, 4),
        Note(0, 12, 74, 8),  # crosses the bar line: HELD at step 0 of bar 1
        Note(0, 20, 74, 2),  # re-strikes the same pitch right after
        Note(1, 0, 64, 16),
        Note(1, 0, 67, 16),
        Note(2, 0, 40, 6),
        Note(2, 6, 43, 2),
    ]
    return notes_to_roll(notes, 3)


def test_roll_midi_roll_is_identical(tmp_path):
    roll = _phrase()
    assert roll[1, 0, 0, 74 - DEFAULT.pitch_low] == HELD
    path = tmp_path / "phrase.mid"
    midi.roll_to_midi(roll, path, bpm=90, programs=(52, 49, 42))
    back = midi.midi_to_roll(path)
    np.testing.assert_array_equal(back, roll)  # including the silent last bar


def test_file_is_standard_type1_with_one_named_track_per_part(tmp_path):
    path = tmp_path / "phrase.mid"
    midi.roll_to_midi(_phrase(), path, bpm=90, programs=(52, 49, 42))
    mid = mido.MidiFile(path)
    assert mid.type == 1
    names = [next(m.name for m in tr if m.type == "track_name") for tr in mid.tracks]
    assert names == ["musicbox", "melody", "harmony", "bass"]
    programs = [m.program for tr in mid.tracks for m in tr if m.type == "program_change"]
    assert programs == [52, 49, 42]
    channels = {m.channel for tr in mid.tracks for m in tr if m.type == "note_on"}
    assert channels == {0, 1, 2}
    tempo = next(m.tempo for m in mid.tracks[0] if m.type == "set_tempo")
    assert mido.tempo2bpm(tempo) == pytest.approx(90)
    assert mid.length == pytest.approx(3 * 4 * 60 / 90)  # three 4/4 bars at 90 bpm


def test_same_pitch_restrike_keeps_two_notes():
    notes = [Note(0, 0, 60, 4), Note(0, 4, 60, 4)]
    back, n_bars = midi.midi_to_notes(midi.notes_to_midi(notes, 1))
    assert back == notes and n_bars == 1


def test_foreign_file_snaps_to_grid_and_maps_tracks_by_order():
    mid = mido.MidiFile(ticks_per_beat=96)
    track = mido.MidiTrack()
    track.append(mido.Message("note_on", note=60, velocity=90, time=25))  # ~a 16th (24 ticks)
    track.append(mido.Message("note_on", note=60, velocity=0, time=47))
    mid.tracks.append(track)
    notes, n_bars = midi.midi_to_notes(mid)
    assert notes == [Note(0, 1, 60, 2)] and n_bars == 1


def test_unreadable_file_raises_midi_error(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file")
    with pytest.raises(midi.MidiError, match="cannot read MIDI file"):
        midi.midi_to_roll(bad)


_note = st.builds(
    Note,
    track=st.integers(0, 2),
    start=st.integers(0, 47),
    pitch=st.integers(DEFAULT.pitch_low, DEFAULT.pitch_high),
    duration=st.integers(1, 20),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_note, max_size=25))
def test_any_roll_round_trips(notes):
    roll = notes_to_roll(notes, 3)
    back = midi.midi_to_roll(midi.roll_to_midi(roll))
    np.testing.assert_array_equal(back, roll)
    assert roll_to_notes(back) == roll_to_notes(roll)
    assert (back == ONSET).sum() == (roll == ONSET).sum()


def _styles():
    """Two styles' arrangements: chorale (programs 19, 19, 19) and folk (73, 24, 32)."""
    from musicbox.runtime.manifest import Arrangement, AttrsInfo, ControlsInfo, MoodInfo, StyleInfo, TempoInfo

    def style(name, programs):
        return StyleInfo(
            name, name, (1.0, 2.0, 3.0), (60.0, 64.0, 68.0), 2.0, Arrangement(programs, "none", 0, 80)
        )

    styles = (style("chorale", (19, 19, 19)), style("folk", (73, 24, 32)))
    return ControlsInfo(
        AttrsInfo(("density",), (0.0,), (1.0,)), TempoInfo(60.0, 160.0, 100.0), MoodInfo(0.1), styles
    )


def test_played_bars_carry_tempo_changes_program_changes_and_the_cut(tmp_path):
    from musicbox.runtime.box.recorder import PlayedBar
    from musicbox.runtime.controls import Controls

    held = [Note(0, 8, 60, 16)]  # rings over the bar line
    bars = [
        PlayedBar(held, Controls(0.0, 120.0), 0),
        PlayedBar(held, Controls(0.4, 120.0), 0),  # a blend nearer chorale: its instruments stay
        PlayedBar(held, Controls(1.0, 60.0), 0),
    ]
    mid = midi.played_to_midi(bars, tmp_path / "a.mid", _styles())
    conductor = [(m.type, m.time, getattr(m, "tempo", None)) for m in mid.tracks[0] if m.type == "set_tempo"]
    assert conductor == [("set_tempo", 0, 500000), ("set_tempo", 2 * 1920, 1000000)]
    programs = [(m.time, m.program) for m in mid.tracks[2] if m.type == "program_change"]
    assert programs == [(0, 19), (1920 * 2 - 0, 24)]
    assert mid.length == pytest.approx(2.0 + 2.0 + 4.0)
    cut = midi.played_to_midi(bars, None, _styles(), seconds=5.0)  # 1 s into the 60 BPM bar
    assert cut.length == pytest.approx(5.0)
    offs = [m for m in cut.tracks[1] if m.type == "note_off"]
    assert sum(m.time for m in cut.tracks[1]) == 2 * 1920 + 480 and offs[-1].note == 60


def _absolute(track):
    tick = 0
    for m in track:
        tick += m.time
        yield tick, m


def test_played_bars_in_three_meters_have_their_time_signatures_and_lengths():
    """3/4, 3/4, 6/8, 4/4 at 120 BPM: a time signature at each change (6/8 clicking dotted quarters),
    bar lines 1440, 1440, 1440, 1920 ticks apart, and the notes where their bars start."""
    from musicbox.runtime.box.recorder import PlayedBar
    from musicbox.runtime.controls import Controls

    fast = Controls(0.0, 120.0)
    bars = [
        PlayedBar([Note(0, 0, 60, 12)], fast, 0, METERS["3/4"]),
        PlayedBar([Note(0, 0, 62, 4)], fast, 0, METERS["3/4"]),
        PlayedBar([Note(0, 6, 64, 6)], fast, 0, METERS["6/8"]),
        PlayedBar([Note(0, 12, 65, 4)], fast, 0, COMMON),
    ]
    mid = midi.played_to_midi(bars, None, _styles())
    signatures = [
        (tick, m.numerator, m.denominator, m.clocks_per_click)
        for tick, m in _absolute(mid.tracks[0])
        if m.type == "time_signature"
    ]
    assert signatures == [(0, 3, 4, 24), (2880, 6, 8, 36), (4320, 4, 4, 24)]
    onsets = [(tick, m.note) for tick, m in _absolute(mid.tracks[1]) if m.type == "note_on"]
    assert onsets == [(0, 60), (1440, 62), (2880 + 720, 64), (4320 + 1440, 65)]
    assert mid.length == pytest.approx(1.5 * 3 + 2.0)
    assert midi.midi_meters(mid) == [bar.meter for bar in bars]
    notes, n_bars = midi.midi_to_notes(mid)
    assert n_bars == 4 and [n.start for n in notes] == [0, 12, 30, 48]
    with pytest.raises(midi.MidiError, match="changes meter"):
        midi.midi_to_roll(mid)


@pytest.mark.parametrize("name", ["3/4", "6/8"])
def test_a_twelve_step_roll_round_trips_in_its_meter(name):
    meter = METERS[name]
    roll = notes_to_roll([Note(0, 3, 72, 12), Note(2, 0, 40, 24)], 3, replace(DEFAULT, steps_per_bar=12))
    mid = midi.roll_to_midi(roll, meter=meter, bpm=90)
    (signature,) = [m for m in mid.tracks[0] if m.type == "time_signature"]
    assert (signature.numerator, signature.denominator) == (meter.numerator, meter.denominator)
    assert mid.length == pytest.approx(3 * 3 * 60 / 90)  # three bars of three quarter notes
    np.testing.assert_array_equal(midi.midi_to_roll(mid), roll)
    with pytest.raises(ValueError, match="a 4/4 bar has 16 steps"):
        midi.roll_to_midi(roll)


def test_a_foreign_file_in_another_meter_is_counted_in_its_bars_but_not_played():
    mid = mido.MidiFile(ticks_per_beat=96)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("time_signature", numerator=2, denominator=4, time=0))
    track.append(mido.Message("note_on", note=60, velocity=90, time=0))
    track.append(mido.Message("note_on", note=60, velocity=0, time=96 * 3))  # a bar and a half of 2/4
    mid.tracks.append(track)
    assert midi.midi_to_notes(mid) == ([Note(0, 0, 60, 12)], 2)
    with pytest.raises(midi.MidiError, match="a bar in 2/4: the box reads 4/4, 3/4, 6/8"):
        midi.midi_meters(mid)
