"""The box's music as an MP3 stream for the page (libsndfile's LAME encoder, through soundfile).

The supervisor hands every bar to :meth:`StreamHub.feed` as it starts playing (its main thread, never
the audio callback), as rendered: before the box's own volume (the page has its player's). With no listener, ``feed`` returns at once: no copy, no encoding. With listeners,
the bar is copied onto a queue and one encoder thread turns it into MP3 frames that every listener gets
(MP3 frames stand alone, so a listener joins at the next bar). The encoder starts with the first
listener and stops with the last. A listener too slow to take its frames (a full queue of ``backlog``
chunks) is dropped rather than let the box's memory grow.

Latency: a bar reaches the page as it starts playing on the box, so the page plays it a little later:
one main-loop tick, the encoding, the network, and the browser's start-up — 0.2-0.3 s where the page
feeds the bytes to Media Source Extensions itself, 1.7-2 s where the browser buffers a plain
``<audio src>`` (Chromium; measured by tests/test_remote_browser.py). CPU: the encoding, about 3 % of an
x86 core at 128 kbit/s (``musicbox bench remote``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import numpy as np

log = logging.getLogger("musicbox.remote")

BACKLOG = 8  # chunks (bars) a listener may be behind before it is dropped


class _Sink:
    """A write-only file for libsndfile: collects the encoded bytes between two :meth:`take`."""

    def __init__(self):
        self._chunks: list[bytes] = []
        self._pos = 0

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:  # libsndfile probes; a stream cannot seek
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, _n: int = -1) -> bytes:
        return b""

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


class Listener:
    """One page listening: ``deliver(bytes)`` is called on the encoder thread, ``backlog`` chunks max.
    ``first_bar_at``: time.time() at which the first bar it got started playing on the box."""

    def __init__(self, deliver: Callable[[bytes], bool]):
        self.deliver = deliver
        self.first_bar_at: float | None = None


class StreamHub:
    """MP3 encoding for every listener. ``sample_rate`` Hz, ``channels``, ``kbps`` constant bit rate."""

    def __init__(self, sample_rate: int, channels: int = 2, kbps: int = 128):
        self.sample_rate = sample_rate
        self.channels = channels
        self.kbps = kbps
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._bars: queue.SimpleQueue = queue.SimpleQueue()  # the running encoder thread's
        self._thread: threading.Thread | None = None
        self.cpu_s = 0.0  # encoder thread CPU seconds so far
        self.audio_s = 0.0  # seconds of audio encoded so far

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def feed(self, pcm: np.ndarray) -> None:
        """A bar that starts playing now: float32 ``[frames, channels]`` (copied when anyone listens)."""
        if not self._listeners:
            return
        import time

        self._bars.put((time.time(), np.array(pcm, np.float32, copy=True)))

    def add(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)
            if self._thread is None:  # a new thread, with a queue of its own (an ending one drains its own)
                self._bars = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._encode, args=(self._bars,), name="musicbox-stream", daemon=True
                )
                self._thread.start()
        log.info("remote: a page listens to the stream (%d listening)", len(self._listeners))

    def remove(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
                if not self._listeners:
                    self._bars.put(None)  # the encoder thread ends
                    self._thread = None
        log.info("remote: a page stopped listening (%d listening)", len(self._listeners))

    def close(self) -> None:
        with self._lock:
            self._listeners.clear()
            if self._thread is not None:
                self._bars.put(None)
                self._thread = None

    def _encode(self, bars: queue.SimpleQueue) -> None:
        import time

        import soundfile

        sink = _Sink()
        encoder = soundfile.SoundFile(
            sink,
            "w",
            self.sample_rate,
            self.channels,
            format="MP3",
            subtype="MPEG_LAYER_III",
            compression_level=_compression_level(self.kbps),
            bitrate_mode="CONSTANT",
        )
        try:
            while True:
                item = bars.get()
                if item is None:
                    return
                started, pcm = item
                t0 = time.thread_time()
                encoder.write(pcm)
                data = sink.take()
                self.cpu_s += time.thread_time() - t0
                self.audio_s += pcm.shape[0] / self.sample_rate
                if data:
                    self._deliver(data, started)
        finally:
            encoder.close()

    def _deliver(self, data: bytes, started: float) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            if listener.first_bar_at is None:
                listener.first_bar_at = started
            if not listener.deliver(data):
                log.warning("remote: a stream listener fell %d bars behind; dropping it", BACKLOG)
                self.remove(listener)


def _compression_level(kbps: int) -> float:
    """libsndfile's MP3 compression level (0 = 320 kbit/s .. 1 = 32 kbit/s) for ``kbps``."""
    return min(1.0, max(0.0, (320 - kbps) / (320 - 32)))
