"""``musicbox bench midi``: MIDI out's timing against the audio, on a JACK dummy server (docs/rig.md).

The box plays in this process, wired as ``musicbox play --midi-out jack`` wires it (a ``JackMidi`` over a
``MidiFollower`` of the player), for ``seconds``: celtic (melody, harmony, bass and drums) at 100 BPM,
``[synth] expression = 0`` so the clock has one nominal interval. A JACK-Client MIDI input connected to
``musicbox:midi_out`` records every event at its JACK frame (the period's ``last_frame_time`` plus the
event's offset in it).

Clock jitter: ``|interval between consecutive clock ticks - 60 / (BPM * 24) s|``, in ms.

Note vs audio: for each note-on, its JACK frame minus the JACK frame at which the same note's first
sample reaches the DAC as PortAudio reports it. The note's place in the player's log: its bar's mark
(the log frame where the bar began) plus ``Played.on`` steps of the bar's own frames per step (the
frames between its mark and the next bar's); the player's callback stamp that holds that log frame
gives PortAudio's ``outputBufferDacTime`` of the callback's first frame (seconds of the stream's clock),
plus the frames before the note. On JACK the stream's clock is the server's frame clock less the frame
it started at (``t0``), read here as ``client.frame_time - stream.time * rate`` (both "now", read
together). Positive: the MIDI note comes after the audio.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from musicbox.runtime.box.soak import JackDummy
from musicbox.runtime.box.worker import Written

BPM = 100.0
STYLE = "celtic"


def _offsets(name: str, ms: list[float]) -> dict:
    """p50/p95 of |offset| and the median signed offset (positive: MIDI after the audio), in ms."""
    a = np.asarray(ms, np.float64)
    if not len(a):
        return {f"{name}_abs_ms_p50": None, f"{name}_abs_ms_p95": None, f"{name}_median_ms": None}
    return {
        f"{name}_abs_ms_p50": round(float(np.percentile(np.abs(a), 50)), 3),
        f"{name}_abs_ms_p95": round(float(np.percentile(np.abs(a), 95)), 3),
        f"{name}_median_ms": round(float(np.median(a)), 3),
    }


def _pcts(name: str, values) -> dict:
    a = np.asarray(values, np.float64)
    if not len(a):
        return {f"{name}_p{q}": None for q in (50, 95, 99)}
    return {f"{name}_p{q}": round(float(np.percentile(a, q)), 3) for q in (50, 95, 99)}


class _Tap:
    """A JACK client recording what reaches its MIDI input, (JACK frame, bytes), and its audio input
    (the box's first output channel, once connected): (JACK frame of the period, samples)."""

    def __init__(self, jack, name: str):
        self.client = jack.Client(name, no_start_server=True)
        self.inp = self.client.midi_inports.register("in")
        self.audio_in = self.client.inports.register("audio")
        self.events: list[tuple[int, bytes]] = []
        self.audio: list[tuple[int, np.ndarray]] = []
        self.listening = False
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        base = self.client.last_frame_time
        for offset, data in self.inp.incoming_midi_events():
            self.events.append((base + offset, bytes(data)))
        if self.listening:
            self.audio.append((base, self.audio_in.get_array().copy()))

    def listen_to_box(self, skip: tuple[str, ...]) -> bool:
        """Connect the audio input to the first audio output port of the box's stream (PortAudio's JACK
        client: not ``system`` nor the ``skip`` clients); False while it is not there."""
        for port in self.client.get_ports(is_audio=True, is_output=True):
            if port.name.split(":")[0] not in ("system", *skip):
                self.client.connect(port, self.audio_in)
                self.listening = True
                return True
        return False

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


class _Collector:
    """Copies the player's log (callback stamps, bar marks and each mark's ``Written``) while the box
    plays (the log keeps only its last ``MARKS`` rows), and the stream's ``t0``."""

    def __init__(self, box, tap: _Tap):
        self.box, self.tap = box, tap
        self.stamps: list[tuple[float, float, float]] = []  # log frame, frames, DAC time
        self.marks: list[tuple[int, int, int, int, Written | None]] = []  # log frame, bar, gen, step, Written
        self.t0s: list[float] = []
        self.latency_s = 0.0  # the stream's output latency
        self.lost = 0  # log rows overwritten before they were read
        self.chunks: list[tuple[int, np.ndarray]] = []  # (log frame, the audio played from it)
        self._stamps = self._marks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="musicbox-midibench", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.read()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.read()

    def read(self) -> None:
        log, box = self.box.player.log, self.box
        n = log.n_stamps
        if n - self._stamps > log.MARKS:
            self.lost += n - self._stamps - log.MARKS
            self._stamps = n - log.MARKS
        for i in range(self._stamps, n):
            _, frame, frames, dac = log.stamps[i % log.MARKS]
            self.stamps.append((float(frame), float(frames), float(dac)))
        self._stamps = n
        if not self.tap.listening:
            self.tap.listen_to_box(("midibench", "musicbox"))
        elif log.written > CHUNK and (
            not self.chunks or log.written - self.chunks[-1][0] > box.player.settings.sample_rate
        ):
            start = log.written - CHUNK
            self.chunks.append((start, log.read(start, log.written)[:, 0].copy()))
        while self._marks < log.n_marks:
            frame, _, bar, gen, step = (int(v) for v in log.marks[self._marks % log.MARKS])
            info = box.bar_info(bar, gen)
            if info is None and time.monotonic() - float(log.mark_times[self._marks % log.MARKS]) < 1.0:
                break  # its Written is on its way to the supervisor
            self.marks.append((frame, bar, gen, step, info))
            self._marks += 1
        stream = getattr(box.player, "_stream", None)
        if stream is not None and hasattr(stream, "time"):
            self.latency_s = float(getattr(stream, "latency", 0.0) or 0.0)
            self.t0s.append(self.tap.client.frame_time - float(stream.time) * self.tap.client.samplerate)


CHUNK = 2048
"""Frames of played audio found again on the box's JACK output port, to place log frames on JACK's clock."""


def _port_offset(c: _Collector, tap: _Tap) -> tuple[float | None, int]:
    """JACK frame minus log frame of the box's audio on its JACK output port: the median over the
    collected chunks found sample for sample in what the tap heard, and how many were found."""
    if not tap.audio:
        return None, 0
    bases = np.array([b for b, _ in tap.audio], np.int64)
    heard = np.concatenate([a for _, a in tap.audio])
    starts = np.concatenate([[0], np.cumsum([len(a) for _, a in tap.audio])])[:-1]
    offsets = []
    for frame, chunk in c.chunks:
        loud = np.flatnonzero(np.abs(chunk) > 1e-3)
        if not len(loud) or len(loud) + loud[0] > len(chunk):
            continue
        first = int(loud[0])
        for j in np.flatnonzero(heard == chunk[first]):
            piece = heard[j - first : j - first + len(chunk)]
            if j >= first and len(piece) == len(chunk) and np.array_equal(piece, chunk):
                k = int(np.searchsorted(starts, j - first, side="right")) - 1
                offsets.append(bases[k] + (j - first - starts[k]) - frame)
                break
    return (float(np.median(offsets)) if offsets else None), len(offsets)


def _audio_onsets(
    c: _Collector, channels: dict[int, int], rate: float
) -> list[tuple[float, float, int, int]]:
    """(log frame, JACK frame at the DAC by PortAudio's time, MIDI channel, key) of each note struck in a
    bar that played whole."""
    stamps = np.array(c.stamps, np.float64).reshape(-1, 3)
    stamps = stamps[stamps[:, 1] > 0]
    if not len(stamps) or not c.t0s:
        return []
    t0 = float(np.median(c.t0s))
    out = []
    for (frame, bar, _, step, info), nxt in zip(c.marks, c.marks[1:], strict=False):
        if info is None or step != 0 or nxt[3] != 0 or nxt[1] != bar + 1:
            continue
        steps = info.meter.steps
        per_step = (nxt[0] - frame) / steps
        for p in info.played:
            if p.tied or p.channel not in channels or not 0 <= p.on < steps:
                continue
            at = frame + p.on * per_step  # log frame of the note's first sample
            i = int(np.searchsorted(stamps[:, 0], at, side="right")) - 1
            if i < 0 or at >= stamps[i, 0] + stamps[i, 1]:
                continue  # its callback's stamp was not kept
            dac = stamps[i, 2] * rate + t0 + (at - stamps[i, 0])
            out.append((at, dac, channels[p.channel], p.key))
    return out


def measure(bundle: Path, seconds: float = 60.0) -> dict:
    """Play ``seconds`` with MIDI out on a JACK dummy server and measure; see the module docstring."""
    import jack

    from musicbox.config import load_config
    from musicbox.runtime.box.assemble import build_box
    from musicbox.runtime.box.midiout import CLOCK, PPQN, JackMidi, MidiFollower, MidiSettings

    with tempfile.TemporaryDirectory() as tmp, JackDummy(name=f"mbmidibench{os.getpid()}") as server:
        toml = Path(tmp) / "box.toml"
        toml.write_text(
            f'[knobs]\nbackend = "none"\n[recording]\nfolder = "{tmp}/rec"\n[synth]\nexpression = 0.0\n'
            '[midi]\nout = "jack"\n'
        )
        config = load_config(toml)
        box = build_box(config, bundle)
        style = float(box.style_names.index(STYLE)) if STYLE in box.style_names else 0.0
        box.set_controls(replace(box.controls, style=style, tempo_bpm=BPM))
        settings = MidiSettings.from_config(config.midi)
        rig = JackMidi(MidiFollower(box.player, box.bar_info, settings))
        tap = _Tap(jack, "midibench")
        tap.client.connect(rig.out, tap.inp)
        collector = _Collector(box, tap)
        collector.start()
        try:
            box.run(seconds)
        finally:
            collector.stop()
            rig.close()
            tap.close()
        rate = float(server.sample_rate)
    stats = box.final_stats
    ticks = np.array([f for f, d in tap.events if d == bytes((CLOCK,))], np.float64)
    nominal = 60.0 / (BPM * PPQN) * rate
    jitter_ms = np.abs(np.diff(ticks) - nominal) / rate * 1e3 if len(ticks) > 1 else np.zeros(0)
    struck = [(f, d[0] & 0x0F, d[1]) for f, d in tap.events if len(d) == 3 and d[0] & 0xF0 == 0x90 and d[2]]
    by_note: dict[tuple[int, int], list[float]] = {}
    for f, ch, key in struck:
        by_note.setdefault((ch, key), []).append(f)
    port, found = _port_offset(collector, tap)
    at_port, at_dac = [], []  # ms: MIDI note-on - the note's audio (on the output port; at the DAC)
    onsets = _audio_onsets(collector, settings.channels, rate)
    for logged, dac, ch, key in onsets:
        frames = by_note.get((ch, key))
        audio = logged + port if port is not None else dac
        nearest = min(frames, key=lambda f: abs(f - audio)) if frames else None
        if nearest is not None and abs(nearest - audio) < 0.1 * rate:
            at_port.append((nearest - audio) / rate * 1e3)
            at_dac.append((nearest - dac) / rate * 1e3)
    return {
        "seconds": seconds,
        "bpm": BPM,
        "style": STYLE,
        "jack": {"sample_rate": int(rate), "period": server.period},
        "clock_ticks": int(len(ticks)),
        "clock_bpm": round(60.0 * rate * (len(ticks) - 1) / (PPQN * (ticks[-1] - ticks[0])), 3)
        if len(ticks) > 1
        else None,
        **_pcts("clock_jitter_ms", jitter_ms),
        "notes_sent": len(struck),
        "notes_in_whole_bars": len(onsets),  # the notes compared: those of bars that played whole
        "notes_matched": len(at_port),
        "audio_chunks_found_on_port": found,
        **_offsets("note_vs_port", at_port if port is not None else []),
        **_offsets("note_vs_dac", at_dac),
        "output_latency_ms": round(1e3 * collector.latency_s, 2),
        "late_events": rig.late,
        "log_rows_lost": collector.lost,
        "underruns": stats.underruns if stats is not None else None,
        "compared": {
            "note_vs_port": "JACK frame of the MIDI note-on on musicbox:midi_out - JACK frame at which the "
            "note's first audio sample is on the box's audio output port (log frame + the log-to-JACK offset "
            "found by matching played audio sample for sample in a JACK input connected to that port)",
            "note_vs_dac": "the same note-on - the note's first sample at PortAudio's outputBufferDacTime "
            "(of its callback, + the frames before it) on the JACK frame clock",
        },
    }
