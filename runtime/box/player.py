"""The audio side of the box: a sounddevice ``OutputStream`` that plays bars out of the shared ring.

The stream callback runs on PortAudio's real-time thread. It never allocates a buffer, takes a lock or
blocks: it copies slices of the ring's preallocated PCM into ``outdata`` and multiplies by preallocated
fade ramps with ``out=``. When the next bar is not there in time (underrun) it fades the last frame out
over a few milliseconds instead of clicking, counts the underrun, and fades back in when bars come back.
Pause fades out the same way and keeps the place in the bar.

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
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from musicbox.errors import AudioDeviceError
from musicbox.runtime.box.ring import BarRing

log = logging.getLogger("musicbox.player")


class StreamState(enum.Enum):
    """Where the output stream is."""

    CLOSED = "closed"
    RUNNING = "running"
    LOST = "lost"  # the device went away; reopening with backoff


@dataclass(frozen=True)
class PlayerSettings:
    """Audio output settings (Raspberry Pi defaults: PortAudio needs ~0.1 s of latency there).

    sample_rate: frames per second (Hz); must match the renderer's.
    blocksize: frames per callback (1024 = 23 ms at 44.1 kHz); 0 lets PortAudio choose.
    latency: suggested output latency in seconds.
    device: PortAudio output device (index or name substring); None = the default output.
    fade_ms: length of the fade-out on underrun/pause and of the fade-in after, in milliseconds.
    stall_s: seconds without a callback after which a running stream counts as lost.
    backoff_s: first and largest wait between reopen attempts, in seconds (doubling in between).
    close_timeout_s: seconds a lost stream may take to close before the box gives up (exit 69).
    """

    sample_rate: int = 44100
    blocksize: int = 1024
    latency: float = 0.1
    device: int | str | None = None
    fade_ms: float = 10.0
    stall_s: float = 1.5
    backoff_s: tuple[float, float] = (0.25, 4.0)
    close_timeout_s: float = 2.0


def _sounddevice():
    """Import sounddevice, turning a missing PortAudio library into an AudioDeviceError."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioDeviceError(
            f"PortAudio is not available ({exc}); install it with `apt install libportaudio2`"
        ) from exc
    return sounddevice


class Player:
    """Plays the ring's bars in order; counters are read by the supervisor (single writer each)."""

    def __init__(self, ring: BarRing, settings: PlayerSettings = PlayerSettings()):
        self.ring = ring
        self.settings = settings
        self.state = StreamState.CLOSED
        self.underruns = 0  # times the bar after the playing one was not there at the bar line
        self.xruns = 0  # callbacks PortAudio flagged with output underflow (device-level)
        self.reopens = 0  # times the stream was reopened after a loss
        self.callbacks = 0
        self.last_callback = 0.0  # time.monotonic() of the last callback, seconds
        self.paused = False
        self._stream = None
        self.host_api = ""  # PortAudio host API of the open stream (ALSA, JACK Audio Connection Kit, ...)
        self._sd = _sounddevice()
        self._init_callback_state()
        self._next_attempt = 0.0
        self._backoff = settings.backoff_s[0]
        self._lost_since = 0.0

    def _init_callback_state(self) -> None:
        """Preallocate everything the callback touches."""
        n = max(2, int(self.settings.sample_rate * self.settings.fade_ms / 1000.0))
        channels = self.ring.spec.channels
        self._fade_frames = n
        self._ramp_down = np.linspace(1.0, 0.0, n, dtype=np.float32)[:, None]
        self._ramp_up = np.ascontiguousarray(self._ramp_down[::-1])
        self._last = np.zeros((1, channels), np.float32)
        self._entry = -1
        self._pos = 0
        self._frames = 0
        self._pcm = self.ring.pcm[0]
        self._silent = True  # output is (fading to) silence: starved, paused or not started
        self._fade_out_left = 0
        self._fade_in_left = 0
        self._started = False  # a first bar has played: later starvation is an underrun

    # ---- the real-time callback ---------------------------------------------------------------------

    def _callback(self, outdata, frames, time_info, status) -> None:
        self.callbacks += 1
        self.last_callback = time.monotonic()
        if status.output_underflow:
            self.xruns += 1
        done = 0 if self.paused else self._fill(outdata, frames)
        if done < frames:
            self._go_silent(outdata, done, frames)
        else:
            self._last[0] = outdata[frames - 1]

    def _fill(self, outdata, frames: int) -> int:
        """Copy bar PCM into ``outdata``; returns the frames written (fewer if the ring ran dry)."""
        done = 0
        while done < frames:
            if self._pos >= self._frames and not self._advance():
                break
            if self._silent:
                self._silent = False
                self._fade_in_left = self._fade_frames
            n = min(frames - done, self._frames - self._pos)
            outdata[done : done + n] = self._pcm[self._pos : self._pos + n]
            if self._fade_in_left:
                self._fade_in(outdata[done : done + n])
            self._pos += n
            done += n
        return done

    def _advance(self) -> bool:
        """Move to the next bar in the ring; False if there is none yet."""
        entry = self.ring.pick_next()
        if entry < 0:
            return False
        self._frames = self.ring.start_entry(entry)
        self._pcm = self.ring.slot_pcm(entry)
        self._entry = entry
        self._pos = 0
        self._started = True
        return True

    def _fade_in(self, block) -> None:
        """Ramp up the start of the audio after a silence."""
        k = min(self._fade_in_left, block.shape[0])
        start = self._fade_frames - self._fade_in_left
        np.multiply(block[:k], self._ramp_up[start : start + k], out=block[:k])
        self._fade_in_left -= k

    def _go_silent(self, outdata, done: int, frames: int) -> None:
        """Fill ``outdata[done:]`` with a fade from the last frame to zero, then zeros."""
        if not self._silent:
            self._silent = True
            self._fade_out_left = self._fade_frames
            if self._started and not self.paused:
                self.underruns += 1
        if done:
            self._last[0] = outdata[done - 1]
        rest = outdata[done:frames]
        k = min(self._fade_out_left, rest.shape[0])
        start = self._fade_frames - self._fade_out_left
        np.multiply(self._ramp_down[start : start + k], self._last, out=rest[:k])
        rest[k:] = 0.0
        self._fade_out_left -= k

    # ---- control (main process, supervisor thread) -------------------------------------------------

    def pause(self) -> None:
        """Fade out and hold the place in the bar."""
        self.paused = True

    def resume(self) -> None:
        """Fade back in where playback was paused."""
        self.paused = False

    def open(self) -> None:
        """Open and start the output stream; raises AudioDeviceError when the device cannot be used."""
        s = self.settings
        try:
            stream = self._sd.OutputStream(
                samplerate=s.sample_rate,
                blocksize=s.blocksize,
                latency=s.latency,
                device=s.device,
                channels=self.ring.spec.channels,
                dtype="float32",
                callback=self._callback,
            )
            stream.start()
        except (self._sd.PortAudioError, ValueError) as exc:
            which = "the system default" if s.device in (None, "") else repr(s.device)
            raise AudioDeviceError(
                f"cannot open audio output {which}: {exc}. Check that a sound card or DAC is present "
                "(`aplay -l`, `musicbox doctor`), set [audio] device in musicbox.toml to one that "
                f"`{sys.executable} -m sounddevice` lists, or, on a machine without sound, write audio to a file "
                "with `musicbox render --seconds 60 --out music.wav`"
            ) from exc
        self._stream = stream
        self.host_api = self._sd.query_hostapis(self._sd.query_devices(stream.device)["hostapi"])["name"]
        self.last_callback = time.monotonic()
        self.state = StreamState.RUNNING
        log.info("audio stream open: %s", self.describe())

    def describe(self) -> str:
        """Device name, rate, block size and actual latency of the open stream."""
        st = self._stream
        if st is None:
            return "closed"
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
        return self.state

    def _lost(self, now: float) -> bool:
        stream = self._stream
        if stream is None or not stream.active:
            return True
        return now - self.last_callback > self.settings.stall_s

    def _mark_lost(self, now: float) -> None:
        log.warning("audio device lost (no callback for %.1f s); reopening", now - self.last_callback)
        if self._jack_loaded():
            atexit.unregister(self._sd._exit_handler)  # its Pa_Terminate would abort the process
        self._close_bounded()
        self.state = StreamState.LOST
        self._lost_since = now
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
            self.state = StreamState.LOST
            self._next_attempt = now + self._backoff
            log.warning("audio reopen failed, next try in %.2f s: %s", self._backoff, exc)
            self._backoff = min(self._backoff * 2.0, self.settings.backoff_s[1])
            return
        self.reopens += 1
        log.info("audio stream reopened after %.2f s", time.monotonic() - self._lost_since)
