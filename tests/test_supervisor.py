"""Supervisor logic without an audio device: knob changes, hang detection, watchdog, recorder."""

from __future__ import annotations

import errno
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
from musicbox.runtime.box.supervisor import Supervisor, WorkerHandle, _watchdog_interval
from musicbox.runtime.box.worker import WorkerSettings, Written
from musicbox.runtime.controls import Controls
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
    return replace(GeneratorState.fresh(seed, key=0, context_bars=2, latent=(4, 64)), index=bar + 1)


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


def test_a_worker_without_heartbeat_is_hung(box):
    alive = SimpleNamespace(pid=4242, is_alive=lambda: True)
    worker = WorkerHandle(alive, None, time.monotonic(), ready=True, wrote=True)
    box.ring.beat(4242)
    assert box._worker_problem(worker, time.monotonic()) == ""
    assert "hung" in box._worker_problem(worker, time.monotonic() + 10.0)
    starting = WorkerHandle(alive, None, time.monotonic())
    assert box._worker_problem(starting, time.monotonic() + 10.0) == ""  # loading: start timeout applies


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert _watchdog_interval() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert _watchdog_interval() == 0.0


def _recorder(folder: Path) -> Recorder:
    rec = Recorder(folder, minutes_kept=1, sample_rate=8000, pcm_minutes=0.05)  # 3 s of audio kept
    info = SimpleNamespace(controls=Controls(tempo_bpm=120.0))
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
    time.sleep(1.1)  # a new file name (one per second)
    rec.save().join(10)
    assert rec.failures == 1 and "No space left" in rec.last_error
    assert {p.name: p.stat().st_size for p in (tmp_path / "rec").iterdir()} == before
    assert "save failed, playing on" in caplog.text
