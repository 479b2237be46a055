"""SAVE without copies: saves pressed at once share the recorder's ring (frozen at each press, written from
views in blocks), each gets its own files with the music up to its press, bars played meanwhile wait in
the side buffer and reach the ring afterwards, and a disk too slow gives the ring back and says so."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile

from musicbox.runtime.box import recorder as recorder_module
from musicbox.runtime.box.recorder import Recorder, played_bar
from musicbox.runtime.controls import Controls
from musicbox.runtime.meter import COMMON
from musicbox.runtime.pianoroll import Note

RATE = 8000
BAR = 8000  # frames of a test bar (1 s at 8 kHz)
INFO = SimpleNamespace(controls=Controls(tempo_bpm=240.0), meter=COMMON)


class Music:
    """A continuous test signal played bar by bar: every frame's value is known, so a saved file can be
    compared with exactly what was played up to its press."""

    def __init__(self):
        self.played: list[np.ndarray] = []

    def bar(self, frames: int = BAR) -> np.ndarray:
        start = sum(len(b) for b in self.played)
        ramp = ((np.arange(start, start + frames) * 7) % 60000 - 30000) / 32767.0
        pcm = np.stack([ramp, -ramp], axis=1).astype(np.float32)
        self.played.append(pcm)
        return pcm

    def last(self, frames: int) -> np.ndarray:
        whole = np.concatenate(self.played)[-frames:]
        return (np.clip(whole, -1.0, 1.0) * 32767.0).astype(np.int16)


def _play(rec: Recorder, music: Music, bars: int) -> None:
    for _ in range(bars):
        rec.add_bar(music.bar(), [Note(0, 0, 60, 4)], INFO)


@pytest.fixture
def gate(monkeypatch):
    """Holds the writer thread before each save's first write until set (a disk that has not answered
    yet), so the test decides what plays while saves are pending."""
    opened = threading.Event()
    check = recorder_module._check_room

    def held(folder, need):
        assert opened.wait(20), "the test never opened the gate"
        check(folder, need)

    monkeypatch.setattr(recorder_module, "_check_room", held)
    return opened


def _wav(path: Path) -> np.ndarray:
    data, rate = soundfile.read(path, dtype="int16", always_2d=True)
    assert rate == RATE
    return data


def test_three_saves_at_once_each_get_their_own_files_with_the_music_up_to_their_press(tmp_path, gate):
    rec = Recorder(tmp_path / "rec", minutes_kept=1, sample_rate=RATE, pcm_minutes=0.05)  # 3 s of audio
    ring_frames = rec._pcm.shape[0]
    music = Music()
    _play(rec, music, 5)  # the ring is full and has wrapped
    first = rec.save()
    expect_first = music.last(ring_frames)
    ring_before, pos_before = rec._pcm.copy(), rec._pos
    _play(rec, music, 2)  # played while the first save waits: kept aside, the ring is not touched
    assert rec._pos == pos_before and np.array_equal(rec._pcm, ring_before)
    second = rec.save()
    expect_second = music.last(ring_frames)
    partial = music.bar(BAR // 2)  # the bar playing, half played: the third save ends there
    third = rec.save((partial, played_bar(partial, [Note(0, 0, 64, 4)], INFO)))
    expect_third = music.last(ring_frames + BAR // 2)
    music.played.pop()  # the partial bar is played again whole below
    assert first is not None and second is not None and third is not None
    assert rec.pending() == 3 and not first.done()
    gate.set()
    for save in (first, second, third):
        assert save.join(20) and save.ok, save.error
    files = [s.files[0] for s in (first, second, third)]
    assert len(set(files)) == 3 and all(f.is_file() and f.with_suffix(".mid").is_file() for f in files)
    assert np.array_equal(_wav(files[0]), expect_first)
    assert np.array_equal(_wav(files[1]), expect_second)
    assert np.array_equal(_wav(files[2]), expect_third)
    assert rec.saves == 3 and rec.failures == 0 and rec.pending() == 0
    assert not list((tmp_path / "rec").glob(".*tmp"))
    _play(rec, music, 1)  # the next bar moves what waited aside into the ring, in order
    assert rec._side == [] and rec._side_frames == 0
    fourth = rec.save()
    assert fourth is not None and fourth.join(20) and fourth.ok
    assert np.array_equal(_wav(fourth.files[0]), music.last(ring_frames))


def test_a_save_copies_nothing_of_the_ring(tmp_path):
    """A full minute kept (7.3 MiB of int16): pressing SAVE three times and writing all three files
    allocates a small fraction of the ring, and nothing per press in the main thread."""
    rec = Recorder(tmp_path / "rec", minutes_kept=1, sample_rate=32000)
    music = Music()
    for _ in range(62):
        rec.add_bar(music.bar(32000), [Note(0, 0, 60, 4)], INFO)
    ring = rec._pcm.nbytes
    warm = rec.save()  # the first save imports the MIDI writer: not what a save costs
    assert warm is not None and warm.join(30) and warm.ok
    tracemalloc.start()
    try:
        saves = [rec.save() for _ in range(3)]
        pressed = tracemalloc.get_traced_memory()[1]
        for save in saves:
            assert save is not None and save.join(30) and save.ok, save.error
        written = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pressed < 64 * 1024, f"three presses allocated {pressed} bytes"
    assert written < ring / 16, f"writing three saves allocated at most {written} bytes at once (ring {ring})"
    assert len({s.files[0] for s in saves} | {warm.files[0]}) == 4
    assert all(np.array_equal(_wav16(s.files[0]), music.last(rec._pcm.shape[0])) for s in saves)


def _wav16(path: Path) -> np.ndarray:
    return soundfile.read(path, dtype="int16", always_2d=True)[0]


def test_a_disk_too_slow_for_the_side_buffer_gives_the_ring_back_and_the_save_says_why(tmp_path, gate):
    rec = Recorder(tmp_path / "rec", minutes_kept=1, sample_rate=RATE, pcm_minutes=0.05)
    rec.side_limit = 2 * BAR  # (60 s on the box) two bars here
    music = Music()
    _play(rec, music, 4)
    stuck = rec.save()
    _play(rec, music, 2)  # fits aside
    assert rec._side_frames == 2 * BAR
    _play(rec, music, 1)  # does not: the save is given up and the ring takes the music again
    assert stuck is not None and stuck.revoked and rec._side_frames == 0
    assert np.array_equal(
        np.concatenate([rec._pcm[rec._pos :], rec._pcm[: rec._pos]]), music.last(rec._pcm.shape[0])
    )
    gate.set()
    assert stuck.join(20) and not stuck.ok
    assert "wrote too slowly" in stuck.error and "[recording] folder" in stuck.error
    assert rec.failures == 1 and rec.last_event.startswith("save failed:")
    assert not list((tmp_path / "rec").iterdir())  # no partial file
    after = rec.save()  # the next save is whole again
    assert after is not None and after.join(20) and after.ok
    assert np.array_equal(_wav(after.files[0]), music.last(rec._pcm.shape[0]))
