"""The box's main loop: owns the ring, the player and the worker process, and keeps them going.

States (:class:`BoxState`), one log line per transition (journald shows them as they are):

- STARTING: the worker loads the bundle and writes the first bars; the stream is already open (silent);
- PLAYING: bars play; knob changes and "next" regenerate from the first not-yet-playing bar;
- PAUSED: the player holds its place (faded out), the worker generates nothing, the loop only ticks;
- RECOVERING: the worker died or hung; a new one is starting (with backoff) while the buffered bars play;
- STOPPING: SIGTERM/SIGINT, long-press on play, or the time limit; everything is closed in order.

Continuation across restarts: the worker reports the generator state after every bar it publishes
(:class:`~musicbox.runtime.box.worker.Written`); a new worker is told to go on from the last published bar
with that state, the same controls and generation, so the music continues rather than starting over.

Hang detection, whatever the worker is doing (loading, rendering, idle): its heartbeat thread stamps the
ring every ``WorkerSettings.heartbeat_s()`` seconds from the moment it starts, so a frozen process
(SIGSTOP) is caught after :attr:`Supervisor.hang_timeout_s`, a third of the seconds of music the worker
keeps buffered (at most ``hang_timeout_s``): detection and a restart fit in what is buffered at any tempo.
A main thread that makes no progress for ``stall_timeout_s`` (a deadlock, an endless load) is caught too.
A hung worker is SIGKILLed and replaced. Workers that die before writing a bar are restarted with
exponential backoff; after ``max_failures`` such deaths in a row the box gives up (exit 1, systemd
restarts the service).

systemd: READY=1 once the first bar plays (or the box starts waiting for a missing audio device), STATUS=
on transitions, WATCHDOG=1 every half ``WATCHDOG_USEC`` only while music is coming out: frames of bars
played since the last ping (not silence after an underrun). Paused, waiting for the audio device to come
back, and starting within ``stall_timeout_s`` count as healthy: those are waits a restart cannot shorten.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import math
import multiprocessing as mp
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait

from musicbox import errors
from musicbox.errors import MusicBoxError
from musicbox.runtime.box.player import PlayedLog, Player, PlayerSettings, StreamState
from musicbox.runtime.box.proc import rss_mb, tree_cpu_s
from musicbox.runtime.box.recorder import Recorder, played_bar
from musicbox.runtime.box.ring import BarRing
from musicbox.runtime.box.status import BoxStatus
from musicbox.runtime.box.worker import (
    Failed,
    Pause,
    Play,
    Ready,
    Splice,
    Stop,
    WorkerSettings,
    Written,
    run_worker,
)
from musicbox.runtime.buffering import ring_slots, slot_frames
from musicbox.runtime.controls import Button, Controls, key_only, nearest_style, rewrites
from musicbox.runtime.form import keep, renew
from musicbox.runtime.heap import reuse_freed
from musicbox.runtime.midi import join_turn
from musicbox.runtime.sleep import Sleep, SleepSettings, SleepTimer, fade_db
from musicbox.runtime.state import GeneratorState

log = logging.getLogger("musicbox.box")

PRELOAD = ["musicbox.runtime.box.worker", "musicbox.runtime.generator", "musicbox.runtime.render"]
"""Modules the fork server imports once, so a restarted worker starts in a fraction of a second."""


class BoxState(enum.Enum):
    """What the box is doing (see the module docstring)."""

    STARTING = "starting"
    PLAYING = "playing"
    PAUSED = "paused"
    RECOVERING = "recovering"
    STOPPING = "stopping"


@dataclass(frozen=True)
class Turn:
    """A knob turn (or next) heard: heard_s, seconds from its being posted to the first frame written for
    it leaving the player's callback; made_s, the seconds the worker took to write (generate and render)
    that first entry; step, the grid step it took over at (0: a bar line)."""

    heard_s: float
    made_s: float
    step: int


@dataclass(frozen=True)
class Recall:
    """A request to play on with these ``controls`` and this generator ``seed`` (a preset recalled)."""

    controls: Controls
    seed: int


@dataclass(frozen=True)
class SupervisorSettings:
    """Supervision timings, all in seconds.

    hang_timeout_s: most seconds without a heartbeat before a worker counts as hung (the box uses a third of
    the buffered seconds when that is less). stall_timeout_s: seconds the worker's main thread may make no
    progress (loading, and a first bar that decodes SoundFont samples, included) before it counts as
    stuck. backoff_s: first and largest wait before restarting a worker that died before writing a bar.
    max_failures: such deaths in a row before giving up. tick_s: main-loop period while starting,
    recovering or fading for the sleep timer; 5x longer while the loop only waits (paused, or playing
    with neither): every wake-up costs CPU, and a knob turn, a worker's message or its death wakes the
    loop at once anyway. stream_tick_s: the period while it feeds the web remote's stream to a listener
    (each tick hands it the audio played since the last; the page plays it 0.3 s ahead).
    stats_interval_s: period of the stats file and STATUS= line (made only when one of them is asked for).
    proc_stats_s: the status's figures read from /proc (memory, CPU seconds) are this many seconds old
    at most.
    """

    hang_timeout_s: float = 5.0
    stall_timeout_s: float = 60.0
    backoff_s: tuple[float, float] = (0.2, 5.0)
    max_failures: int = 5
    tick_s: float = 0.1
    stream_tick_s: float = 0.2
    stats_interval_s: float = 1.0
    proc_stats_s: float = 10.0


@dataclass
class WorkerHandle:
    """One worker process and its pipe end; ``started`` is time.monotonic() at spawn, seconds."""

    process: mp.process.BaseProcess
    conn: Connection
    started: float
    ready: bool = False
    wrote: bool = False


@dataclass(frozen=True)
class Recovery:
    """One worker replacement, in seconds. detect_s: from the lost worker's last heartbeat to the box
    deciding to replace it. ready_s: from that decision to the successor having loaded the bundle.
    first_bar_s: from the decision to the successor's first bar in the ring (includes waiting for a free
    ring slot while the buffer is full)."""

    detect_s: float
    ready_s: float | None
    first_bar_s: float

    def as_dict(self) -> dict:
        return {k: None if v is None else round(v, 3) for k, v in vars(self).items()}


class Supervisor:
    """The playing box. Call :meth:`run`; other threads use :meth:`set_controls` and :meth:`post`."""

    def __init__(
        self,
        worker: WorkerSettings,
        player: PlayerSettings,
        recorder: Recorder | None,
        controls: Controls | None = None,
        settings: SupervisorSettings = SupervisorSettings(),
        min_bpm: float = 60.0,
        notifier=None,
        max_bpm: float = 160.0,
        style_names: tuple[str, ...] = (),
        style_meters: tuple[tuple[str, ...], ...] = (),
        sleep: SleepSettings | None = None,
    ):
        self.worker_settings = worker
        self.sleep_settings = sleep or SleepSettings()  # the config's [sleep] (runtime/sleep.py)
        self.sleep_timer: SleepTimer | None = None  # the running sleep timer
        self._sleep_db = 0.0  # dB the timer has taken off the listener's volume
        self._last_bar: tuple[float, float, float] | None = None  # the timer's last bar: start, s, dB
        self.slept = ""  # what the last timer that ran out did: "pause" or "poweroff"
        self.min_bpm, self.max_bpm = min_bpm, max_bpm
        self.followed_bpm: float | None = None  # the tempo of a MIDI clock the box follows (midiout.py)
        self.settings = settings
        self.controls = controls or Controls()
        self.recorder = recorder
        self.notifier = notifier
        self.state = BoxState.STARTING
        self.style_names = tuple(style_names)  # the bundle's styles in knob order
        self.style_meters = tuple(tuple(m) for m in style_meters)  # each style's meters, its own first
        slots = ring_slots(worker.ahead_bars, worker.ahead_s, max_bpm)
        self.ring = BarRing.create(slots, slot_frames(player.sample_rate, min_bpm))
        self.hang_timeout_s = min(settings.hang_timeout_s, worker.ahead_s / 3.0)
        self.player = Player(self.ring, player)
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        self._wake_lock = threading.Lock()
        os.set_blocking(self._wake_w, False)
        self._init_counters()

    def _init_counters(self) -> None:
        self.gen = 0
        self.worker: WorkerHandle | None = None
        self.worker_restarts = 0
        self.failures = 0  # workers in a row that died before writing a bar
        self.recoveries: list[Recovery] = []
        self._detect_s = 0.0  # the pending recovery's detection time, seconds
        self._ready_s: float | None = None  # and its successor's time to Ready
        self.bars_written = 0
        self._resume = Play(0, None, self.controls, self.gen, seed=0)
        self._states: dict[int, GeneratorState] = {}  # bar -> generator state after it (current generation)
        self._bar_info: dict[tuple[int, int], Written] = {}
        self.meter = ""  # the meter of the bar playing ("" before the first)
        self._played_gen: dict[int, int] = {}  # bar -> generation of its entry that played last
        self._marks_read = 0  # of the player's log marks
        self._log_read = 0  # log frames handed to the recorder / stream
        self._bar_start = -1  # log frame where the bar playing began
        self._bar_info_playing: Written | None = None  # what the bar playing was written as, last
        self._bar_info_first: Written | None = None  # and as it began
        self._bar_played: list = []  # its notes as the synth played them (splices joined at their step)
        self._silence_logged = False
        self._posted_at = 0.0  # when the event being handled was posted (time.monotonic(), seconds)
        self._pending_turn: tuple[int, float] | None = None  # (generation, posted at) not yet heard
        self.splice_frames: collections.deque[int] = collections.deque(maxlen=4096)  # player log frames
        self.turns: collections.deque[Turn] = collections.deque(maxlen=4096)
        """Seconds from each knob turn (or next) being posted to the first frame written for it leaving
        the player's callback (add the stream's output latency for the speaker)."""
        self._lost_at: float | None = None
        self._restart_at = 0.0
        self._ready_sent = False
        self._watchdog_s = _watchdog_interval()
        self._last_ping = self._last_stats = 0.0
        self._frames_at_ping = 0
        self._on_status = None  # callable(BoxStatus), every stats_interval_s and at the stop (run's)
        # _proc_figures's last reading: when (monotonic s), of which worker, the figures
        self._proc_cache: tuple[float, int | None, dict] = (-math.inf, None, {})
        self._on_audio = None  # callable(pcm [frames, channels] float32), the audio as played (run's)
        self._audio_wanted = None  # callable() -> bool: whether _on_audio has a listener now (run's)
        self.final_stats: BoxStatus | None = None  # stats() as the box stopped

    # ---- other threads ------------------------------------------------------------------------------

    def set_controls(self, controls: Controls) -> None:
        """New knob positions (any thread); heard from the next bar line."""
        self.post(controls)

    def bar_info(self, bar: int, gen: int) -> Written | None:
        """What the worker wrote as bar ``bar`` of generation ``gen`` (notes as played, controls, meter),
        while it is buffered or playing (any thread: MIDI out reads it as the bar starts playing)."""
        return self._bar_info.get((bar, gen))

    def post(self, event) -> None:
        """Queue a :class:`~musicbox.runtime.controls.Button`, :class:`Controls` or :class:`Recall` for the
        main loop; wake it (any
        thread)."""
        self._events.put((time.monotonic(), event))
        with self._wake_lock:  # never a write to the pipe once closed (its number may name another file)
            if self._wake_w < 0:
                return  # the box has stopped (a remote's late hand-on): nothing is listening
            with contextlib.suppress(BlockingIOError):  # a full pipe already holds wake-ups
                os.write(self._wake_w, b"x")

    # ---- main loop ----------------------------------------------------------------------------------

    def run(self, seconds: float | None = None, *, on_status=None, on_audio=None, audio_wanted=None) -> None:
        """Play until SHUTDOWN (or ``seconds`` have passed); raises the worker's fatal MusicBoxError.
        ``on_status(BoxStatus)`` is called every ``stats_interval_s`` and at the stop (the ``--stats``
        file, the terminal view, the remote); ``on_audio(pcm)`` with the audio as it was played, before
        the volume, every tick (the web remote's stream). ``audio_wanted()``: whether ``on_audio`` has
        anyone to hand it to now (the stream's listeners; None: always); while it says no, the loop
        ticks as slowly as without ``on_audio``."""
        self._on_status, self._on_audio, self._audio_wanted = on_status, on_audio, audio_wanted
        reuse_freed()  # a bar's copies for the recorder and the stream reuse the last one's pages
        deadline = None if seconds is None else time.monotonic() + seconds
        self._notify(f"STATUS=starting (loading {self.worker_settings.bundle_path})")
        self._adopt_queued_controls()
        self._spawn()
        try:
            self.player.start()
            while self.state is not BoxState.STOPPING:
                self._tick()
                if deadline is not None and time.monotonic() >= deadline:
                    self._transition(BoxState.STOPPING, f"{seconds:g} s played")
        finally:
            self._shutdown()

    def _adopt_queued_controls(self) -> None:
        """Knob positions delivered before the start become the starting controls (no regeneration)."""
        pending = []
        while not self._events.empty():
            at, event = self._events.get_nowait()
            if isinstance(event, Controls):
                self.controls = event
            else:
                pending.append((at, event))
        for event in pending:
            self._events.put(event)
        self._resume = replace(self._resume, controls=self.controls)

    def _tick(self) -> None:
        self._sleep()
        self._handle_events()
        self._drain_worker()
        now = time.monotonic()
        self._check_worker(now)
        self.player.check(now)
        self._follow_player()
        self._wind_down(now)
        self._housekeeping(now)

    def _sleep(self) -> None:
        """Wait for a worker message, a worker death, a wake-up or the tick (no busy loop)."""
        handles: list[Connection | int] = [self._wake_r]
        if self.worker is not None:
            handles += [self.worker.conn, self.worker.process.sentinel]
        if self._wake_r in wait(handles, self._tick_s()):
            os.read(self._wake_r, 4096)

    def _tick_s(self) -> float:
        """Seconds until the next tick when nothing wakes the loop (:class:`SupervisorSettings`)."""
        if self.state is BoxState.PAUSED:
            return 5 * self.settings.tick_s
        if self.state is BoxState.PLAYING and self.sleep_timer is None:
            feeding = self._on_audio is not None and (self._audio_wanted is None or self._audio_wanted())
            return self.settings.stream_tick_s if feeding else 5 * self.settings.tick_s
        return self.settings.tick_s

    def _transition(self, new: BoxState, why: str) -> None:
        """Move to ``new``; STOPPING is final (a worker dying as the box stops must not undo the stop)."""
        if new is self.state or self.state is BoxState.STOPPING:
            return
        log.info("state %s -> %s: %s", self.state.name, new.name, why)
        self.state = new
        self._notify(f"STATUS={new.value}: {why}")

    # ---- events -------------------------------------------------------------------------------------

    def _handle_events(self) -> None:
        """Handle what other threads posted, in order; knob positions are coalesced: of positions posted
        one after the other only the latest counts (a swept knob makes one rewrite per tick, not one per
        step of the sweep)."""
        events: list = []
        while True:
            try:
                at, event = self._events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, Controls) and events and isinstance(events[-1][1], Controls):
                events[-1] = (events[-1][0], event)  # the first turn's time: latency counts from it
            else:
                events.append((at, event))
        for at, event in events:
            self._posted_at = at
            self._handle(event)

    def _handle(self, event) -> None:
        if isinstance(event, Controls):
            if self.sleep_timer is not None:  # a turn during the wind-down: calm from there
                self.sleep_timer = replace(self.sleep_timer, knobs=event)
            self._change(event, "controls")
        elif isinstance(event, Sleep):
            self._set_sleep_timer(event.minutes)
        elif isinstance(event, Recall):
            self._change(event.controls, "recall", seed=event.seed)
        elif event is Button.NEXT:
            self._change(self.controls, "next", seed=random.randrange(1 << 31))
        elif event is Button.KEEP:
            self._change(self.controls, "keep", form=keep)
        elif event is Button.NEW:
            self._change(self.controls, "new tune", form=renew)
        elif event is Button.PLAY_PAUSE:
            self._toggle_pause()
        elif event is Button.SAVE and self.recorder is not None:
            self._save()
        elif event is Button.SHUTDOWN:
            self._transition(BoxState.STOPPING, "stop requested")
        elif event is Button.SLEEP:
            self._set_sleep_timer(None)
        elif event in (Button.VOLUME_UP, Button.VOLUME_DOWN):
            db = self.player.step_volume(1 if event is Button.VOLUME_UP else -1)
            log.info("volume %+.0f dB", db)

    def _change(self, controls: Controls, why: str, seed: int | None = None, form=None) -> None:
        """Play ``controls`` (a new ``seed`` for next; ``form(state)``, ``runtime.form.keep`` or ``renew``,
        applied to the state the music continues from) as soon as the music allows: from the next beat
        line of the playing bar (:meth:`_splice_at`), else from the next bar line (a meter change, a form
        action, the bar's last beat). The worker rewrites from there under a new generation; the player
        takes each rewritten entry at the first beat or bar line after it is ready, and what was written
        before plays until then (no silence)."""
        if controls == self.controls and seed is None and form is None:
            return
        old = self.controls
        self.controls = controls
        self.gen += 1
        _, playing_bar, playing_gen = self.ring.playing()
        played = self._bar_info.get((playing_bar, playing_gen))
        if seed is None:  # the seed asked for last (a next just before this turn stays)
            seed = self._resume.seed
        # a key turn alone splices nothing: the generator moves the key at the next phrase start
        step = self._splice_at(played, controls) if form is None and not key_only(old, controls) else None
        if step is not None and played is not None:
            before = self._state_before(playing_bar)
            rewrite = seed != played.state.seed or rewrites(old, controls)
            splice = Splice(step, played.state, rewrite)
            self._resume = Play(playing_bar, before, controls, self.gen, seed=seed, splice=splice)
            self._states = {b: s for b, s in self._states.items() if b < playing_bar}
            where = f"bar {playing_bar} step {step}" + ("" if rewrite else " (rendered again)")
        else:
            state = played.state if played is not None else None
            if state is None and playing_bar >= 0:
                state = self._states.get(playing_bar)
            from_bar = playing_bar + 1 if state is not None else 0
            if form is not None and state is not None:
                state = form(state)
            self._states = {b: s for b, s in self._states.items() if b < from_bar}
            self._resume = Play(from_bar, state, controls, self.gen, seed=seed, seam=True)
            where = f"bar {from_bar}"
        self._pending_turn = (self.gen, self._posted_at)
        log.info("%s: %s from %s (generation %d)", why, _describe(controls), where, self.gen)
        if self.state is not BoxState.PAUSED:
            self._send(self._resume)

    def _splice_at(self, played: Written | None, controls: Controls) -> int | None:
        """The beat line of the playing bar a change to ``controls`` can start at: the first after the
        output's position, if the bar has one left and stays in its meter; else None (the next bar)."""
        if played is None or self.player.paused or played.state.roll is None:
            return None
        if self._meter_name(controls) not in ("", played.meter.name):
            return None
        now = self.player.bar_step()
        for beat in played.meter.beats:
            if beat > now:
                return beat
        return None

    def _meter_name(self, controls: Controls) -> str:
        """The meter ``controls`` ask for ("" when the styles' meters are unknown: the bar's own)."""
        if controls.meter or not self.style_meters:
            return controls.meter or ""
        return self.style_meters[nearest_style(controls.style, len(self.style_meters))][0]

    def _state_before(self, bar: int):
        """The generator state after bar ``bar - 1`` as it played (None before the first bar)."""
        gen = self._played_gen.get(bar - 1)
        info = self._bar_info.get((bar - 1, gen)) if gen is not None else None
        if info is not None:
            return info.state
        return self._states.get(bar - 1)

    def _toggle_pause(self) -> None:
        if self.state is BoxState.PAUSED:
            self.player.resume()
            self._send(replace(self._resume, seam=False))
            self._transition(BoxState.PLAYING if self.ring.bars_played else BoxState.STARTING, "play")
        elif self.state in (BoxState.PLAYING, BoxState.STARTING, BoxState.RECOVERING):
            self.player.pause()
            self._send(Pause())
            self._transition(BoxState.PAUSED, "pause")

    # ---- the sleep timer (runtime/sleep.py) -------------------------------------------------------

    def sleep_left(self, now: float | None = None) -> float | None:
        """Seconds until the sleep timer runs out (None: no timer)."""
        timer = self.sleep_timer
        return None if timer is None else max(0.0, timer.left(time.monotonic() if now is None else now))

    def _set_sleep_timer(self, minutes: float | None) -> None:
        """Start a timer of ``minutes``, or end the running one (0); None, the sleep button: a timer of
        ``[sleep] minutes``, or end the running one."""
        if minutes is None and self.sleep_timer is not None:
            minutes = 0
        if self.sleep_timer is not None:  # the listener's volume back
            self.player.set_volume(self.player.volume_db - self._sleep_db)
        self.sleep_timer, self._sleep_db, self._last_bar = None, 0.0, None
        if minutes == 0:
            log.info("sleep timer off")
            return
        minutes = self.sleep_settings.minutes if minutes is None else float(minutes)
        self.sleep_timer = SleepTimer.start(self.sleep_settings, minutes, time.monotonic(), self.controls)
        log.info("sleep in %g min", minutes)

    def _wind_down_bar(self, info: Written, at: float) -> None:
        """A bar began at ``at`` while a timer runs: the last one if it is the cadence to end on; else,
        at a phrase's end, the knobs move toward calm from the next bar line (a phrase start, so the
        form keeps its phrases)."""
        timer = self.sleep_timer
        if timer is None or self._last_bar is not None:
            return
        bar_s = info.controls.bar_seconds(info.meter.steps) * info.stretch
        phrase = info.phrase
        cadence = phrase is None or phrase.cadence
        if timer.is_last_bar(at, bar_s, cadence, bar_s * (phrase.bars if phrase else 1)):
            self._last_bar = (at, bar_s, self._sleep_db)
            why = "a cadence" if cadence else "time is up"
            log.info("sleep: bar %d is the last (%s), fading out", info.bar, why)
            return
        calm = timer.controls(at)
        if cadence and calm != self.controls:
            self._change(calm, "sleep", form=lambda state: state)  # from the bar line
            self._pending_turn = None  # not a listener's turn: no turn latency to count

    def _wind_down(self, now: float) -> None:
        """Softer as the timer runs down, the fade over its last bar, then pause (or stop to power off)."""
        timer = self.sleep_timer
        if timer is None or self.state is not BoxState.PLAYING:
            return
        if self._last_bar is None:
            offset = timer.softer_db(now)
        else:
            start, seconds, db = self._last_bar
            if now >= start + seconds:
                then = self.sleep_settings.then
                self._set_sleep_timer(0)
                self.slept = then
                if then == "poweroff":
                    self._transition(BoxState.STOPPING, "sleep timer: power off")
                else:
                    self._toggle_pause()
                return
            offset = fade_db((now - start) / seconds, db)
        base = self.player.volume_db - self._sleep_db
        self._sleep_db = self.player.set_volume(base + offset) - base

    # ---- the worker ---------------------------------------------------------------------------------

    def _spawn(self) -> None:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=run_worker, args=(self.ring.spec, self.worker_settings, child), name="musicbox-worker"
        )
        process.start()
        child.close()
        self.worker = WorkerHandle(process, parent, time.monotonic())
        log.info("worker pid %d started", process.pid)
        if self.state is not BoxState.PAUSED:
            self._send(self._resume)

    def _send(self, message) -> None:
        if self.worker is None:
            return
        self._send_to(self.worker, message)

    def _drain_worker(self) -> None:
        worker = self.worker
        while worker is not None:
            try:
                if not worker.conn.poll(0):
                    return
                message = worker.conn.recv()
            except (EOFError, OSError):
                return
            self._on_message(worker, message)

    def _on_message(self, worker: WorkerHandle, message) -> None:
        if isinstance(message, Ready):
            worker.ready = True
            if self._lost_at is not None:
                self._ready_s = time.monotonic() - self._lost_at
            if message.precision != self.worker_settings.precision:
                self.worker_settings = replace(self.worker_settings, precision=message.precision)
            log.info("worker pid %d ready in %.2f s (%s)", message.pid, message.load_s, message.precision)
        elif isinstance(message, Written):
            self._on_written(worker, message)
        elif isinstance(message, Failed):
            self._transition(BoxState.STOPPING, f"worker failed: {message.message}")
            raise getattr(errors, message.error, MusicBoxError)(message.message)

    def _on_written(self, worker: WorkerHandle, w: Written) -> None:
        self.bars_written += 1
        if not worker.wrote:
            worker.wrote = True
            self.failures = 0
            if self._lost_at is not None:
                rec = Recovery(self._detect_s, self._ready_s, time.monotonic() - self._lost_at)
                self.recoveries.append(rec)
                self._lost_at = None
                self._transition(
                    BoxState.PLAYING,
                    f"worker recovered: detected in {rec.detect_s:.2f} s, first bar {rec.first_bar_s:.2f} s later",
                )
        self._bar_info[(w.bar, w.gen)] = w
        if w.gen != self.gen:
            return
        self._states[w.bar] = w.state
        self._resume = Play(w.bar + 1, w.state, self.controls, self.gen, seed=w.state.seed, seam=True)

    def _check_worker(self, now: float) -> None:
        if self.state is BoxState.STOPPING:
            return  # a worker the stop's signal took is reaped by the stop, not replaced
        worker = self.worker
        if worker is None:
            if now >= self._restart_at:
                self._spawn()
            return
        problem = self._worker_problem(worker, now)
        if problem:
            self._replace(worker, problem, now)

    def _worker_problem(self, worker: WorkerHandle, now: float) -> str:
        """Why the worker must be replaced ("" when it is fine)."""
        pid = worker.process.pid
        if not worker.process.is_alive():
            return f"worker pid {pid} died (exit {worker.process.exitcode})"
        silent = now - self._last_beat(worker)
        if silent > self.hang_timeout_s:
            return f"worker pid {pid} hung (no heartbeat for {silent:.1f} s)"
        stalled = now - max(worker.started, self.ring.progress_time())
        if stalled > self.settings.stall_timeout_s:
            return f"worker pid {pid} stuck (its main thread made no progress for {stalled:.0f} s)"
        return ""

    def _last_beat(self, worker: WorkerHandle) -> float:
        """Monotonic time of ``worker``'s last heartbeat, or of its start before its first (its predecessor
        is reaped before it starts, so older stamps are not its own)."""
        return max(worker.started, self.ring.heartbeat()[1])

    def _replace(self, worker: WorkerHandle, problem: str, now: float) -> None:
        """Kill and reap the worker, then schedule its successor (backoff if it never wrote a bar)."""
        self._drain_worker()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)
        worker.conn.close()
        self.worker = None
        self.worker_restarts += 1
        if self._lost_at is None:
            self._lost_at = now
            self._detect_s = max(0.0, now - self._last_beat(worker))
            self._ready_s = None
        delay = 0.0
        if not worker.wrote:
            self.failures += 1
            if self.failures > self.settings.max_failures:
                self._transition(BoxState.STOPPING, problem)
                raise MusicBoxError(f"{problem}; {self.failures} workers in a row failed, giving up")
            lo, hi = self.settings.backoff_s
            delay = min(lo * 2 ** (self.failures - 1), hi)
        self._restart_at = now + delay
        log.warning("%s; restarting it in %.2f s", problem, delay)
        if self.state is not BoxState.PAUSED:
            self._transition(BoxState.RECOVERING, f"{problem}; restarting in {delay:.2f} s")
        else:
            log.warning("%s (paused); restarting in %.2f s", problem, delay)
        if delay == 0.0:
            self._spawn()

    # ---- the played side ----------------------------------------------------------------------------

    def _follow_player(self) -> None:
        """Follow what the player played (its log): each bar as it began and each splice, the audio to
        the web stream as it was played and each finished bar to the recorder; leave STARTING."""
        played = self.player.log
        while self._marks_read < played.n_marks:
            i = self._marks_read % PlayedLog.MARKS
            frame, _entry, bar, gen, step = (int(v) for v in played.marks[i])
            at = float(played.mark_times[i])
            self._marks_read += 1
            info = self._bar_info.get((bar, gen))
            if step == 0:
                self._finish_bar(frame)
                self._bar_start, self._bar_info_playing, self._bar_info_first = frame, info, info
                self._bar_played = list(info.played) if info is not None else []
                if self.state is BoxState.STARTING:
                    self._transition(BoxState.PLAYING, "first bar playing")
                if info is not None:
                    self.meter = info.meter.name
                    self._wind_down_bar(info, at)
            else:
                self.splice_frames.append(frame)
                if info is not None:
                    self._bar_info_playing = info
                    self._bar_played = join_turn(self._bar_played, info.played, step)
            self._played_gen[bar] = gen
            turn = self._pending_turn
            if turn is not None and gen >= turn[0]:
                made = info.gen_s + info.render_s if info is not None else 0.0
                self.turns.append(Turn(max(0.0, at - turn[1]), made, step))
                self._pending_turn = None
            self._bar_info = {k: v for k, v in self._bar_info.items() if k[0] >= bar - 1}
            self._states = {b: s for b, s in self._states.items() if b >= bar - 1}
            self._played_gen = {b: g for b, g in self._played_gen.items() if b >= bar - 1}
        if self._on_audio is not None and played.written > self._log_read:
            start = max(self._log_read, played.written - len(played.pcm))
            self._on_audio(played.read(start, played.written))
        self._log_read = played.written

    def _finish_bar(self, end: int) -> None:
        """The bar that began at log frame ``_bar_start`` ended at ``end``: hand it to the recorder, with
        the notes and controls it ended with (a splice's Written holds the whole bar's notes)."""
        if self.recorder is None or self._bar_start < 0 or end <= self._bar_start:
            return
        pcm, info, turn = self._bar_so_far(end)
        self.recorder.add_bar(pcm, info.notes if info else [], info, turn, self._bar_played)

    def _bar_so_far(self, end: int):
        """(PCM, the Written it ended with, the turn inside it) of the bar playing, up to log frame
        ``end``."""
        played = self.player.log
        start = max(self._bar_start, end - len(played.pcm))
        info, first = self._bar_info_playing, self._bar_info_first
        turn = None
        if info is not None and first is not None and info.first_step > 0:
            turn = (info.first_step, first.controls)
        return played.read(start, end), info, turn

    def _save(self) -> None:
        """SAVE: the recent music up to now, the bar playing as far as it has played included."""
        if self.recorder is None:
            return
        self._follow_player()  # bars that ended since the last tick reach the recorder first
        playing = None
        end = self.player.log.written
        if self._bar_start >= 0 and end > self._bar_start:
            pcm, info, turn = self._bar_so_far(end)
            playing = (pcm, played_bar(pcm, info.notes if info else [], info, turn, self._bar_played))
        self.recorder.save(playing)

    def _housekeeping(self, now: float) -> None:
        waiting = self.player.state is StreamState.LOST
        if (self.state is BoxState.PLAYING or waiting) and not self._ready_sent:
            self._ready_sent = True
            self._notify("READY=1")
        if self._watchdog_s and now - self._last_ping >= self._watchdog_s and self.healthy(now):
            self._last_ping = now
            self._frames_at_ping = self.player.frames_played
            self._notify("WATCHDOG=1")
        wanted = self._on_status is not None or self.notifier is not None
        if wanted and now - self._last_stats >= self.settings.stats_interval_s:
            self._last_stats = now
            stats = self.stats()
            if self._on_status is not None:
                self._on_status(stats)
            self._notify(f"STATUS={stats.line()}")

    def healthy(self, now: float | None = None) -> bool:
        """Whether to feed the watchdog: music came out since the last ping, or the box waits on purpose
        (paused; the audio device missing and being retried; the first worker loading within its time)."""
        now = time.monotonic() if now is None else now
        if self.state is BoxState.PAUSED or self.player.state is StreamState.LOST:
            return True
        if not self.player.healthy():
            return False
        silent = self.player.silent_for(now)
        if silent > self.worker_settings.ahead_s:
            if not self._silence_logged:
                self._silence_logged = True
                log.error(
                    "playing silence for %.1f s, longer than the %.1f s the box buffers: no bar is coming "
                    "(the watchdog is no longer fed, so systemd restarts the box)",
                    silent,
                    self.worker_settings.ahead_s,
                )
            return False
        self._silence_logged = False
        if self.state is BoxState.STARTING:
            worker = self.worker
            return worker is not None and self._worker_problem(worker, now) == ""
        return self.player.frames_played > self._frames_at_ping

    def stats(self) -> BoxStatus:
        """The box's status now (:class:`~musicbox.runtime.box.status.BoxStatus`)."""
        worker = self.worker
        rec = self.recorder
        turns = sorted(t.heard_s for t in self.turns)
        return BoxStatus(
            state=self.state.value,
            worker_pid=worker.process.pid if worker is not None else None,
            bars_played=self.ring.bars_played,
            splices=self.ring.splices,
            bars_written=self.bars_written,
            underruns=self.player.underruns,
            silence_s=round(self.player.silent_frames / self.player.settings.sample_rate, 3),
            xruns=self.player.xruns,
            worker_restarts=self.worker_restarts,
            last_recovery_s=self.recoveries[-1].first_bar_s if self.recoveries else None,
            last_recovery=self.recoveries[-1].as_dict() if self.recoveries else None,
            hang_timeout_s=round(self.hang_timeout_s, 2),
            audio_reopens=self.player.reopens,
            audio_state=self.player.state.value,
            **self._proc_figures(worker.process.pid if worker is not None else None),
            controls=self.controls,
            meter=self.meter,
            volume_db=self.player.volume_db,
            generation=self.gen,
            seed=self._resume.seed,
            saves=rec.saves if rec is not None else 0,
            save_failures=rec.failures if rec is not None else 0,
            last_save=rec.last_event if rec is not None else "",
            turn_ms_p95=round(1e3 * turns[int(0.95 * (len(turns) - 1))], 1) if turns else None,
            sleep_left_s=None if (left := self.sleep_left()) is None else round(left, 1),
        )

    def _proc_figures(self, worker_pid: int | None) -> dict:
        """The status's figures read from /proc (resident memory, the box's CPU seconds): a dozen files
        read at most every ``proc_stats_s`` seconds (or when the worker changes), not every status."""
        now = time.monotonic()
        at, pid, figures = self._proc_cache
        if pid != worker_pid or now - at >= self.settings.proc_stats_s:
            figures = {
                "rss_mb": rss_mb(os.getpid()),
                "worker_rss_mb": rss_mb(worker_pid),
                "box_cpu_s": round(tree_cpu_s(), 2),
            }
            self._proc_cache = (now, worker_pid, figures)
        return figures

    def _notify(self, line: str) -> None:
        if self.notifier is not None:
            self.notifier.notify(line)

    def _shutdown(self) -> None:
        """Stop the worker, the stream and the recorder; free the ring."""
        self._transition(BoxState.STOPPING, "shutting down")
        self._notify("STOPPING=1")
        worker, self.worker = self.worker, None
        if worker is not None:
            self._send_to(worker, Stop())
            worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.conn.close()
        self.player.close()
        if self.recorder is not None:
            self.recorder.wait()
        self._proc_cache = (-math.inf, None, {})  # the last status reads /proc afresh
        self.final_stats = self.stats()
        if self._on_status is not None:
            self._on_status(self.final_stats)
        self.ring.close()
        with self._wake_lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_w = -1

    @staticmethod
    def _send_to(worker: WorkerHandle, message) -> None:
        with contextlib.suppress(OSError):  # it died: _check_worker sees the sentinel and restarts it
            worker.conn.send(message)


def _watchdog_interval() -> float:
    """Half of systemd's WATCHDOG_USEC in seconds (0 when the watchdog is off or not for this pid)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return 0.0
    return int(usec) / 2e6


def _describe(c: Controls) -> str:
    meter = c.meter or "of the style"
    return f"style {c.style:.2f} tempo {c.tempo_bpm:.0f} BPM mood {c.mood:+.2f} meter {meter}"
