"""MIDI out and MIDI clock, in time with the audio the player plays; MIDI clock in (the box follows).

What is sent: the notes the synth plays (``Written.played``, the renderer's ``arrangement.Played``: a
channel per part, the drums on 10, velocities and micro-timing as heard), a program change where a
part's instrument changes, and (``[midi] clock_out``) MIDI clock at 24 ppqn with start, stop,
continue and song position. Pause, stop and a crash of the box send note-offs for every sounding note
and All Notes Off (CC 123) on every channel; a killed worker changes nothing here (the bars it wrote
play on, their notes end as written, its successor's bars follow).

Timing follows the player, not a timer: the player logs each bar and splice as it plays it
(``PlayedLog`` marks: log frame, bar, generation, step) and stamps every callback (``PlayedLog.stamp``:
its time and the log frame it starts with). :class:`Performer` turns a bar's ``Played`` notes into
events at *log frames* (the bar's own frames per step, so a turn's tempo and a phrase's stretch are
followed), and the clock's ticks are the multiples of 1/24 quarter note of the song position, also in
log frames. :class:`AudioClock` maps a log frame to the moment it leaves the callback (a minimum filter
over the callback stamps: a callback is only ever late, so the earliest phase is the true one), plus
the sound card's output latency and ``[midi] offset_ms``: the moment it is heard. The JACK backend
(:class:`JackMidi`) asks, in each JACK period, for the events due in that period and writes them at
their frame offset; so the clock is as steady as the audio clock itself (measured with ``musicbox bench
midi``; docs/rig.md).

Backend: JACK MIDI through JACK-Client (``jack``, a pure-Python cffi wheel for every Python 3 and
architecture; docs/rig.md compares alsa-midi and python-rtmidi). ALSA sequencer and USB MIDI ports reach
JACK through a2jmidid.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from musicbox.errors import ConfigError, MusicBoxError

log = logging.getLogger("musicbox.midi")

PPQN = 24
CLOCK, START, CONTINUE, STOP, SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2
ALL_NOTES_OFF = 123


@dataclass(frozen=True)
class MidiSettings:
    """``[midi]`` as MIDI out uses it: ``channels`` 0-based per arrangement channel (melody, harmony,
    bass, and the drums' channel 9), ``connect`` the JACK port to connect to ("" = none), ``clock_out``,
    ``clock_in``, ``offset_s`` added to the output latency."""

    channels: dict[int, int]
    connect: str = ""
    clock_out: bool = True
    clock_in: bool = False
    offset_s: float = 0.0

    @classmethod
    def from_config(cls, midi, out: str | None = None) -> MidiSettings:
        """From ``config.midi``; ``out`` overrides ``[midi] out`` (``play --midi-out``)."""
        out = midi.out if out is None else out
        if out != "jack" and not out.startswith("jack:"):
            raise ConfigError(
                f'[midi] out = {out!r}: give "jack" (a JACK MIDI port musicbox:midi_out) or "jack:<port>" '
                '(connected to that port; `jack_lsp -t` lists them), or "" for no MIDI'
            )
        channels = {0: midi.melody_channel - 1, 1: midi.harmony_channel - 1, 2: midi.bass_channel - 1}
        channels[9] = midi.drum_channel - 1
        return cls(channels, out.partition(":")[2], midi.clock_out, midi.clock_in, midi.offset_ms / 1000)


class AudioClock:
    """When a log frame of the player leaves its callback (``time.monotonic()`` seconds), from the
    callback stamps: phase = stamp time - log frame / rate, its running minimum (callbacks run late,
    never early), let creep up slowly (a sound card a little slower than the system clock), and
    started again after the log paused (``reset``: a pause, an underrun, a lost device)."""

    def __init__(self, sample_rate: int, creep: float = 0.002):
        self.rate = float(sample_rate)
        self.creep = creep
        self.phase: float | None = None

    def reset(self) -> None:
        self.phase = None

    def stamp(self, at: float, frame: float) -> None:
        p = at - frame / self.rate
        if self.phase is None or p < self.phase:
            self.phase = p
        else:
            self.phase += (p - self.phase) * self.creep

    def frame_at(self, t: float) -> float:
        """The log frame leaving the callback at ``t`` (-inf before the first stamp)."""
        return -math.inf if self.phase is None else (t - self.phase) * self.rate

    def time_of(self, frame: float) -> float:
        return math.inf if self.phase is None else self.phase + frame / self.rate


class Performer:
    """A bar's ``Played`` notes -> MIDI events at log frames, as the renderer plays them: a tied note
    whose key still sounds goes on (one note over the bar line), a new onset of a sounding key ends it
    first, a splice ends everything sounding at its beat line and plays the rest of the bar from there.
    Also the song position (quarter notes) at each log frame, for the clock."""

    def __init__(self, channels: dict[int, int]):
        self.channels = channels
        self.events: list[list] = []  # [frame, order (0 off, 1 program, 2 on), bytes]
        self._ringing: dict[tuple[int, int], list] = {}  # (channel, key) -> [off event, off step]
        self._programs: tuple[int, ...] = ()
        self._bar_steps = 0
        self.segments: list[tuple[float, float, float]] = []  # (log frame, quarters there, frames/quarter)
        self._quarters = 0.0  # song position at the start of the bar playing
        self._bar_start = 0.0

    def bar(self, frame: float, step: int, info, frames_per_step: float) -> None:
        """Bar ``info`` (a ``Written``) plays from log ``frame``, from grid ``step`` (0: its start; else
        a splice at that beat line)."""
        steps = info.meter.steps
        if step == 0:
            self._quarters += self._bar_steps / 4
            self._bar_start = frame
            for key, (off, off_step) in list(self._ringing.items()):  # carried notes: this bar's rate
                off_step -= self._bar_steps
                if off_step <= 0:
                    del self._ringing[key]
                else:
                    self._ringing[key] = [off, off_step]
                    off[0] = frame + off_step * frames_per_step
        else:
            self.cut(frame)
        self._bar_steps = steps
        self.segments.append((frame, self._quarters + step / 4, 4 * frames_per_step))
        del self.segments[:-4]
        if info.programs and tuple(info.programs) != self._programs:
            self._programs = tuple(info.programs)
            for track, program in enumerate(info.programs):
                if track in self.channels:
                    self.events.append([frame, 1, bytes((0xC0 | self.channels[track], program))])
        for p in info.played:
            channel = self.channels.get(p.channel)
            if channel is None:
                continue
            key = (channel, p.key)
            at = frame + (p.on - step) * frames_per_step
            end = frame + (p.off - step) * frames_per_step
            if p.tied and step == 0 and key in self._ringing:
                entry = self._ringing[key]
                entry[1] = max(entry[1], p.off)
                entry[0][0] = frame + entry[1] * frames_per_step
                continue
            if key in self._ringing:
                old = self._ringing.pop(key)[0]
                old[0] = min(old[0], at)
            off = [end, 0, bytes((0x80 | channel, p.key, 0))]
            self.events += [[at, 2, bytes((0x90 | channel, p.key, p.velocity))], off]
            self._ringing[key] = [off, p.off - step if step else p.off]
        self.events.sort(key=lambda e: (e[0], e[1]))

    def cut(self, frame: float) -> None:
        """End everything sounding at ``frame`` and drop the notes after it (a bar with no notes known)."""
        self.events = [e for e in self.events if e[0] < frame or e[1] == 0]
        for off, _ in self._ringing.values():
            off[0] = min(off[0], frame)
        self._ringing.clear()
        self.events.sort(key=lambda e: (e[0], e[1]))

    def due(self, until: float) -> list[tuple[float, bytes]]:
        """Events before log frame ``until``, taken out, in order."""
        n = 0
        while n < len(self.events) and self.events[n][0] < until:
            n += 1
        out = [(e[0], e[2]) for e in self.events[:n]]
        del self.events[:n]
        return out

    def quarters_at(self, frame: float) -> float | None:
        """Song position in quarter notes at log ``frame`` (None before the first bar)."""
        for start, quarters, per_quarter in reversed(self.segments):
            if frame >= start:
                return quarters + (frame - start) / per_quarter
        return None

    def frame_of(self, quarters: float) -> float:
        """The log frame of song position ``quarters`` (in the segment that holds it)."""
        for start, q0, per_quarter in reversed(self.segments):
            if quarters >= q0:
                return start + (quarters - q0) * per_quarter
        return -math.inf

    def silence(self) -> list[bytes]:
        """Note-offs for everything sounding or pending, then All Notes Off on every channel used."""
        out = [e[2] for e in self.events if e[1] == 0]
        self.events.clear()
        self._ringing.clear()
        out += [bytes((0xB0 | c, ALL_NOTES_OFF, 0)) for c in sorted(set(self.channels.values()))]
        return out


class MidiFollower:
    """What to send in a window of time: reads the player's new marks and stamps (single reader besides
    the supervisor), asks ``bar_info(bar, gen)`` for each mark's ``Written``, and returns timed events
    (notes, program changes, clock). Backend-independent (the JACK backend calls :meth:`window`)."""

    WAIT_INFO_S = 0.2
    """How long a mark waits for its bar's ``Written`` (a splice may play before the supervisor has read
    the worker's report of it); then its notes are skipped and what sounds ends there."""

    def __init__(self, player, bar_info: Callable, settings: MidiSettings, dac_time: bool = False):
        self.dac_time = dac_time  # times are PortAudio's DAC times (an ALSA backend's), else monotonic
        self.add_latency = True  # MIDI waits for the stream's output latency (not on JACK: see JackMidi)
        self.player = player
        self.log = player.log
        self.bar_info = bar_info
        self.settings = settings
        rate = player.settings.sample_rate
        self.clock = AudioClock(rate)
        self.performer = Performer(settings.channels)
        self._marks = self.log.n_marks
        self._stamps = max(0, self.log.n_stamps - 1)
        self._block = 0  # the largest callback seen, frames: a smaller one had silence after its audio
        self._ticks = 0  # clock ticks sent (the next tick is song position ticks / 24)
        self._running = False  # start sent, not stopped
        self._paused = False
        self.sent_clock: list[float] = []  # monotonic times of the clock ticks sent (bench)

    def window(self, t0: float, t1: float) -> list[tuple[float, bytes]]:
        """Events due in ``[t0, t1)`` (seconds: DAC time with ``dac_time``, else time.monotonic(); the
        moment they are to be heard)."""
        self._read_player()
        out: list[tuple[float, bytes]] = []
        if self.player.paused != self._paused:
            self._paused = self.player.paused
            if self._paused:
                out += [(t0, m) for m in self.performer.silence()]
                if self._running and self.settings.clock_out:
                    out.append((t0, bytes((STOP,))))
                return out
        if self._paused:
            return out
        latency = self.player.output_latency() if self.add_latency and not self.dac_time else 0.0
        shift = self.settings.offset_s + latency
        until = self.clock.frame_at(t1 - shift)
        if self.settings.clock_out:  # the clock first: Start before the notes of the first beat
            out += self._clock(until, shift)
        out += [(self.clock.time_of(f) + shift, m) for f, m in self.performer.due(until)]
        out.sort(key=lambda e: e[0])
        return out

    def _clock(self, until: float, shift: float) -> list[tuple[float, bytes]]:
        out: list[tuple[float, bytes]] = []
        position = self.performer.quarters_at(until)
        if position is None:
            return out
        if not self._running:  # the first bar: song position 0 and Start at its bar line
            self._running = True
            at = self.clock.time_of(self.performer.frame_of(0.0)) + shift
            out += [(at, bytes((SONG_POSITION, 0, 0))), (at, bytes((START,)))]
        while self._ticks / PPQN <= position:
            frame = self.performer.frame_of(self._ticks / PPQN)
            if frame >= until:
                break
            at = self.clock.time_of(frame) + shift
            out.append((at, bytes((CLOCK,))))
            self.sent_clock.append(at)
            self._ticks += 1
        return out

    def resumed(self) -> list[bytes]:
        """Song position and Continue after a pause (sent by the backend when the player plays again)."""
        spp = self._ticks // 6  # 6 clocks per sixteenth
        return [bytes((SONG_POSITION, spp & 0x7F, spp >> 7 & 0x7F)), bytes((CONTINUE,))]

    def _read_player(self) -> None:
        log_ = self.log
        for i in range(max(self._stamps, log_.n_stamps - log_.MARKS + 1), log_.n_stamps):
            at, frame, n, dac = log_.stamps[i % log_.MARKS]
            if n > 0:
                self.clock.stamp(float(dac if self.dac_time else at), float(frame))
            if n < self._block:  # the log paused inside this callback: its phase starts again
                self.clock.reset()
            self._block = max(self._block, int(n))
        self._stamps = log_.n_stamps
        while self._marks < log_.n_marks:
            i = self._marks % log_.MARKS
            frame, entry, bar, gen, step = (int(v) for v in log_.marks[i])
            info = self.bar_info(bar, gen)
            if info is None and time.monotonic() - float(log_.mark_times[i]) < self.WAIT_INFO_S:
                return  # its Written is on the way to the supervisor: next period
            self._marks += 1
            if info is None:
                log.warning("MIDI out: bar %d (generation %d) plays with no notes known", bar, gen)
                self.performer.cut(frame)
                continue
            self.performer.bar(frame, step, info, self._frames_per_step(entry, step, info))

    def _frames_per_step(self, entry: int, step: int, info) -> float:
        """The entry's own frames per step (its audio's length: tempo and any phrase stretch)."""
        try:
            _, _, frames = self.player.ring.entry_info(entry)
            first, steps, _ = self.player.ring.span(entry)
        except MusicBoxError:
            return info.controls.bar_seconds(info.meter.steps) * self.clock.rate / info.meter.steps
        return frames / max(1, steps - first)

    def close(self) -> list[bytes]:
        """What to send as the box stops: silence, and Stop."""
        out = self.performer.silence()
        if self._running and self.settings.clock_out:
            out.append(bytes((STOP,)))
        return out


class ClockFollower:
    """The tempo of an incoming MIDI clock: BPM over the last ``PPQN`` ticks (a quarter note), reported
    through ``on_tempo(bpm)`` when it moves by more than ``tolerance`` (a fraction) from the last one
    reported; Start/Continue and Stop through ``on_run(True/False)``."""

    def __init__(self, on_tempo: Callable[[float], None], on_run: Callable[[bool], None], tolerance=0.005):
        self.on_tempo, self.on_run, self.tolerance = on_tempo, on_run, tolerance
        self.ticks: list[float] = []
        self.bpm: float | None = None

    def message(self, at: float, data: bytes) -> None:
        if not data:
            return
        status = data[0]
        if status == CLOCK:
            self.ticks.append(at)
            del self.ticks[: -PPQN - 1]
            if len(self.ticks) > PPQN:
                bpm = 60.0 / (self.ticks[-1] - self.ticks[0])
                if self.bpm is None or abs(bpm / self.bpm - 1) > self.tolerance:
                    self.bpm = bpm
                    self.on_tempo(bpm)
        elif status in (START, CONTINUE):
            self.on_run(True)
        elif status == STOP:
            self.on_run(False)


class JackMidi:
    """The JACK backend: a client ``name`` with a MIDI output ``midi_out`` (connected to
    ``settings.connect``) and, with ``clock_in``, an input ``clock_in`` read by ``follower``."""

    def __init__(self, follower: MidiFollower, name: str = "musicbox", clock: ClockFollower | None = None):
        try:
            import jack
        except (ImportError, OSError) as exc:
            raise ConfigError(
                f"MIDI out needs JACK-Client and libjack ({exc}): `pip install 'musicbox[midi]'` and "
                '`apt install libjack-jackd2-0`; or set [midi] out = ""'
            ) from exc
        self.follower = follower
        follower.add_latency = False  # MIDI and audio leave their JACK ports in the same period: what
        # follows (the playback latency, a synth's own) is JACK's to add; `musicbox bench midi` measures
        self.clock = clock
        try:
            self.client = jack.Client(name, no_start_server=True)
        except jack.JackError as exc:
            raise ConfigError(
                f"[midi] out: no JACK server to open a MIDI port on ({exc}); start jackd (or "
                '`jack_control start`), or set [midi] out = ""'
            ) from exc
        self.rate = self.client.samplerate
        self.out = self.client.midi_outports.register("midi_out")
        self.inp = self.client.midi_inports.register("clock_in") if clock is not None else None
        self._was_paused = False
        self._closing: list[bytes] | None = None
        self.late = 0  # events due before the period they were written in (sent at its start)
        self.client.set_process_callback(self._process)
        self.client.activate()
        if follower.settings.connect:
            try:
                self.client.connect(self.out, follower.settings.connect)
            except jack.JackError as exc:
                self.close()
                raise ConfigError(
                    f"[midi] out: cannot connect to the JACK port {follower.settings.connect!r} ({exc}); "
                    "`jack_lsp -t` lists the MIDI ports"
                ) from exc
        log.info("MIDI out on JACK port %s", self.out.name)

    def _process(self, frames: int) -> None:
        out = self.out
        out.clear_buffer()
        t0 = time.monotonic() - self.client.frames_since_cycle_start / self.rate
        if self._closing is not None:
            for data in self._closing:
                out.write_midi_event(0, data)
            self._closing = []
            return
        if self.inp is not None and self.clock is not None:
            for offset, data in self.inp.incoming_midi_events():
                self.clock.message(t0 + offset / self.rate, bytes(data))
        if self._was_paused and not self.follower.player.paused and self.follower._running:
            for data in self.follower.resumed():
                out.write_midi_event(0, data)
        self._was_paused = self.follower.player.paused
        for at, data in self.follower.window(t0, t0 + frames / self.rate):
            offset = int((at - t0) * self.rate)
            if offset < 0:
                self.late += 1
            out.write_midi_event(min(max(offset, 0), frames - 1), data)

    def close(self, timeout_s: float = 0.5) -> None:
        """Send silence (and Stop) in the next period, then close the client."""
        if self._closing is None:
            self._closing = self.follower.close()
            end = time.monotonic() + timeout_s
            while self._closing and time.monotonic() < end:
                time.sleep(0.005)
        self.client.deactivate()
        self.client.close()
