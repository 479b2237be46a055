"""Ableton Link, following (``[midi] link = true``, docs/rig.md): the tempo of the Link session sets the
box's (the tempo knob then shows and does nothing else), and the session's start/stop plays and pauses.

Link's library, ``aalink`` (the ``link`` extra: ``pip install 'musicbox[link]'``), wraps Ableton's Link SDK
and is GPL-3.0-or-later: it stays an optional dependency outside the MIT core, imported only here and
only when ``[midi] link`` is on.

Not done: bars on the shared beat. The box's bar lines follow its own audio clock; aligning them to the
session's beat (quantum = the bar's beats) needs the player to start a bar at a given moment.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from musicbox.errors import ConfigError

log = logging.getLogger("musicbox.link")


class LinkFollower:
    """A Link peer on its own thread (aalink runs on an asyncio loop) reporting the session's tempo
    through ``on_tempo(bpm)`` when it moves by more than ``tolerance`` (a fraction) from the last one
    reported, and its playing state through ``on_run(bool)`` when it changes. ``bpm``: the tempo the
    box offers a session it starts."""

    def __init__(
        self,
        bpm: float,
        on_tempo: Callable[[float], None],
        on_run: Callable[[bool], None],
        poll_s: float = 0.05,
        tolerance: float = 0.005,
    ):
        try:
            import aalink
        except ImportError as exc:
            raise ConfigError(
                f"[midi] link = true needs aalink ({exc}): `pip install 'musicbox[link]'` (GPL-3.0: the "
                "Ableton Link SDK); or set [midi] link = false"
            ) from exc
        self._aalink = aalink
        self.bpm, self.on_tempo, self.on_run = bpm, on_tempo, on_run
        self.poll_s, self.tolerance = poll_s, tolerance
        self.tempo: float | None = None  # the last tempo reported
        self.peers = 0
        self._playing: bool | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="musicbox-link")

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    async def _run(self) -> None:
        link = self._aalink.Link(self.bpm)
        link.enabled = True
        link.start_stop_sync_enabled = True
        log.info("Ableton Link on (offering %.1f BPM)", self.bpm)
        self._ready.set()
        try:
            while not self._stop.is_set():
                self.poll(link)
                await asyncio.sleep(self.poll_s)
        finally:
            link.enabled = False

    def poll(self, link) -> None:
        """Hand on the session's tempo and playing state where they changed."""
        self.peers = int(link.num_peers)
        bpm = float(link.tempo)
        if self.peers and (self.tempo is None or abs(bpm / self.tempo - 1) > self.tolerance):
            self.tempo = bpm
            self.on_tempo(bpm)
        playing = bool(link.playing)
        if self._playing is not None and playing != self._playing:
            self.on_run(playing)
        self._playing = playing
