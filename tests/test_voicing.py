"""runtime/voicing.py: parallels between any two lines and unprepared clashes on any beat re-spelled to the
model's most probable pitch that mends them; prepared dissonance, the melody and tied notes kept; every
note and rhythm kept."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from musicbox.model.panel import ALL_PAIRS, clash_share, parallels
from musicbox.runtime import generator
from musicbox.runtime.bundle import Bundle
from musicbox.runtime.controls import Controls
from musicbox.runtime.meter import METERS
from musicbox.runtime.pianoroll import DEFAULT, HELD, Note, notes_to_roll, roll_to_notes
from musicbox.runtime.voicing import tail_of, voice

BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "bundle"
LOW = DEFAULT.pitch_low
MELODY, HARMONY, BASS = 0, 1, 2
WRITTEN = 0.95
UNSURE = 0.8 * WRITTEN  # the level of a note's alternative pitches (within a major third)


def _probs(notes: list[Note], alternatives: dict[int, float]) -> np.ndarray:
    """Decoder-like probabilities: WRITTEN on the notes; ``alternatives[i]`` on every pitch within a
    major third of note ``i``."""
    probs = np.zeros((1, 6, 16, DEFAULT.n_pitches), np.float32)
    for i, n in enumerate(notes):
        plane, steps = probs[0, 2 * n.track + 1], slice(n.start, n.start + n.duration)
        for d in range(-4, 5):
            row = n.pitch - LOW + d
            level = WRITTEN if d == 0 else alternatives.get(i, 0.0)
            plane[steps, row] = np.maximum(plane[steps, row], level)
    return probs


def _rhythm(roll: np.ndarray) -> list[tuple[int, int, int]]:
    return sorted((n.track, n.start, n.duration) for n in roll_to_notes(roll))


def _pitches(roll: np.ndarray, track: int) -> list[int]:
    return [n.pitch for n in roll_to_notes(roll) if n.track == track]


def test_an_inner_voice_parallel_fifth_is_respelled_over_the_bar_line():
    # the bar before ended with the harmony on C4 and G4; now D4 and A4: fifths in the inner voices
    notes = [
        Note(MELODY, 0, 79, 16),
        Note(HARMONY, 0, 62, 16),
        Note(HARMONY, 0, 69, 16),
        Note(BASS, 0, 43, 16),
    ]
    roll = notes_to_roll(notes, 1)
    tail = ((), (60 - LOW, 67 - LOW), (43 - LOW,))
    before = np.concatenate([notes_to_roll([Note(HARMONY, 15, 60, 1), Note(HARMONY, 15, 67, 1)], 1), roll])
    assert parallels(before, ((1, 2),))["fifths"] > 0
    fixed = voice(roll, _probs(notes, {1: UNSURE, 2: UNSURE}), tail, DEFAULT)
    after = np.concatenate([before[:1], fixed])
    assert parallels(after, ((1, 2),))["fifths"] == 0
    assert _rhythm(fixed) == _rhythm(roll) and _pitches(fixed, MELODY) == [79]
    # without the tail the bar has no motion to judge: nothing changes
    assert np.array_equal(voice(roll, _probs(notes, {1: UNSURE, 2: UNSURE}), (), DEFAULT), roll)


def test_parallel_fifths_between_melody_and_bass_move_the_bass_never_the_melody():
    notes = [
        Note(MELODY, 0, 67, 4),
        Note(MELODY, 4, 69, 4),  # melody G A
        Note(BASS, 0, 48, 4),
        Note(BASS, 4, 50, 4),  # bass C D: fifths
    ]
    roll = notes_to_roll(notes, 1)
    assert parallels(roll, ALL_PAIRS)["fifths"] > 0
    fixed = voice(roll, _probs(notes, {1: UNSURE, 3: UNSURE}), (), DEFAULT)
    assert parallels(fixed, ALL_PAIRS)["fifths"] == 0
    assert _pitches(fixed, MELODY) == [67, 69] and _pitches(fixed, BASS)[0] == 48
    assert _rhythm(fixed) == _rhythm(roll)


def test_parallel_octaves_take_the_model_s_most_probable_mending_pitch():
    # harmony doubles the bass an octave up, C D E F: parallel octaves at every move
    line = (48, 50, 52, 53)
    notes = [Note(HARMONY, 4 * k, p + 12, 4) for k, p in enumerate(line)]
    notes += [Note(BASS, 4 * k, p, 4) for k, p in enumerate(line)]
    roll = notes_to_roll(notes, 1)
    assert parallels(roll, ((2, 3),))["octaves"] == 100.0
    fixed = voice(roll, _probs(notes, dict.fromkeys(range(len(notes)), UNSURE)), (), DEFAULT)
    assert parallels(fixed, ((2, 3),))["octaves"] == 0 and _rhythm(fixed) == _rhythm(roll)
    probs = _probs(notes, {})
    probs[0, 2 * HARMONY + 1, 4:8, 65 - LOW] = 0.6  # the model's second choice for the harmony's D4: F4
    probs[0, 2 * HARMONY + 1, 4:8, 59 - LOW] = 0.03  # B3, an order of magnitude less likely
    assert _pitches(voice(roll, probs, (), DEFAULT), HARMONY)[1] == 65
    probs[0, 2 * HARMONY + 1, 4:8, 59 - LOW] = 0.0
    probs[0, 2 * HARMONY + 1, 4:8, 63 - LOW] = 0.02  # the nearer Eb4, an order of magnitude less likely
    assert _pitches(voice(roll, probs, (), DEFAULT), HARMONY)[1] == 65
    probs[0, 2 * HARMONY + 1, 4:8, 63 - LOW] = 0.2  # Eb4 about as likely as F4: the shorter way
    assert _pitches(voice(roll, probs, (), DEFAULT), HARMONY)[1] == 63


def _suspension(held: bool) -> list[Note]:
    """A harmony C5 against a bass B2 struck on beat 2 (step 4) of a 4/4 bar; the C5 then steps down to
    B4. ``held``: the C5 is tied into the beat from beat 1 (a suspension), else struck on it after a
    leap from G4."""
    upper = [Note(HARMONY, 0, 72, 6)] if held else [Note(HARMONY, 0, 67, 4), Note(HARMONY, 4, 72, 2)]
    return [
        *upper,
        Note(HARMONY, 6, 71, 2),
        Note(BASS, 0, 48, 4),
        Note(BASS, 4, 47, 4),
        Note(MELODY, 0, 79, 8),
    ]


def test_a_prepared_suspension_is_kept_and_the_same_clash_struck_is_fixed():
    for held in (True, False):
        notes = _suspension(held)
        roll = notes_to_roll(notes, 1)
        assert clash_share(roll, (4,)) == 1.0
        fixed = voice(roll, _probs(notes, dict.fromkeys(range(len(notes)), UNSURE)), (), DEFAULT)
        if held:
            assert np.array_equal(fixed, roll)
        else:
            assert clash_share(fixed, (4,)) == 0.0 and _rhythm(fixed) == _rhythm(roll)


def test_an_unprepared_clash_on_a_weak_beat_is_fixed_in_every_meter():
    for meter in METERS.values():
        weak = next(b for b in meter.beats if b not in meter.strong) if len(meter.beats) > 2 else 6
        # the melody holds D5; the harmony leaps to C#5 on the beat and leaps away
        notes = [
            Note(MELODY, 0, 74, meter.steps),
            Note(HARMONY, 0, 64, weak),
            Note(HARMONY, weak, 73, 2),
            Note(HARMONY, weak + 2, 64, 2),
        ]
        roll = notes_to_roll(notes, 1)
        assert clash_share(roll, (weak,), meter) == 1.0
        fixed = voice(roll, _probs(notes, {2: UNSURE}), (), DEFAULT, meter)
        assert clash_share(fixed, (weak,), meter) == 0.0, meter.name
        assert _pitches(fixed, MELODY) == [74] and _rhythm(fixed) == _rhythm(roll)


def test_a_note_tied_over_the_bar_line_stays():
    # the harmony's C#4 is held over from the bar before against the bass's C3 struck on the downbeat
    notes = [Note(HARMONY, 0, 61, 8), Note(BASS, 0, 48, 8), Note(MELODY, 0, 76, 16)]
    roll = notes_to_roll(notes, 1)
    roll[0, HARMONY, 0, 61 - LOW] = HELD
    tail = ((76 - LOW,), (61 - LOW,), ())
    assert clash_share(roll, (0,)) == 1.0
    fixed = voice(roll, _probs(notes, {0: UNSURE, 1: UNSURE}), tail, DEFAULT)
    assert clash_share(fixed, (0,)) == 0.0
    assert fixed[0, HARMONY, 0, 61 - LOW] == HELD and _pitches(fixed, BASS) != [48]


def test_a_melody_alone_is_left_as_it_is():
    roll = notes_to_roll([Note(MELODY, 0, 60, 4), Note(MELODY, 4, 61, 4)], 1)
    assert np.array_equal(voice(roll, np.ones((1, 6, 16, 64), np.float32), (), DEFAULT), roll)


def test_tail_names_every_tracks_pitches_at_the_last_step():
    roll = notes_to_roll([Note(MELODY, 0, 72, 16), Note(HARMONY, 12, 60, 4), Note(HARMONY, 12, 64, 4)], 1)
    assert tail_of(roll) == ((72 - LOW,), (60 - LOW, 64 - LOW), ())


def test_the_generator_plays_the_bars_as_decoded_when_asked(monkeypatch):
    calls = []
    monkeypatch.setattr(generator, "voice", lambda roll, *args: calls.append(1) or roll)
    bundle = Bundle.open(BUNDLE)
    generator.Generator(bundle, seed=1, voicing=False).next_bar(Controls(0.0))
    assert calls == []
    generator.Generator(bundle, seed=1).next_bar(Controls(0.0))
    assert calls == [1]


def test_a_bar_denser_than_lines_is_left_as_decoded_at_once():
    from musicbox.runtime.voicing import MAX_NOTES

    # every sixteenth of three tracks, fifths stepping up and down together: more notes than it voices
    notes = [
        Note(t, s, 48 + 2 * (s % 2) + 7 * k + 12 * t, 1)
        for t in range(3)
        for s in range(16)
        for k in range(2)
    ]
    roll = notes_to_roll(notes, 1)
    assert len(roll_to_notes(roll)) > MAX_NOTES and parallels(roll, ALL_PAIRS)["fifths"] > 0
    start = time.perf_counter()
    assert np.array_equal(voice(roll, _probs(notes, {1: UNSURE}), (), DEFAULT), roll)
    assert time.perf_counter() - start < 0.5
