"""Knobs first: a turn is heard from the next beat line, and a swept knob never silences the box.

The ring and the player are driven directly (as the worker and PortAudio would); the generator's held
steps, the mode a theme returns in and ``render --script`` run on the shipped bundle; the sweep runs the
real box on a JACK dummy device."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import mido
import numpy as np
import pytest

from musicbox.runtime.box.player import Player, PlayerSettings
from musicbox.runtime.box.ring import BarRing, Span
from musicbox.runtime.controls import Button, Controls, rewrites
from musicbox.runtime.meter import COMMON, METERS
from musicbox.runtime.pianoroll import DEFAULT, change_mode

OK = SimpleNamespace(output_underflow=False)
BAR = 400  # frames per test bar (4 beats of 100)
BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "bundle"
FOUR = Span.of(COMMON.beats, COMMON.steps)


def _flat(value: float, frames: int = BAR) -> np.ndarray:
    return np.full((frames, 2), value, np.float32)


def _play(player: Player, blocks: int, frames: int = 64) -> np.ndarray:
    out = np.zeros((blocks * frames, 2), np.float32)
    for i in range(blocks):
        player._callback(out[i * frames : (i + 1) * frames], frames, None, OK)
    return out


@pytest.fixture
def ring():
    r = BarRing.create(n_slots=5, slot_frames=BAR)
    yield r
    r.close()


def test_a_newer_entry_of_the_playing_bar_takes_over_at_the_first_beat_line_it_starts_by(ring):
    ring.write_bar(0, 0, _flat(0.1), FOUR)
    ring.write_bar(1, 0, _flat(0.2), FOUR)
    player = Player(ring, PlayerSettings(fade_ms=0.1, splice_ms=0.5))
    _play(player, 1)  # 64 frames into bar 0 (beat 0)
    rest = Span.of(COMMON.beats, COMMON.steps, first=8)  # the rest of bar 0 from beat 2 (step 8)
    ring.write_bar(0, 1, _flat(0.7, BAR // 2), rest)
    out = _play(player, 7)[:, 0]  # frames 64 .. 512: beat 1 (100) passes, the splice lands at 200
    xfade = player._xfade_frames
    assert np.allclose(out[: 200 - 64], 0.1)  # beat 1 has no newer entry that starts by it
    assert np.allclose(out[200 - 64 + xfade : 400 - 64], 0.7)  # from beat 2: the rewritten rest
    assert np.all(np.abs(np.diff(out[130:160])) < 0.6 / (xfade - 1) * 1.01)  # a crossfade, not a jump
    assert np.allclose(out[400 - 64 :], 0.2)  # bar 1 follows at the bar line
    assert ring.splices == 1 and ring.bars_played == 2
    assert player.beat_seconds() == pytest.approx(100 / 44100)  # a beat of bar 1 as it plays: 100 frames
    log = player.log
    marks = [tuple(int(v) for v in log.marks[i]) for i in range(log.n_marks)]
    assert [(m[2], m[3], m[4]) for m in marks] == [(0, 0, 0), (0, 1, 8), (1, 0, 0)]  # bar, gen, step
    assert marks[1][0] == 200 and marks[2][0] == 400  # log frames where each began
    np.testing.assert_array_equal(log.read(64, 512)[:, 0], out)  # the log holds what was played


def test_a_late_rewrite_plays_from_the_next_beat_line_at_its_own_place(ring):
    ring.write_bar(0, 0, _flat(0.1), FOUR)
    player = Player(ring, PlayerSettings(fade_ms=0.1, splice_ms=0.5))
    _play(player, 4)  # 256 frames: past beat 2 (200)
    ramp = np.stack([np.arange(300, dtype=np.float32)] * 2, axis=1) / 1000.0
    ring.write_bar(0, 1, ramp, Span.of(COMMON.beats, COMMON.steps, first=4))  # from beat 1: too late
    out = _play(player, 2)[:, 0]  # frames 256..384: the splice lands at beat 3 (300)
    xfade = player._xfade_frames
    assert np.allclose(out[: 300 - 256], 0.1)
    np.testing.assert_allclose(out[300 - 256 + xfade :], (200 + np.arange(xfade, 84)) / 1000.0, atol=1e-6)


def test_superseded_entries_hand_their_slots_back_so_a_sweep_never_clogs_the_ring(ring):
    """Fifty turns, each a rewrite of the playing bar and the two after it: five slots always suffice."""
    ring.write_bar(0, 0, _flat(0.0), FOUR)
    ring.start_entry(ring.pick_next())
    for gen in range(1, 51):
        for bar, span in ((0, Span.of(COMMON.beats, COMMON.steps, first=4)), (1, FOUR), (2, FOUR)):
            assert ring.has_room(), f"no free slot at generation {gen}"
            ring.write_bar(bar, gen, _flat(gen / 100), span)
            ring.sweep()
    assert ring.pick_splice(4) >= 0 and ring.entry_info(ring.pick_splice(4))[1] == 50
    assert ring.entry_info(ring.pick_next())[:2] == (1, 50)  # the newest bar 1, never a stale one


def test_old_music_plays_until_the_rewrite_is_there(ring):
    for bar in range(3):
        ring.write_bar(bar, 0, _flat(0.1 * (bar + 1)), FOUR)
    ring.start_entry(ring.pick_next())
    ring.write_bar(1, 1, _flat(0.9), FOUR)  # a turn: bar 1 rewritten, bar 2 not yet
    ring.sweep()
    ring.start_entry(ring.pick_next())
    assert ring.playing()[1:] == (1, 1)
    assert ring.entry_info(ring.pick_next())[:2] == (2, 0)  # the stale bar 2 beats silence


def test_silence_longer_than_the_buffer_while_playing_stops_the_watchdog(ring):
    from musicbox.config import default_config
    from musicbox.runtime.box.player import StreamState
    from musicbox.runtime.box.supervisor import BoxState, Supervisor
    from musicbox.runtime.box.worker import WorkerSettings

    box = Supervisor(WorkerSettings(Path("/nonexistent"), default_config().synth), PlayerSettings(), None)
    try:
        box.ring.write_bar(0, 0, _flat(0.3, 200), FOUR)
        box.state, box.player.state = BoxState.PLAYING, StreamState.RUNNING
        _play(box.player, 4)  # the bar, then the ring runs dry
        assert box.player.silent_for(box.player.last_sound + 1.0) == pytest.approx(1.0)
        box.player.frames_played += 1  # music came out since the last ping ...
        assert box.healthy(box.player.last_sound + 1.0)
        assert not box.healthy(box.player.last_sound + box.worker_settings.ahead_s + 0.1)  # ... but long ago
        box.player.pause()
        assert box.player.silent_for(box.player.last_sound + 60.0) == 0.0  # paused is not silence
    finally:
        box.ring.close()


def test_a_turn_inside_a_bar_is_spliced_at_the_next_beat_line_and_a_tempo_turn_only_renders_again():
    from musicbox.config import default_config
    from musicbox.runtime.box.supervisor import Supervisor, WorkerHandle
    from musicbox.runtime.box.worker import WorkerSettings, Written
    from musicbox.runtime.state import GeneratorState

    box = Supervisor(WorkerSettings(Path("/nonexistent"), default_config().synth), PlayerSettings(), None)
    try:
        worker = WorkerHandle(SimpleNamespace(pid=1), None, 0.0, ready=True, wrote=True)
        for bar in range(3):
            state = GeneratorState.fresh(3, 0, 2, (4, 64))
            state = replace(state, index=bar + 1, roll=np.zeros((3, 16, 64), np.uint8))
            box.ring.write_bar(bar, 0, _flat(0.1, 1600), FOUR)
            box._on_written(worker, Written(bar, 0, state, box.controls, [], meter=COMMON))
        _play(box.player, 3, frames=256)  # 768 frames into bar 0 of 1600: past beat 1 (step 4 at 400)
        box._follow_player()
        box._change(replace(box.controls, tempo_bpm=140.0), "controls")
        play = box._resume
        assert play.from_bar == 0 and play.splice.step == 8 and not play.splice.rewrite
        box._change(replace(box.controls, mood=1.0), "controls")
        assert box._resume.splice.step == 8 and box._resume.splice.rewrite
        box._change(replace(box.controls, meter="3/4"), "controls")  # a meter waits for the bar line
        assert box._resume.splice is None and box._resume.from_bar == 1
    finally:
        box.ring.close()


def test_only_style_mood_variation_and_meter_rewrite_the_rest_of_a_bar():
    base = Controls()
    assert not rewrites(base, replace(base, tempo_bpm=150.0))
    for changed in (dict(style=1.0), dict(mood=0.5), dict(variation=0.9), dict(meter="3/4")):
        assert rewrites(base, replace(base, **changed))


def test_a_theme_comes_back_in_the_other_mode_by_scale_degree():
    roll = np.zeros((1, 3, 16, DEFAULT.n_pitches), np.uint8)
    e4, a4, b4, c5, g4 = (p - DEFAULT.pitch_low for p in (64, 69, 71, 72, 67))
    roll[0, 0, 0, [e4, a4, b4, c5, g4]] = 2
    minor = change_mode(roll, major=False)
    assert set(np.flatnonzero(minor[0, 0, 0])) == {e4 - 1, a4 - 1, b4 - 1, c5, g4}  # Eb Ab Bb, C and G stay
    assert np.array_equal(change_mode(minor, major=True), roll)


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="no shipped bundle")
def test_a_mood_turn_across_the_middle_is_heard_by_the_model_in_the_new_mode():
    """The model hears the bars before a turn from dark to bright in major (it would otherwise go on in
    the mode of its context, whatever the knob asks); a turn that stays on one side leaves them as they
    were played."""
    from musicbox.runtime.bundle import Bundle
    from musicbox.runtime.generator import Generator
    from musicbox.runtime.pianoroll import planes_to_roll

    bundle = Bundle.open(BUNDLE, "int8")
    gen = Generator(bundle, seed=3)
    for _ in range(6):
        gen.next_bar(Controls(mood=-1.0))
    dark = gen.get_state()

    def degrees(state) -> tuple[int, int]:
        """Notes of the context bars on the minor third, sixth and seventh, and on the major ones."""
        roll = planes_to_roll(bundle.decode(state.context[:-1][state.context_mask[:-1] > 0]), 0.5)
        classes = (np.nonzero(roll)[-1] + DEFAULT.pitch_low) % 12  # the model writes at tonic C
        return int(np.isin(classes, (3, 8, 10)).sum()), int(np.isin(classes, (4, 9, 11)).sum())

    gen.next_bar(Controls(mood=-0.3))
    assert np.array_equal(gen.get_state().context[:-1], dark.context[1:])  # same side: as played
    minor_before, major_before = degrees(gen.get_state())
    gen.set_state(dark)
    gen.next_bar(Controls(mood=1.0))
    minor_after, major_after = degrees(gen.get_state())
    assert minor_before > 0 and minor_after < minor_before / 2 and major_after > major_before


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="no shipped bundle")
def test_a_held_bar_keeps_its_first_steps_and_writes_the_rest_for_the_new_knobs():
    from musicbox.runtime.bundle import Bundle
    from musicbox.runtime.generator import Generator, Hold

    gen = Generator(Bundle.open(BUNDLE, "int8"), seed=3)
    dark, bright = Controls(mood=-1.0), Controls(mood=1.0)
    for _ in range(3):
        gen.next_bar(dark)
    before = gen.get_state()
    old = gen.next_bar(dark)
    after = gen.get_state()
    gen.set_state(before)
    new = gen.next_bar(bright, Hold.of(after, 8))
    head = sorted((n.track, n.start, n.pitch) for n in old.notes if n.start < 8)
    assert head == sorted((n.track, n.start, n.pitch) for n in new.notes if n.start < 8)
    assert new.controls == bright and gen.get_state().roll is not None


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="no shipped bundle")
def test_render_script_turns_at_the_first_beat_line_after_their_time(tmp_path):
    from musicbox.cli import main

    script = tmp_path / "turns.json"
    # 100 BPM 4/4: bar 0 is 0..2.4 s, beats every 0.6 s; a tempo turn at 1.3 s lands on beat 3 (1.8 s);
    # at 150 BPM the rest of bar 0 ends at 2.2 s; a style turn at 2.9 s lands at beat 2 of bar 1 (3.0 s)
    script.write_text(json.dumps([{"at": 1.3, "tempo": 150}, {"at": 2.9, "style": 3}]))
    mid = tmp_path / "a.mid"
    args = ["render", "--seconds", "6", "--tempo", "100", "--style", "0", "--bundle", str(BUNDLE)]
    assert main([*args, "--script", str(script), "--out", str(tmp_path / "a.wav"), "--midi", str(mid)]) == 0
    midi = mido.MidiFile(mid)
    tempos = [(t, m.tempo) for t, m in _timed(midi.tracks[0]) if m.type == "set_tempo"]
    beats = [(t / midi.ticks_per_beat, round(mido.tempo2bpm(v))) for t, v in tempos]
    assert beats[:2] == [(0.0, 100), (3.0, 150)]
    assert all(t >= 4.0 and 140 <= bpm < 150 for t, bpm in beats[2:])  # later: only the phrasing's ritardando
    programs = [t / midi.ticks_per_beat for t, m in _timed(midi.tracks[1]) if m.type == "program_change"]
    assert programs == [0.0, 6.0]  # bar 1 (quarters 4..8) takes the new style's instrument at beat 2


def _timed(track):
    tick = 0
    for m in track:
        tick += m.time
        yield tick, m


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed")
def test_tempo_and_mood_swept_every_quarter_second_never_silence_the_box():
    from musicbox.runtime.box.turns import sweep

    figures = sweep(BUNDLE, every_s=0.25, turning_s=30.0, quiet_s=15.0)
    assert figures["turns"] >= 100
    assert figures["underruns"] == 0 and figures["silence_s"] <= 0.5, figures
    assert figures["splices"] > 0  # turns were heard inside bars, not only at bar lines
    assert figures["longest_between_bar_lines_s"] <= figures["longest_bar_s"] + 0.5, figures


def test_meters_have_their_beat_lines_in_the_ring_span():
    assert Span.of(METERS["6/8"].beats, 12).beats == (1 << 0) | (1 << 6)
    assert Span.of(METERS["3/4"].beats, 12, first=4) == Span(4, 12, 0b100010001)


def test_major_share_counts_two_bar_windows_in_major():
    from musicbox.model.form_eval import major_share

    def bars(pitches: list[int], n: int) -> np.ndarray:
        roll = np.zeros((n, 3, 16, DEFAULT.n_pitches), np.uint8)
        for i, p in enumerate(pitches):
            roll[:, 0, 2 * i, p - DEFAULT.pitch_low] = 2
        return roll

    c_major = bars([60, 64, 67, 72, 65, 69, 71, 62], 4)
    a_minor = bars([57, 60, 64, 69, 62, 65, 68, 71], 4)
    assert major_share(c_major) == 1.0 and major_share(a_minor) == 0.0
    assert major_share(np.concatenate([c_major, a_minor])) == 0.5


def test_a_knob_turned_right_after_next_keeps_next_s_seed():
    from musicbox.config import default_config
    from musicbox.runtime.box.supervisor import Supervisor, WorkerHandle
    from musicbox.runtime.box.worker import WorkerSettings, Written
    from musicbox.runtime.state import GeneratorState

    box = Supervisor(WorkerSettings(Path("/nonexistent"), default_config().synth), PlayerSettings(), None)
    try:
        worker = WorkerHandle(SimpleNamespace(pid=1), None, 0.0, ready=True, wrote=True)
        state = replace(GeneratorState.fresh(3, 0, 2, (4, 64)), index=1, roll=np.zeros((3, 16, 64), np.uint8))
        box.ring.write_bar(0, 0, _flat(0.1, 1600), FOUR)
        box._on_written(worker, Written(0, 0, state, box.controls, [], meter=COMMON))
        _play(box.player, 1, frames=256)
        box._follow_player()
        box._change(box.controls, "next", seed=99)
        box._change(replace(box.controls, tempo_bpm=140.0), "controls")  # before next's rewrite played
        assert box._resume.seed == 99 and box._resume.splice.rewrite  # written again, with next's seed
    finally:
        box.ring.close()


def test_a_worker_dying_while_the_box_stops_does_not_undo_the_stop():
    """Seen from a fresh clone: SIGTERM, then the worker died (the signal reached it too); the box went
    STOPPING -> RECOVERING and played on for minutes."""
    from musicbox.config import default_config
    from musicbox.runtime.box.supervisor import BoxState, Supervisor, WorkerHandle
    from musicbox.runtime.box.worker import WorkerSettings

    box = Supervisor(WorkerSettings(Path("/nonexistent"), default_config().synth), PlayerSettings(), None)
    try:
        box.post(Button.SHUTDOWN)
        box._handle_events()
        assert box.state is BoxState.STOPPING
        dead = SimpleNamespace(
            pid=4242, exitcode=-15, is_alive=lambda: False, kill=lambda: None, join=lambda t: None
        )
        box.worker = WorkerHandle(
            dead, SimpleNamespace(close=lambda: None, poll=lambda t: False), 0.0, wrote=True
        )
        box._spawn = lambda: None  # no real process in this test
        box._check_worker(1.0)
        assert box.state is BoxState.STOPPING
    finally:
        box.ring.close()
