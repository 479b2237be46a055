"""Supervisor logic without an audio device: knob changes, hang detection, watchdog, recorder."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import mido
import numpy as np
import pytest
import soundfile

from musicbox.config import default_config
from musicbox.runtime.box import recorder as recorder_module
from musicbox.runtime.box.player import PlayerSettings
from musicbox.runtime.box.recorder import Recorder
from musicbox.runtime.box.supervisor import BoxState, Supervisor, WorkerHandle, _watchdog_interval
from musicbox.runtime.box.worker import WorkerSettings, Written
from musicbox.runtime.controls import Controls
from musicbox.runtime.meter import COMMON, METERS
from musicbox.runtime.pianoroll import Note
from musicbox.runtime.state import GeneratorState


@pytest.fixture
def box():
    sup = Supervisor(
        WorkerSettings(Path("/nonexistent"), default_config().synth), PlayerSettings(), None, min_bpm=120.0
    )
    yield sup
    sup.ring.close()


def _state(bar: int, seed: int = 3) -> GeneratorState:
    return replace(GeneratorState.fresh(seed, key=0, history=2, latent=(4, 64)), index=bar + 1)


def _write(box: Supervisor, bar: int) -> None:
    box.ring.write_bar(bar, box.gen, np.zeros((100, 2), np.float32))
    worker = WorkerHandle(SimpleNamespace(pid=1), None, 0.0, ready=True, wrote=True)
    box._on_written(worker, Written(bar, box.gen, _state(bar), box.controls, []))


def test_knob_change_regenerates_from_the_next_bar_line(box):
    for bar in range(4):
        _write(box, bar)
    box.ring.start_entry(box.ring.pick_next())
    box.ring.start_entry(box.ring.pick_next())  # bar 1 playing, bars 2 and 3 buffered
    box._change(Controls(style=1.0, tempo_bpm=120.0, mood=0.5), "controls")
    play = box._resume
    assert (play.from_bar, play.gen, play.seam) == (2, 1, True)
    assert play.state.index == 2 and play.controls.style == 1.0
    assert 3 not in box._states  # the discarded bars' states are gone


def test_next_keeps_controls_and_changes_the_seed(box):
    _write(box, 0)
    box.ring.start_entry(box.ring.pick_next())
    box._change(box.controls, "next", seed=99)
    assert box._resume.seed == 99 and box._resume.controls == box.controls and box._resume.from_bar == 1


def test_a_worker_without_heartbeat_is_hung_even_before_its_first_bar(box):
    alive = SimpleNamespace(pid=4242, is_alive=lambda: True)
    worker = WorkerHandle(alive, None, time.monotonic(), ready=True, wrote=True)
    box.ring.beat(4242)
    box.ring.mark_progress()
    assert box.hang_timeout_s == 2.0  # a third of the 6 s buffered
    assert box._worker_problem(worker, time.monotonic()) == ""
    assert "hung" in box._worker_problem(worker, time.monotonic() + 2.5)
    starting = WorkerHandle(alive, None, time.monotonic())  # loading, no bar yet, frozen: same timeout
    assert "hung" in box._worker_problem(starting, time.monotonic() + 2.5)


def test_a_worker_that_dies_as_the_box_stops_is_not_replaced(box, monkeypatch):
    dead = SimpleNamespace(pid=4243, is_alive=lambda: False, exitcode=255)
    box.worker = WorkerHandle(dead, None, time.monotonic(), ready=True, wrote=True)
    monkeypatch.setattr(box, "_spawn", lambda: pytest.fail("a worker spawned while the box stops"))
    assert "died" in box._worker_problem(box.worker, time.monotonic())
    box._transition(BoxState.STOPPING, "stop requested")
    box._check_worker(time.monotonic())
    assert box.worker.process is dead and box.worker_restarts == 0


def test_a_beating_worker_whose_main_thread_makes_no_progress_is_stuck(box):
    alive = SimpleNamespace(pid=4242, is_alive=lambda: True)
    worker = WorkerHandle(alive, None, time.monotonic() - 100.0, ready=True, wrote=True)
    box.ring.mark_progress()
    box.ring.beat(4242)
    assert box._worker_problem(worker, time.monotonic()) == ""
    later = time.monotonic() + box.settings.stall_timeout_s + 1.0
    box.ring.beat(4242)
    box.ring._floats[0] = later  # the heartbeat thread still beats then; the main thread stamped nothing
    assert "stuck" in box._worker_problem(worker, later)


@pytest.mark.parametrize(
    "bars,tempo,seconds", [(4, 160.0, 6.0), (1, 300.0, 6.0), (4, 300.0, 6.0), (2, 60, 6.0)]
)
def test_the_worker_keeps_the_buffered_seconds_at_any_tempo(bars, tempo, seconds):
    settings = WorkerSettings(Path("/x"), default_config().synth, ahead_bars=bars, ahead_s=seconds)
    ahead = settings.ahead_for(tempo)
    assert ahead >= bars and ahead * Controls(tempo_bpm=tempo).bar_seconds() >= seconds


@pytest.mark.parametrize("tempo", [60.0, 160.0, 300.0])
def test_the_ring_holds_the_seconds_ahead_in_the_shortest_meter_and_a_slot_the_longest_bar(tempo):
    """A 3/4 or 6/8 bar is 3/4 of a 4/4 bar: the worker keeps more of them ahead, and the ring has room."""
    from musicbox.runtime.buffering import ring_slots, slot_frames

    settings = WorkerSettings(Path("/x"), default_config().synth, ahead_bars=4, ahead_s=6.0)
    ahead = settings.ahead_for(tempo, METERS["3/4"].steps)
    assert ahead * Controls(tempo_bpm=tempo).bar_seconds(12) >= 6.0 and ahead >= settings.ahead_for(tempo)
    assert ring_slots(4, 6.0, tempo) >= 2 * ahead + 3
    assert slot_frames(44100, tempo) >= 44100 * Controls(tempo_bpm=tempo).bar_seconds(16)


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert _watchdog_interval() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert _watchdog_interval() == 0.0


def _recorder(folder: Path) -> Recorder:
    rec = Recorder(folder, minutes_kept=1, sample_rate=8000, pcm_minutes=0.05)  # 3 s of audio kept
    info = SimpleNamespace(controls=Controls(tempo_bpm=120.0), meter=COMMON)
    for bar in range(4):  # 4 bars of 2 s: only the last 3 s of audio are kept
        rec.add_bar(np.full((16000, 2), 0.1 * bar, np.float32), [Note(0, 0, 60 + bar, 4)], info)
    return rec


def test_save_writes_wav_and_midi_atomically(tmp_path):
    rec = _recorder(tmp_path / "rec")
    rec.save().join(10)
    wav, mid = rec.last_saved
    audio, rate = soundfile.read(wav)
    assert rate == 8000 and audio.shape == (24000, 2) and abs(audio[-1, 0] - 0.3) < 1e-3
    notes = [m.note for track in mido.MidiFile(mid).tracks for m in track if m.type == "note_on"]
    assert notes == [60, 61, 62, 63]
    assert rec.saves == 1 and not list((tmp_path / "rec").glob(".*tmp"))


def test_full_disk_is_logged_playback_goes_on_and_earlier_saves_survive(tmp_path, monkeypatch, caplog):
    rec = _recorder(tmp_path / "rec")
    rec.save().join(10)
    before = {p.name: p.stat().st_size for p in (tmp_path / "rec").iterdir()}

    def full(path, *_args):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(recorder_module, "_write_wav", full)
    # A save's file name holds its second: the recorder's clock moves on one second (no waiting it out).
    later = time.localtime(time.time() + 1)
    monkeypatch.setattr(
        recorder_module, "time", SimpleNamespace(strftime=lambda fmt: time.strftime(fmt, later))
    )
    rec.save().join(10)
    assert rec.failures == 1 and "No space left" in rec.last_error
    assert {p.name: p.stat().st_size for p in (tmp_path / "rec").iterdir()} == before
    assert "save failed, playing on" in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_libsndfile_failing_mid_write_on_a_full_disk_is_one_explained_line(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "tiny"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], check=True)
    try:
        rec = _recorder(folder)  # 3 s at 8 kHz = 94 KiB; the disk is filled to leave less
        (folder / "filler").write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))
        monkeypatch.setattr(recorder_module, "_check_room", lambda *_: None)  # the disk fills up mid-write
        rec.save().join(10)
        assert rec.failures == 1 and rec.saves == 0
        assert "ran full while saving" in rec.last_error and "minutes_kept" in rec.last_error
        assert sorted(p.name for p in folder.iterdir()) == ["filler"]  # no partial file
        assert rec.last_event.startswith("save failed:")
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_save_has_the_meters_that_played(tmp_path):
    """Two bars of 3/4 (1.5 s at 120 BPM), then two of 6/8: the saved MIDI's time signatures and bar
    lines are the audio's."""
    rec = Recorder(tmp_path / "rec", minutes_kept=1, sample_rate=8000)
    for bar, meter in enumerate([METERS["3/4"], METERS["3/4"], METERS["6/8"], METERS["6/8"]]):
        info = SimpleNamespace(controls=Controls(tempo_bpm=120.0), meter=meter)
        rec.add_bar(np.full((12000, 2), 0.1, np.float32), [Note(0, 0, 60 + bar, 12)], info)
    rec.save().join(10)
    wav, mid = rec.last_saved
    mid = mido.MidiFile(mid)
    tick, signatures = 0, []
    for message in mid.tracks[0]:
        tick += message.time
        if message.type == "time_signature":
            signatures.append((tick, message.numerator, message.denominator))
    assert signatures == [(0, 3, 4), (2 * 1440, 6, 8)]
    assert mid.length == pytest.approx(soundfile.info(wav).duration) == pytest.approx(6.0)


def test_leftovers_of_a_killed_save_are_removed_at_the_next_start(tmp_path, caplog):
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / ".musicbox-20260101-120000.wav.tmp").write_bytes(b"RIFF partial")
    (folder / "musicbox-20251231-090000.wav").write_bytes(b"RIFF a whole earlier save")
    (folder / ".other.tmp").write_bytes(b"not ours")
    gone = Recorder(folder, minutes_kept=1, sample_rate=8000).remove_leftovers()
    assert [p.name for p in gone] == [".musicbox-20260101-120000.wav.tmp"]
    assert sorted(p.name for p in folder.iterdir()) == [".other.tmp", "musicbox-20251231-090000.wav"]
    assert "unfinished save" in caplog.text


def test_save_keeps_the_minutes_the_config_says():
    rec = Recorder(Path("/nonexistent"), minutes_kept=10, sample_rate=8000)
    assert rec._pcm.shape[0] == 10 * 60 * 8000


def test_the_terminal_says_where_a_save_went(tmp_path):
    import io

    from rich.console import Console

    from musicbox.commands.play import _status_publisher
    from musicbox.config import load_config
    from musicbox.device import open_backend

    config = tmp_path / "box.toml"
    config.write_text('[knobs]\nbackend = "terminal"\n')
    read_fd, write_fd = os.pipe()
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=400, color_system=None)
    backend = open_backend(load_config(config), ("chorale",), input_fd=read_fd, console=console)
    rec = _recorder(tmp_path / "rec")
    rec.save().join(10)
    box = SimpleNamespace(style_names=("chorale",), recorder=rec)
    sup = Supervisor(
        WorkerSettings(Path("/nonexistent"), default_config().synth), PlayerSettings(), rec, min_bpm=120.0
    )
    try:
        backend.start(lambda _c: None, lambda _b: None)
        _status_publisher(None, backend, box)(sup.stats())
    finally:
        backend.close()
        sup.ring.close()
        os.close(read_fd), os.close(write_fd)
    wav, mid = rec.last_saved
    assert f"saved {wav} and {mid.name}" in out.getvalue()


def test_the_watchdog_is_fed_only_while_music_comes_out_or_the_box_waits_on_purpose(box):
    from musicbox.runtime.box.player import StreamState
    from musicbox.runtime.box.supervisor import BoxState

    box.state, box.player.state = BoxState.PLAYING, StreamState.RUNNING
    assert not box.healthy()  # no frame played since the last ping: silence
    box.player.frames_played = 1024
    assert box.healthy()
    box._frames_at_ping = 1024
    assert not box.healthy()
    box.state = BoxState.PAUSED
    assert box.healthy()
    box.state, box.player.state = BoxState.PLAYING, StreamState.LOST  # waiting for the audio device
    assert box.healthy()


def test_the_loop_ticks_slower_while_it_only_waits_and_makes_no_stats_nobody_reads(box):
    from musicbox.runtime.box.supervisor import BoxState

    tick = box.settings.tick_s
    box.state = BoxState.STARTING
    assert box._tick_s() == tick
    box.state = BoxState.PLAYING
    assert box._tick_s() == 5 * tick  # playing, nothing to feed: a turn or a worker wakes it anyway
    box._on_audio = lambda pcm: None
    stream_tick = box.settings.stream_tick_s
    assert tick < stream_tick < 5 * tick  # the web remote's stream is fed every tick
    assert box._tick_s() == stream_tick
    listeners = []
    box._audio_wanted = lambda: bool(listeners)
    assert box._tick_s() == 5 * tick  # the stream is on but nobody listens
    listeners.append("a page")
    assert box._tick_s() == stream_tick
    box._on_audio = box._audio_wanted = None
    box._set_sleep_timer(30)
    assert box._tick_s() == tick  # the sleep timer fades the volume every tick
    box._set_sleep_timer(0)
    box._housekeeping(time.monotonic())
    assert box._last_stats == 0.0  # no --stats, no terminal, no systemd: no stats made
    seen = []
    box._on_status = seen.append
    box._housekeeping(time.monotonic())
    assert box._last_stats > 0.0 and seen[0].state == "playing"


def test_a_knob_posted_after_the_box_stopped_writes_to_no_file():
    """The web remote can hand on a knob turn just after the box stopped: the wake-up pipe is closed and
    its number may already name another file: the post writes nothing there and raises nothing."""
    sup = Supervisor(
        WorkerSettings(Path("/nonexistent"), default_config().synth), PlayerSettings(), None, min_bpm=120.0
    )
    sup._shutdown()
    r, w = os.pipe()  # the lowest free numbers: most likely the pipe's old ones
    try:
        sup.post(Controls(tempo_bpm=90.0))
        os.set_blocking(r, False)
        with pytest.raises(BlockingIOError):
            os.read(r, 16)  # nothing was written into the new pipe
    finally:
        os.close(r)
        os.close(w)
