"""MIDI out and clock through the real `musicbox play --midi-out jack` on a JACK dummy server, recorded by
a JACK-Client MIDI input: the notes of every part (drums on channel 10), Start, 24 ppqn clock at the
tempo (also after a tempo turn), no note left hanging after a worker kill and the stop; following an
external clock (90 then 140 BPM) moves the box's tempo without an underrun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

jack = pytest.importorskip("jack")

from musicbox.runtime.box.midiout import (  # noqa: E402
    CLOCK,
    START,
    STOP,
    AudioClock,
    ClockFollower,
    Performer,
)
from musicbox.runtime.box.soak import JackDummy  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (jackd2) is not installed")
RATE = 44100


@pytest.fixture(scope="module")
def server():
    with JackDummy(name=f"mbmidi{os.getpid()}") as s:
        yield s


class MidiTap:
    """A JACK client recording what reaches its MIDI input (JACK frame, bytes), and able to send."""

    def __init__(self, name: str = "tap"):
        self.client = jack.Client(name, no_start_server=True)
        self.inp = self.client.midi_inports.register("in")
        self.out = self.client.midi_outports.register("out")
        self.events: list[tuple[int, bytes]] = []
        self.outgoing: list[bytes] = []
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        base = self.client.last_frame_time
        for offset, data in self.inp.incoming_midi_events():
            self.events.append((base + offset, bytes(data)))
        self.out.clear_buffer()
        while self.outgoing:
            self.out.write_midi_event(0, self.outgoing.pop(0))

    def connect_when_there(self, source: str, timeout_s: float = 30.0) -> None:
        """Connect the box's port ``source`` into this tap once it is there."""
        self._connect(source, self.inp.name, source, timeout_s)

    def send_when_there(self, dest: str, timeout_s: float = 30.0) -> None:
        """Connect this tap's output into the box's port ``dest`` once it is there."""
        self._connect(self.out.name, dest, dest, timeout_s)

    def _connect(self, source: str, dest: str, theirs: str, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.client.get_ports(theirs):
                try:
                    self.client.connect(source, dest)
                    return
                except jack.JackError:  # registered before its client is active: try again
                    pass
            time.sleep(0.02)
        raise AssertionError(f"no JACK port {theirs} within {timeout_s} s")

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def _play(tmp_path: Path, seconds: float, script: list, midi: str = "") -> tuple[subprocess.Popen, Path]:
    (tmp_path / "knobs.json").write_text(json.dumps(script))
    config = tmp_path / "box.toml"
    config.write_text(
        f'[knobs]\nscript = "{tmp_path / "knobs.json"}"\n[recording]\nfolder = "{tmp_path / "rec"}"\n'
        f"[synth]\nexpression = 0.0\n[audio]\nbuffer_bars = 6\n[midi]\n{midi}"
    )
    stats = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--backend", "scripted"]
    cmd += ["--seconds", str(seconds), "--stats", str(stats), "--midi-out", "jack"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, stats


def _stats_when(stats: Path, test, timeout_s: float) -> dict:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            data = json.loads(stats.read_text())
        except (OSError, ValueError):
            data = None
        if data is not None and test(data):
            return data
        time.sleep(0.05)
    raise AssertionError(
        f"stats never satisfied the condition: {stats.read_text() if stats.exists() else None}"
    )


def _bpm(ticks: list[int]) -> float:
    """Tempo of a run of clock ticks (JACK frames): 24 per quarter note."""
    return 60.0 * RATE * (len(ticks) - 1) / (24 * (ticks[-1] - ticks[0]))


@pytest.mark.slow
def test_midi_out_plays_every_part_with_clock_and_leaves_no_note_hanging(server, tmp_path):
    tap = MidiTap()
    script = [  # the shipped chorale plays three parts, celtic melody and drums
        {"at": 0, "style": "chorale", "tempo": 100},
        {"at": 5, "style": "celtic"},
        {"at": 11, "tempo": 140},
    ]
    proc, stats = _play(tmp_path, 22, script)
    try:
        tap.connect_when_there("musicbox:midi_out")
        first = _stats_when(stats, lambda d: d["bars_played"] >= 2 and d["worker_pid"], 40)
        os.kill(first["worker_pid"], signal.SIGKILL)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        tap.close()
    assert proc.returncode == 0, out[-3000:]
    final = json.loads(stats.read_text())
    assert final["worker_restarts"] == 1 and final["underruns"] == 0
    events = tap.events
    statuses = [data[0] for _, data in events]
    assert START in statuses and statuses.index(START) < min(
        i for i, s in enumerate(statuses) if s & 0xF0 == 0x90
    )
    assert statuses[-1] != CLOCK and STOP in statuses[-12:]
    channels = {data[0] & 0x0F for _, data in events if data[0] & 0xF0 == 0x90 and data[2] > 0}
    assert channels == {0, 1, 2, 9}  # melody, harmony, bass, drums on 10
    velocities = {data[2] for _, data in events if data[0] & 0xF0 == 0x90}
    assert len(velocities) > 5  # as played: accents and dynamics, not one velocity
    sounding: dict[tuple[int, int], int] = {}
    for _, data in events:
        kind, channel = data[0] & 0xF0, data[0] & 0x0F
        if kind == 0x90 and data[2] > 0:
            sounding[(channel, data[1])] = sounding.get((channel, data[1]), 0) + 1
        elif kind == 0x80 or (kind == 0x90 and data[2] == 0):
            sounding[(channel, data[1])] = sounding.get((channel, data[1]), 0) - 1
    assert {k: v for k, v in sounding.items() if v > 0} == {}  # every note ended
    ticks = [frame for frame, data in events if data[0] == CLOCK]
    start = next(frame for frame, data in events if data[0] == START)
    before = [t for t in ticks if start + 2 * RATE <= t < start + 10 * RATE]
    after = [t for t in ticks if start + 14 * RATE <= t < start + 20 * RATE]
    programs = [data for _, data in events if data[0] & 0xF0 == 0xC0]
    assert [d[1] for d in programs[:3]] == [19, 19, 19] and [d[1] for d in programs[3:6]] == [110, 46, 32]
    assert _bpm(before) == pytest.approx(100, rel=0.005)
    assert _bpm(after) == pytest.approx(140, rel=0.005)


@pytest.mark.slow
def test_the_box_follows_an_external_clock(server, tmp_path):
    """A clock at 90 then 140 BPM into musicbox:clock_in: the box's tempo follows within a beat of music
    after the change reaches it, and no underrun."""
    tap = MidiTap("clocksource")
    proc, stats = _play(tmp_path, 30, [{"at": 0, "tempo": 100}], midi="clock_in = true\n")
    stop = threading.Event()
    bpm = [90.0]

    def send_clock() -> None:
        due = time.monotonic()
        while not stop.is_set():
            tap.outgoing.append(bytes((CLOCK,)))
            due += 60.0 / bpm[0] / 24
            stop.wait(max(0.0, due - time.monotonic()))

    sender = threading.Thread(target=send_clock, daemon=True)
    try:
        tap.send_when_there("musicbox:clock_in")
        sender.start()
        _stats_when(stats, lambda d: abs(d["controls"]["tempo_bpm"] - 90) < 1.0 and d["bars_played"] >= 1, 30)
        bpm[0] = 140.0
        changed = time.monotonic()
        _stats_when(stats, lambda d: abs(d["controls"]["tempo_bpm"] - 140) < 1.5, 10)
        assert time.monotonic() - changed < 60 / 140 * 4 + 2.0  # 4 beats to measure; stats 1/s
        final = _stats_when(stats, lambda d: d["bars_played"] >= 4, 30)
        assert final["underruns"] == 0
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
        tap.close()
    assert proc.returncode == 0, out[-3000:]


def test_clock_follower_reports_tempo_and_transport():
    seen, runs = [], []
    follower = ClockFollower(seen.append, runs.append)
    follower.message(0.0, bytes((START,)))
    for k in range(60):
        follower.message(k * 60 / 120 / 24, bytes((CLOCK,)))
    follower.message(3.0, bytes((STOP,)))
    assert seen and seen[-1] == pytest.approx(120.0) and len(seen) == 1 and runs == [True, False]


def test_audio_clock_keeps_the_earliest_phase_and_restarts_after_a_pause():
    clock = AudioClock(RATE)
    clock.stamp(10.003, 0)  # a late callback
    clock.stamp(10.000 + 1024 / RATE, 1024)  # an on-time one
    assert clock.time_of(0) == pytest.approx(10.0)
    clock.reset()
    clock.stamp(20.0, 2048)
    assert clock.time_of(2048) == pytest.approx(20.0)


def test_performer_holds_tied_notes_and_ends_everything_at_a_splice():
    from musicbox.runtime.arrangement import Played
    from musicbox.runtime.box.worker import Written
    from musicbox.runtime.controls import Controls
    from musicbox.runtime.state import GeneratorState

    def bar(played):
        return Written(
            0, 0, GeneratorState.__new__(GeneratorState), Controls(), played=played, programs=(1, 2, 3)
        )

    p = Performer({0: 0, 1: 1, 2: 2, 9: 9})
    p.bar(0, 0, bar([Played(4.0, 20.0, 0, 60, 90, False)]), 100.0)
    p.bar(1600, 0, bar([Played(0.0, 8.0, 0, 60, 70, True), Played(2.0, 3.0, 9, 36, 100, False)]), 100.0)
    events = p.due(10_000)
    ons = [(f, m.hex()) for f, m in events if m[0] & 0xF0 == 0x90]
    offs = [(f, m.hex()) for f, m in events if m[0] & 0xF0 == 0x80]
    assert ons == [(400, "903c5a"), (1800, "992464")]  # the tied C is not struck again
    assert (2400, "803c00") in offs  # it ends where the second bar's note ends
    p.bar(3200, 0, bar([Played(0.0, 16.0, 1, 64, 80, False)]), 100.0)
    p.bar(4000, 8, bar([Played(8.0, 12.0, 1, 67, 80, False)]), 100.0)  # a splice at step 8
    events = p.due(10_000)
    assert (4000, bytes((0x81, 64, 0))) in events  # the old note ends at the splice
    assert [f for f, m in events if m == bytes((0x91, 67, 80))] == [4000]
    quiet = p.silence()
    assert bytes((0xB9, 123, 0)) in quiet


@pytest.mark.slow
def test_bench_midi_measures_the_clock_and_notes_against_the_audio_on_the_port():
    """`musicbox bench midi`'s measurement (short): the clock at the tempo, every note matched to its
    audio found sample for sample on the box's JACK output port, and leaving its port with it."""
    from musicbox.config import shipped_bundle
    from musicbox.runtime.box.midibench import measure

    figures = measure(shipped_bundle(), seconds=12.0)
    assert figures["clock_bpm"] == pytest.approx(figures["bpm"], rel=0.005)
    assert figures["audio_chunks_found_on_port"] >= 5
    assert figures["notes_matched"] == figures["notes_in_whole_bars"] >= 0.5 * figures["notes_sent"] > 0
    assert abs(figures["note_vs_port_median_ms"]) < 2.0  # the same JACK period as its audio
    assert figures["clock_jitter_ms_p99"] < 5.0 and figures["underruns"] == 0
