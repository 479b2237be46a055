"""The audio side of the box: a sounddevice ``RawOutputStream`` that plays bars out of the shared ring.

The stream callback runs on PortAudio's real-time thread. It never allocates a buffer, takes a lock or
blocks: it copies slices of the ring's preallocated PCM into ``outdata`` and multiplies by preallocated
fade ramps with ``out=``. When the next bar is not there in time (underrun) it fades the last frame out
over a few milliseconds instead of clicking, counts the underrun, and fades back in when bars come back.
Pause fades out the same way and keeps the place in the bar.

A device that is missing when the box starts (a USB DAC unplugged) is waited for: :meth:`Player.start`
logs it and leaves the player LOST, and ``check()`` retries with backoff until it appears (logged again
once a minute), so the service plays as soon as the device is back, however long it was gone. With the
web remote's stream on (``clock_fallback``) the box plays meanwhile to :class:`ClockStream`, paced by
the clock, so the page can listen; the device is tried every ``device_retry_s`` and used once it is there.

Volume (the listener's, on top of the renderer's leveled loudness) is a gain in dB set from any thread
(:meth:`Player.set_volume`); the callback moves to it sample by sample across one block (a linear ramp,
from preallocated buffers), so a key press never steps the level (no zipper noise). The recorder keeps
the bars as rendered, before the volume.

If the device disappears (PortAudio error, the stream finishing on its own, or the callback going quiet)
``Player.check()``, called by the supervisor a few times a second, closes the stream, re-initializes
PortAudio (so a USB card or ALSA device that came back is seen again) and reopens it with exponential
backoff. The bars in the ring wait meanwhile. Two PortAudio limits (Debian's libportaudio2 19.6) end the
process instead, with AudioDeviceError (exit 69; systemd's ``Restart=on-failure`` starts a fresh box):
closing a stream whose JACK server died can block forever, and ``Pa_Terminate`` then aborts on an
assertion in the JACK host API, so a vanished JACK server is never reopened in-process.
"""

from __future__ import annotations

import atexit
import enum
import logging
import math
import sys
import threading
import time
import types
from dataclasses import dataclass
from typing import Any

import numpy as np

from musicbox.errors import AudioDeviceError, ConfigError
from musicbox.runtime.box.ring import BarRing

log = logging.getLogger("musicbox.player")

INVALID_SAMPLE_RATE = "PaErrorCode -9997"
"""PortAudio's paInvalidSampleRate: the device exists but does not take the configured rate."""


class StreamState(enum.Enum):
    """Where the output stream is."""

    CLOSED = "closed"
    RUNNING = "running"
    LOST = "lost"  # the device went away; reopening with backoff


@dataclass(frozen=True)
class PlayerSettings:
    """Audio output settings (Raspberry Pi defaults: PortAudio needs ~0.1 s of latency there).

    sample_rate: frames per second (Hz); must match the renderer's.
    blocksize: frames per callback (2048 = 46 ms at 44.1 kHz: every callback costs the audio thread
    PortAudio, cffi and sounddevice's overhead, so half as many cost about half: docs/boards.md); 0 lets
    PortAudio choose.
    latency: suggested output latency in seconds.
    device: PortAudio output device (index or name substring); None = the default output.
    fade_ms: length of the fade-out on underrun/pause and of the fade-in after, in milliseconds.
    stall_s: seconds without a callback after which a running stream counts as lost.
    backoff_s: first and largest wait between reopen attempts, in seconds (doubling in between).
    close_timeout_s: seconds a lost stream may take to close before the box gives up (exit 69).
    wait_log_s: seconds between two journal lines while waiting for a missing device.
    volume_db: the listener's volume at start, dB (0 = the leveled loudness; :data:`VOLUME_RANGE_DB`).
    volume_step_db: dB per volume key or button press.
    clock_fallback: while no device can be opened (at the start, or again after it was lost), play to
    :class:`ClockStream` (paced by the clock, no sound here) instead of waiting silently: the web
    remote's stream is then the box's only output. device_retry_s: seconds between tries of the device
    meanwhile (a USB card or DAC that shows up is used from then on).
    splice_ms: the crossfade, in milliseconds, where a knob turn's rewritten rest of a bar takes over at a
    beat line. log_s: seconds of played audio kept for the supervisor (recorder, web stream) to read.
    """

    sample_rate: int = 44100
    blocksize: int = 2048
    latency: float = 0.1
    device: int | str | None = None
    fade_ms: float = 10.0
    stall_s: float = 1.5
    backoff_s: tuple[float, float] = (0.25, 4.0)
    close_timeout_s: float = 2.0
    wait_log_s: float = 60.0
    volume_db: float = 0.0
    volume_step_db: float = 3.0
    clock_fallback: bool = False
    device_retry_s: float = 10.0
    splice_ms: float = 20.0
    log_s: float = 12.0


VOLUME_RANGE_DB = (-60.0, 0.0)
"""The listener's volume range in dB (0 dB: the renderer's target loudness, peaks under -2 dBFS)."""
_RAMP_FRAMES = 16384  # the longest block the volume ramp covers sample by sample (then it holds)


class PlayedLog:
    """The audio the player played, before the volume, for the supervisor's thread to read (recorder, web
    stream): a preallocated circular buffer the callback appends to, and a list of *marks*, each where a
    bar began or a splice took over (its log frame, the ring's (entry, bar, generation), the grid step it
    took over at, and when: ``time.monotonic()`` at its callback plus the frames before it).

    Single writer (the callback), single reader; the reader must keep within ``frames`` of the writer.
    """

    MARKS = 1024

    def __init__(self, frames: int, channels: int):
        self.pcm = np.zeros((max(1, frames), channels), np.float32)
        self.written = 0  # frames appended since the start
        self.marks = np.zeros((self.MARKS, 5), np.int64)  # log frame, entry, bar, gen, step
        self.mark_times = np.zeros(self.MARKS, np.float64)
        self.n_marks = 0
        # per callback: time.monotonic(), log frame, frames of bar audio, PortAudio's DAC time of the block
        self.stamps: list[tuple[float, int, int, float]] = [(0.0, 0, 0, 0.0)] * self.MARKS
        self.n_stamps = 0
        self._bytes = self.pcm.data.cast("B")  # the callback appends bytes: no numpy call
        self.frame_bytes = self.pcm.strides[0]  # bytes of one frame, all channels

    def stamp(self, at: float, n: int, dac: float) -> None:
        """Note that the callback at ``at`` (time.monotonic() seconds) appends ``n`` frames of bar audio
        next, whose first frame PortAudio plays at ``dac`` (its stream time, seconds: on JACK the server's
        frame clock): MIDI out's clock (runtime/box/midiout.py)."""
        self.stamps[self.n_stamps % self.MARKS] = (at, self.written, n, dac)
        self.n_stamps += 1

    def append(self, block, n: int) -> None:
        """Append the first ``n`` frames of ``block`` (float32 frames x channels, any C-contiguous buffer:
        copied as bytes, with no numpy call, for the callback's cold caches)."""
        size, width = len(self.pcm), self.frame_bytes
        at = self.written % size
        first = min(n, size - at)
        data = memoryview(block).cast("B")
        self._bytes[at * width : (at + first) * width] = data[: first * width]
        if first < n:
            self._bytes[: (n - first) * width] = data[first * width : n * width]
        self.written += n

    def mark(self, playing: tuple[int, int, int], step: int, offset: int, at: float) -> None:
        """Note that ``playing`` (entry, bar, gen) starts ``offset`` frames into the block the callback
        will append next, at ``at`` (time.monotonic() seconds)."""
        i = self.n_marks % self.MARKS
        self.marks[i, 0] = self.written + offset
        self.marks[i, 1:4] = playing
        self.marks[i, 4] = step
        self.mark_times[i] = at
        self.n_marks += 1

    def read(self, start: int, stop: int) -> np.ndarray:
        """A copy of log frames ``start .. stop`` (within the last ``len(pcm)`` written): at most two
        slices of the circular buffer, joined."""
        size = self.pcm.shape[0]
        at, n = start % size, stop - start
        first = min(n, size - at)
        if first == n:
            return self.pcm[at : at + n].copy()
        return np.concatenate((self.pcm[at:], self.pcm[: n - first]))


def _sounddevice():
    """Import sounddevice, turning a missing PortAudio library into an AudioDeviceError."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioDeviceError(
            f"PortAudio is not available ({exc}); install it with `apt install libportaudio2`"
        ) from exc
    return sounddevice


class ClockStream:
    """A device-less stand-in for sounddevice's ``OutputStream``: a thread calls ``callback(outdata,
    frames, time_info, status)`` every ``blocksize`` frames, paced by ``time.monotonic`` so bars play
    (and reach the web remote's stream) in real time. ``outdata`` is a preallocated buffer nobody hears.
    """

    _STATUS = types.SimpleNamespace(output_underflow=False)

    def __init__(self, samplerate: int, blocksize: int, channels: int, callback):
        self.samplerate = samplerate
        self.blocksize = blocksize or 1024
        self.latency = 0.0
        self.device = None
        self._buffer = np.zeros((self.blocksize, channels), np.float32)
        self._callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="musicbox-clock-output", daemon=True)

    @property
    def active(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        period = self.blocksize / self.samplerate
        due = time.monotonic()
        while not self._stop.is_set():
            self._callback(self._buffer, self.blocksize, None, self._STATUS)
            due += period
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -1.0:  # the machine was suspended: go on from now rather than race
                due = time.monotonic()

    def abort(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def close(self) -> None:
        self.abort()


class Player:
    """Plays the ring's bars in order; counters are read by the supervisor (single writer each)."""

    def __init__(self, ring: BarRing, settings: PlayerSettings = PlayerSettings()):
        self.ring = ring
        self.settings = settings
        self.state = StreamState.CLOSED
        self.underruns = 0  # times the bar after the playing one was not there at the bar line
        self.xruns = 0  # callbacks PortAudio flagged with output underflow (device-level)
        self.reopens = 0  # times the stream was reopened after a loss
        self.frames_played = 0  # frames of bar audio written to the device (not silence)
        self.silent_frames = 0  # frames of silence after the first bar while playing (starved), not paused
        self.callbacks = 0
        self.last_callback = 0.0  # time.monotonic() of the last callback, seconds
        self.last_sound = 0.0  # time.monotonic() of the last callback that played bar audio, seconds
        self.volume_applied_at = 0.0  # time.monotonic() of the last callback that moved the volume
        self.paused = False
        self.muted = False  # [midi] local_sound = false: the box drives an external synth alone
        self._stream: Any = None  # sounddevice.RawOutputStream or ClockStream
        self.host_api = ""  # PortAudio host API of the open stream (ALSA, JACK Audio Connection Kit, ...)
        try:
            self._sd = _sounddevice()
        except AudioDeviceError as exc:
            if not settings.clock_fallback:
                raise
            log.warning("%s", exc)
            self._sd = None  # no PortAudio: the clock stream only
        self.volume_db = 0.0
        self._volume = 1.0  # linear gain the callback moves to
        self._volume_now = 1.0  # linear gain at the end of the last block
        self.set_volume(settings.volume_db)
        self._volume_now = self._volume
        self._init_callback_state()
        self._next_attempt = 0.0
        self._backoff = settings.backoff_s[0]
        self._lost_since = 0.0
        self._last_wait_log = 0.0

    def _init_callback_state(self) -> None:
        """Preallocate everything the callback touches."""
        n = max(2, int(self.settings.sample_rate * self.settings.fade_ms / 1000.0))
        channels = self.ring.spec.channels
        self._fade_frames = n
        self._ramp_down = np.linspace(1.0, 0.0, n, dtype=np.float32)
        self._ramp_up = np.ascontiguousarray(self._ramp_down[::-1])
        self._last_frame = bytes(4 * channels)  # the last frame played (before the volume), float32 bytes
        self._entry = -1
        self._pos = 0
        self._frames = 0
        self._block_done = 0
        self._pcm = self.ring.pcm[0]
        self._pcm_bytes = self._pcm.data.cast("B")
        self._silent = True  # output is (fading to) silence: starved, paused or not started
        self._fade_out_left = 0
        self._fade_in_left = 0
        self._started = False  # a first bar has played: later starvation is an underrun
        self._ramp_steps = np.arange(1, _RAMP_FRAMES + 1, dtype=np.float32)
        self._ramp = np.empty(_RAMP_FRAMES, np.float32)
        # beat lines of the playing entry: where a newer entry of the bar may take over (a splice)
        self._span = (0, 16, 0x1111)
        self._line_step = 16
        self._line_frame = 0
        # the splice crossfade: the entry faded out of, where, and how much is left
        x = max(2, int(self.settings.sample_rate * self.settings.splice_ms / 1000.0))
        self._xfade_frames = x
        self._xfade_down = np.linspace(1.0, 0.0, x, dtype=np.float32)
        self._xfade_up = np.ascontiguousarray(self._xfade_down[::-1])
        self._xfade_scratch = np.empty(x, np.float32)
        self._xfade_pcm = self._pcm
        self._xfade_pos = 0
        self._xfade_end = 0
        self._xfade_left = 0
        self.log = PlayedLog(int(self.settings.sample_rate * self.settings.log_s), channels)
        self._seen_written = -1  # the ring's entry count at the last sweep

    # ---- the real-time callback ---------------------------------------------------------------------

    def _callback(self, buffer, frames, time_info, status) -> None:
        """PortAudio's callback (sounddevice's raw stream): ``buffer`` is the output block, float32
        ``[frames, channels]`` (any writable C-contiguous buffer).

        Its Python runs every 46 ms with cold caches, where a numpy call costs 10-25 us (a JACK dummy,
        /proc thread CPU). Most blocks lie inside one beat of the playing entry at full volume, with no
        fade or splice to make: those are copied as bytes from the ring into the block and the log, with
        no numpy call at all. Every other block goes through :meth:`_fill` on a numpy view."""
        now = time.monotonic()
        self.callbacks += 1
        self.last_callback = now
        if status and status.output_underflow:
            self.xruns += 1
        written = self.ring.written
        if written != self._seen_written:  # a new entry may supersede others: hand their slots back
            self._seen_written = written
            self.ring.sweep()
        dac = time_info.outputBufferDacTime if time_info is not None else now
        pos = self._pos
        if (
            pos + frames <= self._line_frame
            and self._volume_now == 1.0 == self._volume
            and not (self.paused or self._silent or self._xfade_left or self._fade_in_left)
        ):
            width = self.log.frame_bytes
            out = memoryview(buffer).cast("B")
            out[:] = self._pcm_bytes[pos * width : (pos + frames) * width]  # the common block
            self._pos = pos + frames
            self._last_frame = bytes(out[-width:])
            self.frames_played += frames
            self.last_sound = now
            self.log.stamp(now, frames, dac)
            self.log.append(out, frames)
            return
        outdata = np.frombuffer(buffer, np.float32).reshape(frames, self.ring.spec.channels)
        done = 0 if self.paused else self._fill(outdata, frames)
        self.frames_played += done
        if done:
            self.last_sound = now
        if done < frames and self._started and not self.paused:
            self.silent_frames += frames - done
        self.log.stamp(now, done, dac)
        self.log.append(outdata, done)
        if done < frames:
            self._go_silent(outdata, done, frames)
        else:
            self._last_frame = outdata[frames - 1].tobytes()
        self._apply_volume(outdata, frames)

    def _apply_volume(self, outdata, frames: int) -> None:
        """Scale the block by the volume, ramping linearly from the last block's gain to the target."""
        start, target = self._volume_now, self._volume
        if start == target:
            if target != 1.0:
                np.multiply(outdata, target, out=outdata)
            return
        self.volume_applied_at = self.last_callback
        n = min(frames, _RAMP_FRAMES)
        ramp = self._ramp[:n]
        np.multiply(self._ramp_steps[:n], (target - start) / n, out=ramp)
        ramp += start
        for c in range(outdata.shape[1]):  # channel by channel: a broadcast would buffer a block
            np.multiply(outdata[:n, c], ramp, out=outdata[:n, c])
        if frames > n:
            np.multiply(outdata[n:], target, out=outdata[n:])
        self._volume_now = target

    def _fill(self, outdata, frames: int) -> int:
        """Copy bar PCM into ``outdata``; returns the frames written (fewer if the ring ran dry). At each
        beat line of the playing bar a newer entry of the bar (a knob turn's rewrite) may take over."""
        done = 0
        while done < frames:
            self._block_done = done
            if self._pos >= self._frames and not self._advance():
                break
            if self._pos >= self._line_frame:
                self._beat_line()
            if self._silent:
                self._silent = False
                self._fade_in_left = self._fade_frames
            n = min(frames - done, min(self._frames, self._line_frame) - self._pos)
            block = outdata[done : done + n]
            block[:] = self._pcm[self._pos : self._pos + n]
            if self._xfade_left:
                self._crossfade(block)
            if self._fade_in_left:
                self._fade_in(block)
            self._pos += n
            done += n
        return done

    def _advance(self) -> bool:
        """Move to the next bar in the ring; False if there is none yet."""
        entry = self.ring.pick_next()
        if entry < 0:
            return False
        self.ring.held = -1
        self._xfade_left = 0
        self._frames = self.ring.start_entry(entry)
        self._enter(entry, 0)
        self._started = True
        self._mark(0)
        return True

    def _enter(self, entry: int, at_step: int) -> None:
        """Play ``entry`` from its beat line ``at_step`` (its first step: from its start)."""
        self._pcm = self.ring.slot_pcm(entry)
        self._pcm_bytes = self._pcm.data.cast("B")
        self._entry = entry
        self._span = self.ring.span(entry)
        self._pos = self._frame_of(at_step)
        self._next_line(at_step)

    def _mark(self, step: int) -> None:
        done = self._block_done
        self.log.mark(self.ring.playing(), step, done, self.last_callback + done / self.settings.sample_rate)

    def _frame_of(self, step: int) -> int:
        first, steps, _ = self._span
        return int(round((step - first) * self._frames / max(1, steps - first)))

    def _next_line(self, after_step: int) -> None:
        """The first beat line after ``after_step`` (the bar's end when there is none)."""
        first, steps, beats = self._span
        step = after_step + 1
        while step < steps and not (beats >> step) & 1:
            step += 1
        self._line_step = step
        self._line_frame = self._frame_of(step) if step < steps else self._frames

    def _beat_line(self) -> None:
        """At a beat line: take over a newer entry of the playing bar if one is there (a splice),
        crossfading out of the old one."""
        step = self._line_step
        entry = self.ring.pick_splice(step)
        if entry < 0:
            self._next_line(step)
            return
        self._xfade_pcm, self._xfade_pos, self._xfade_end = self._pcm, self._pos, self._frames
        self._xfade_left = self._xfade_frames
        self.ring.held = self.ring.slot_index(self._entry)
        self._frames = self.ring.start_entry(entry, splice=True)
        self._enter(entry, step)
        self._mark(step)

    def _crossfade(self, block) -> None:
        """Mix the start of ``block`` (the new entry) with the rest of the entry a splice left."""
        k = min(self._xfade_left, block.shape[0])
        start = self._xfade_frames - self._xfade_left
        up, down, tmp = (
            self._xfade_up[start : start + k],
            self._xfade_down[start : start + k],
            self._xfade_scratch,
        )
        old = self._xfade_pcm[self._xfade_pos : min(self._xfade_pos + k, self._xfade_end)]
        m = old.shape[0]
        for c in range(block.shape[1]):  # channel by channel: a broadcast would buffer a block
            np.multiply(block[:k, c], up, out=block[:k, c])
            np.multiply(old[:, c], down[:m], out=tmp[:m])
            np.add(block[:m, c], tmp[:m], out=block[:m, c])
        self._xfade_pos += k
        self._xfade_left -= k
        if not self._xfade_left:
            self.ring.held = -1
            self.ring.sweep()  # the slot the fade read from may be handed back now

    def _fade_in(self, block) -> None:
        """Ramp up the start of the audio after a silence."""
        k = min(self._fade_in_left, block.shape[0])
        start = self._fade_frames - self._fade_in_left
        for c in range(block.shape[1]):  # channel by channel: a broadcast would buffer a block
            np.multiply(block[:k, c], self._ramp_up[start : start + k], out=block[:k, c])
        self._fade_in_left -= k

    def _go_silent(self, outdata, done: int, frames: int) -> None:
        """Fill ``outdata[done:]`` with a fade from the last frame to zero, then zeros."""
        if not self._silent:
            self._silent = True
            self._fade_out_left = self._fade_frames
            if self._started and not self.paused:
                self.underruns += 1
        if done:
            self._last_frame = outdata[done - 1].tobytes()
        last = np.frombuffer(self._last_frame, np.float32)
        rest = outdata[done:frames]
        k = min(self._fade_out_left, rest.shape[0])
        start = self._fade_frames - self._fade_out_left
        for c in range(rest.shape[1]):  # channel by channel: a broadcast would buffer a block
            np.multiply(self._ramp_down[start : start + k], last[c], out=rest[:k, c])
        rest[k:] = 0.0
        self._fade_out_left -= k

    # ---- control (main process, supervisor thread) -------------------------------------------------

    def bar_phase(self) -> float:
        """How far into the playing bar the output is, 0..1 (0 before the first bar)."""
        first, steps, _ = self._span
        if not self._frames:
            return 0.0
        return (first + self._pos / self._frames * (steps - first)) / steps

    def bar_step(self) -> float:
        """Where in the playing bar the output is, in grid steps (0 before the first bar)."""
        first, steps, _ = self._span
        return first + (self._pos / self._frames * (steps - first) if self._frames else 0.0)

    def output_latency(self) -> float:
        """The open stream's output latency in seconds (PortAudio's figure; 0 when closed)."""
        return float(getattr(self._stream, "latency", 0.0) or 0.0)

    def beat_seconds(self) -> float:
        """How long a beat of the playing bar lasts as it is played (its tempo, and the performance's
        stretch of it), seconds; 0 before the first bar."""
        first, steps, beats = self._span
        if not self._frames or steps <= first:
            return 0.0
        lines = [s for s in range(steps) if (beats >> s) & 1]
        beat_steps = lines[1] - lines[0] if len(lines) > 1 else steps
        return self._frames / (steps - first) * beat_steps / self.settings.sample_rate

    def silent_for(self, now: float) -> float:
        """Seconds the output has played no bar audio while the box plays (0 paused or before the first
        bar): what the health check counts as a fault once it outlasts the buffer."""
        if self.paused or not self._started or self._pos < self._frames:
            return 0.0
        return max(0.0, now - self.last_sound)

    def set_volume(self, db: float) -> float:
        """Set the listener's volume (dB, clipped to :data:`VOLUME_RANGE_DB`); returns the value set.
        The callback ramps to it over its next block."""
        lo, hi = VOLUME_RANGE_DB
        self.volume_db = min(max(float(db), lo), hi)
        self._volume = 10.0 ** (self.volume_db / 20.0) if self.volume_db > lo and not self.muted else 0.0
        return self.volume_db

    def step_volume(self, steps: int) -> float:
        """Turn the volume ``steps`` presses (``volume_step_db`` each) up (+) or down (-); the new dB."""
        return self.set_volume(self.volume_db + steps * self.settings.volume_step_db)

    def pause(self) -> None:
        """Fade out and hold the place in the bar."""
        self.paused = True

    def resume(self) -> None:
        """Fade back in where playback was paused."""
        self.paused = False

    def start(self) -> None:
        """Open the stream, or, when the device is missing, wait for it: log why, and let :meth:`check`
        retry with backoff (the stream state is LOST meanwhile)."""
        try:
            self.open()
        except AudioDeviceError as exc:
            now = time.monotonic()
            if self.settings.clock_fallback:
                log.warning(
                    "no audio device: playing to the web remote's stream only, paced by the clock; %s", exc
                )
                self._open_clock()
                return
            log.warning("waiting for the audio device (retrying with backoff): %s", exc)
            self.state = StreamState.LOST
            self._lost_since = self._last_wait_log = now
            self._backoff = self.settings.backoff_s[0]
            self._next_attempt = now + self._backoff

    def _open_clock(self) -> None:
        s = self.settings
        stream = ClockStream(s.sample_rate, s.blocksize, self.ring.spec.channels, self._callback)
        stream.start()
        self._stream = stream
        self._next_attempt = time.monotonic() + s.device_retry_s
        self.host_api = "clock"
        self.last_callback = time.monotonic()
        self.state = StreamState.RUNNING
        log.info("audio stream open: %s", self.describe())

    def open(self, before_start=None) -> None:
        """Open and start the output stream; raises AudioDeviceError when the device cannot be used.
        ``before_start()`` runs once the stream is open, just before it starts."""
        s = self.settings
        if self._sd is None:
            raise AudioDeviceError("PortAudio is not available")
        try:
            stream = self._sd.RawOutputStream(
                samplerate=s.sample_rate,
                blocksize=s.blocksize,
                latency=s.latency,
                device=s.device,
                channels=self.ring.spec.channels,
                dtype="float32",
                callback=self._callback,
            )
            if before_start is not None:
                before_start()
            stream.start()
        except (self._sd.PortAudioError, ValueError) as exc:
            which = "the system default" if s.device in (None, "") else repr(s.device)
            if INVALID_SAMPLE_RATE in str(exc):  # the device is there: waiting would not help
                rate = self._device_rate()
                raise ConfigError(
                    f"the audio output {which} does not play at [audio] sample_rate = {s.sample_rate} Hz"
                    + (f"; it runs at {rate:.0f} Hz" if rate else "")
                    + f": set [audio] sample_rate = {rate or 48000:.0f} in musicbox.toml"
                ) from exc
            raise AudioDeviceError(
                f"cannot open audio output {which}: {exc}. Check that a sound card or DAC is present "
                "(`aplay -l`, `musicbox doctor`), set [audio] device in musicbox.toml to one that "
                f"`{sys.executable} -m sounddevice` lists, or, on a machine without sound, listen in a browser: "
                "`musicbox play --remote` (or [remote] enabled = true in musicbox.toml), or write audio to "
                "a file with `musicbox render --seconds 60 --out music.wav`"
            ) from exc
        self._stream = stream
        self.host_api = self._sd.query_hostapis(self._sd.query_devices(stream.device)["hostapi"])["name"]
        self.last_callback = time.monotonic()
        self.state = StreamState.RUNNING
        log.info("audio stream open: %s", self.describe())

    def _device_rate(self) -> float | None:
        """The output device's own sample rate (Hz), or None when PortAudio cannot say."""
        try:
            return float(self._sd.query_devices(self.settings.device, "output")["default_samplerate"])
        except (self._sd.PortAudioError, ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        """Device name, rate, block size and actual latency of the open stream."""
        st = self._stream
        if st is None:
            return "closed"
        if isinstance(st, ClockStream):
            return f"no device, paced by the clock: {st.samplerate} Hz block {st.blocksize}"
        name = self._sd.query_devices(st.device)["name"]
        return f"{name!r} ({self.host_api}) {st.samplerate:.0f} Hz block {st.blocksize} latency {st.latency * 1000:.0f} ms"

    def close(self) -> None:
        """Stop and close the stream (idempotent)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except self._sd.PortAudioError as exc:
                log.warning("closing the audio stream: %s", exc)
        self.state = StreamState.CLOSED

    def healthy(self) -> bool:
        """True while the stream runs and its callback is being called."""
        return self.state is StreamState.RUNNING

    def check(self, now: float | None = None) -> StreamState:
        """Detect a lost device and reopen with backoff; call a few times a second. Returns the state."""
        now = time.monotonic() if now is None else now
        if self.state is StreamState.RUNNING and self._lost(now):
            self._mark_lost(now)
        if self.state is StreamState.LOST and now >= self._next_attempt:
            self._try_reopen(now)
        if isinstance(self._stream, ClockStream) and now >= self._next_attempt:
            self._next_attempt = now + self.settings.device_retry_s
            self._try_device()
        return self.state

    def _try_device(self) -> None:
        """Playing to the clock: switch to the audio device if it can be opened now (the clock stops
        just before the device starts, so one thread at a time runs the callback)."""
        if self._sd is None or self._jack_loaded():  # re-scanning under a JACK host API can abort
            return
        self._sd._terminate()  # re-scan devices: a card plugged in since is new
        self._sd._initialize()
        clock = self._stream
        try:
            self.open(before_start=clock.abort)
        except AudioDeviceError:
            if not clock.active:  # the device opened but failed to start: back to the clock
                self._open_clock()
            return
        log.info("an audio device is here now: playing to %s", self.describe())

    def _lost(self, now: float) -> bool:
        stream = self._stream
        if stream is None or not stream.active:
            return True
        return now - self.last_callback > self.settings.stall_s

    def _mark_lost(self, now: float) -> None:
        log.warning("audio device lost (no callback for %.1f s); reopening", now - self.last_callback)
        if self._sd is not None and self._jack_loaded():
            atexit.unregister(self._sd._exit_handler)  # its Pa_Terminate would abort the process
        self._close_bounded()
        self.state = StreamState.LOST
        self._lost_since = now
        self._last_wait_log = -math.inf  # the first failed reopen says why
        self._backoff = self.settings.backoff_s[0]
        self._next_attempt = now

    def _close_bounded(self) -> None:
        """Close the lost stream on a helper thread; if PortAudio blocks (its JACK host API waits forever
        for a server that died), give up: raise AudioDeviceError so the service manager restarts us."""
        closer = threading.Thread(target=self.close, name="musicbox-audio-close", daemon=True)
        closer.start()
        closer.join(self.settings.close_timeout_s)
        if closer.is_alive():
            raise AudioDeviceError(
                f"the audio device vanished and PortAudio did not let go of it within "
                f"{self.settings.close_timeout_s:g} s; exiting so that the service restarts with a fresh "
                "PortAudio (a JACK server that died cannot be reopened in-process)"
            )

    def _jack_loaded(self) -> bool:
        """True when PortAudio's JACK host API is up in this process (its Pa_Terminate aborts once the
        server died, whatever host API the stream used)."""
        return any("JACK" in api["name"] for api in self._sd.query_hostapis())

    def _try_reopen(self, now: float) -> None:
        if self._sd is None:
            self._open_clock()
            return
        if self._jack_loaded():
            raise AudioDeviceError(
                "the JACK server went away; PortAudio's JACK host API cannot reconnect in-process "
                "(Pa_Terminate aborts), so the box exits and the service restarts it"
            )
        self._sd._terminate()  # re-scan devices: a restarted JACK server / replugged card is new
        self._sd._initialize()
        try:
            self.open()
        except AudioDeviceError as exc:
            if self.settings.clock_fallback:
                log.warning("no audio device: playing to the web remote's stream only meanwhile; %s", exc)
                self._open_clock()
                return
            self.state = StreamState.LOST
            self._next_attempt = now + self._backoff
            if now - self._last_wait_log >= self.settings.wait_log_s:
                self._last_wait_log = now
                log.warning(
                    "still no audio device after %.0f s, retrying every %.2f s: %s",
                    now - self._lost_since,
                    self._backoff,
                    exc,
                )
            self._backoff = min(self._backoff * 2.0, self.settings.backoff_s[1])
            return
        self.reopens += 1
        log.info("audio device back: stream reopened after %.2f s", time.monotonic() - self._lost_since)
