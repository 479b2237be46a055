"""The box's music as a stream for the page: 16-bit PCM behind a WAV header of open length.

The supervisor hands the audio it played to :meth:`StreamHub.feed` every tick (0.2 s while one
listens; ``Supervisor.run``'s ``on_audio``: its main thread, never the audio callback), before the box's
own volume (the page has its own). With no listener, ``feed`` returns at once. With listeners, the chunk is converted once to 16-bit
little-endian frames and the same bytes go to every listener (``deliver`` only queues them on the
server's event loop). A listener more than :data:`BACKLOG_S` seconds of audio behind is dropped rather
than let the box's memory grow; at most :data:`MAX_LISTENERS` listen at once. Memory: every listener
queues the same bytes objects, so the stream holds at most :data:`BACKLOG_S` seconds of audio however
many listen (0.9 MB at 44.1 kHz stereo).

Why not MP3: encoding is what the stream cost: libsndfile's LAME took 2.5 CPU-s per minute of music on
an x86 core (about ten times that share of a Pi Zero 2 W's), converting to 16 bits takes about 0.005
(``musicbox bench remote``). The price is bandwidth: 1.4 Mbit/s at 44.1 kHz stereo, which a LAN's
Wi-Fi carries for a few listeners. The page plays the frames through Web Audio as they come (a chunk
reaches the browser as soon as it has played on the box); any player that reads a WAV stream (``ffplay``,
``mpv``, VLC) plays the address too.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable

import numpy as np

log = logging.getLogger("musicbox.remote")

BACKLOG_S = 5.0  # seconds of audio a listener may be behind (queued for it) before it is dropped
MAX_LISTENERS = 8  # pages listening at once (each takes 1.4 Mbit/s at 44.1 kHz stereo)


def wav_header(sample_rate: int, channels: int) -> bytes:
    """A 16-bit PCM WAV header whose RIFF and data lengths say "open-ended" (0xFFFFFFFF)."""
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * block, block, 16)
    return b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data\xff\xff\xff\xff"


def pcm16(pcm: np.ndarray) -> bytes:
    """Float frames ``[frames, channels]`` in -1..1 as interleaved 16-bit little-endian samples."""
    return (np.clip(pcm, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class Listener:
    """One page listening: ``deliver(bytes) -> bool`` (False: it is too far behind) is called on the
    box's main thread. ``first_bar_at``: time.time() at which it was handed its first audio."""

    def __init__(self, deliver: Callable[[bytes], bool]):
        self.deliver = deliver
        self.first_bar_at: float | None = None


class StreamHub:
    """The stream for every listener: ``sample_rate`` Hz, ``channels``."""

    def __init__(self, sample_rate: int, channels: int = 2):
        self.sample_rate = sample_rate
        self.channels = channels
        self.header = wav_header(sample_rate, channels)
        self.backlog_bytes = int(BACKLOG_S * sample_rate) * 2 * channels  # what a listener may have queued
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self.cpu_s = 0.0  # CPU seconds spent converting bars so far
        self.audio_s = 0.0  # seconds of audio converted so far

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def feed(self, pcm: np.ndarray) -> None:
        """Audio just played: float32 ``[frames, channels]``; converted once, for everyone."""
        with self._lock:
            listeners = list(self._listeners)
        if not listeners:
            return
        started, t0 = time.time(), time.thread_time()
        data = pcm16(pcm)
        self.cpu_s += time.thread_time() - t0
        self.audio_s += pcm.shape[0] / self.sample_rate
        for listener in listeners:
            if listener.first_bar_at is None:
                listener.first_bar_at = started
            if not listener.deliver(data):
                log.warning("remote: a stream listener fell %g s behind; dropping it", BACKLOG_S)
                self.remove(listener)

    def add(self, listener: Listener) -> bool:
        """Add ``listener``; False when :data:`MAX_LISTENERS` listen already."""
        with self._lock:
            if len(self._listeners) >= MAX_LISTENERS:
                return False
            self._listeners.append(listener)
            n = len(self._listeners)
        log.info("remote: a page listens to the stream (%d listening)", n)
        return True

    def remove(self, listener: Listener) -> None:
        with self._lock:
            if listener not in self._listeners:
                return
            self._listeners.remove(listener)
            n = len(self._listeners)
        log.info("remote: a page stopped listening (%d listening)", n)

    def close(self) -> None:
        with self._lock:
            self._listeners.clear()
