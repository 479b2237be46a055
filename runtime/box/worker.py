"""The worker process: generates and renders bars ahead into the shared ring.

It loads the bundle, the :class:`~musicbox.runtime.generator.Generator` and the
:class:`~musicbox.runtime.render.Renderer`, then loops:

- a heartbeat thread stamps ``BarRing.beat`` (a counter and a monotonic time) every ``beat_interval_s``
  from the moment the process starts, whatever the main thread is doing (loading, rendering): only a
  frozen process (SIGSTOP, swapped out) stops it; the main thread stamps ``BarRing.mark_progress`` each
  loop turn and bar, so a stuck main thread shows too;
- while playing and the ring has room and fewer than :meth:`WorkerSettings.ahead_for` bars are waiting
  (``ahead_bars``, more at fast tempi and in short meters so that at least ``ahead_s`` seconds are
  buffered), make one bar with :meth:`BarProducer.produce_bar` and publish it, then report
  :class:`Written` (the generator state after the bar, its notes and meter) to the supervisor, *after* publishing, so the supervisor never holds a state for a
  bar that is not in the ring;
- otherwise sleep on the command pipe (no busy loop: paused, the process is idle between heartbeats).

Commands (main -> worker): :class:`Play` (write bars from a given bar number and generator state, with
these controls, under this generation id: used to start, to continue after a restart, to apply a knob
change at the next bar line and for "next" with a new seed), :class:`Pause`, :class:`Stop`. Generator
states cross the pipe as themselves (:class:`~musicbox.runtime.state.GeneratorState`, numpy only), so
the main process never imports the generator (and onnxruntime with it).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from musicbox.config import SynthConfig
from musicbox.errors import MusicBoxError
from musicbox.runtime.box.ring import BarRing, RingSpec, Span
from musicbox.runtime.buffering import bars_ahead
from musicbox.runtime.controls import Controls
from musicbox.runtime.heap import reuse_freed
from musicbox.runtime.meter import COMMON, Meter
from musicbox.runtime.performance import Phrasing
from musicbox.runtime.state import GeneratorState

log = logging.getLogger("musicbox.worker")


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker loads and how far it runs ahead.

    bundle_path: bundle folder. synth: the config's ``[synth]`` (SoundFont, gain, reverb), as ``musicbox
    render`` and ``musicbox bench`` use it. precision: auto | int8 | int8_dynamic | fp32 (a restarted
    worker gets the precision the first one chose, so it skips the self-benchmark). memory_budget_mb: MiB
    of sessions kept, None = all. threads: onnxruntime intra-op threads. sample_rate: Hz. ahead_bars:
    bars written ahead of the playing one. ahead_s: seconds written ahead at least (more bars at fast
    tempi). beat_interval_s: most seconds between heartbeats (each wakes a thread whose caches have gone
    cold, ~0.2 ms of CPU); :meth:`heartbeat_s` keeps four or more beats in the supervisor's hang timeout.
    """

    bundle_path: Path
    synth: SynthConfig
    precision: str = "auto"
    memory_budget_mb: float | None = None
    threads: int = 1
    sample_rate: int = 44100
    ahead_bars: int = 4
    ahead_s: float = 6.0
    beat_interval_s: float = 0.5

    def heartbeat_s(self) -> float:
        """Seconds between heartbeats: ``beat_interval_s``, or less where the hang timeout (a third of
        ``ahead_s``, ``Supervisor.hang_timeout_s``) would hold fewer than four."""
        return min(self.beat_interval_s, self.ahead_s / 12.0)

    def ahead_for(self, tempo_bpm: float, steps_per_bar: int = 16) -> int:
        """Bars of ``steps_per_bar`` steps to keep written ahead at ``tempo_bpm``: ``ahead_bars``, or
        enough for ``ahead_s`` seconds."""
        return bars_ahead(tempo_bpm, self.ahead_bars, self.ahead_s, steps_per_bar)


@dataclass(frozen=True)
class Splice:
    """A knob turned inside bar ``from_bar``: write its rest from grid step ``step`` (a beat line) before
    the bars after it. played: the generator state after the bar as it is playing (its roll and latent
    are kept before the step). rewrite: the model writes the rest again (style, mood, variation, a new
    seed); False: the same notes are only rendered again (tempo), no model call."""

    step: int
    played: GeneratorState
    rewrite: bool


@dataclass(frozen=True)
class Play:
    """Write bars ``from_bar``, ``from_bar + 1``, ... continuing from ``state`` (None = a fresh start
    with ``seed``), for ``controls``, tagged with generation ``gen``. ``seam``: the bars before were
    rendered by someone else or discarded, so release held notes first. ``splice``: start with the rest
    of bar ``from_bar`` from a beat line (:class:`Splice`)."""

    from_bar: int
    state: GeneratorState | None
    controls: Controls
    gen: int
    seed: int = 0
    seam: bool = False
    splice: Splice | None = None


@dataclass(frozen=True)
class Pause:
    """Stop generating until the next :class:`Play`."""


@dataclass(frozen=True)
class Stop:
    """Exit the worker."""


@dataclass(frozen=True)
class Ready:
    """The worker has loaded everything (``load_s`` seconds) and uses ``precision``."""

    pid: int
    precision: str
    load_s: float


@dataclass(frozen=True)
class Written:
    """Bar ``bar`` of generation ``gen`` is in the ring; ``state`` continues after it.

    notes: the bar's notes (``pianoroll.Note``, start in steps from the bar line). gen_s / render_s:
    seconds spent generating / rendering it. meter: the bar's meter (its length in steps). first_step:
    the grid step its audio starts at (0; a splice's beat line after a knob turn). played: the bar as
    the synth played it (``arrangement.Played``: velocities, swing, drums; a splice's from its step on)
    and programs: its General MIDI programs per track, for MIDI out and the saved MIDI file. phrase:
    where the form put it (``performance.Phrasing``: the sleep timer ends on a cadence); stretch: how much
    longer than at its tempo it lasts (the performance's ritardando: its MIDI tempo is ``bpm / stretch``)."""

    bar: int
    gen: int
    state: GeneratorState
    controls: Controls
    notes: list = field(default_factory=list)
    gen_s: float = 0.0
    render_s: float = 0.0
    meter: Meter = COMMON
    first_step: int = 0
    played: list = field(default_factory=list)
    programs: tuple[int, ...] = ()
    phrase: Phrasing | None = None
    stretch: float = 1.0


@dataclass(frozen=True)
class Failed:
    """The worker cannot go on: ``error`` is the MusicBoxError subclass name, ``exit_code`` its code."""

    error: str
    message: str
    exit_code: int


class BarProducer:
    """Generator + Renderer: one call makes the PCM of the next bar."""

    def __init__(self, settings: WorkerSettings):
        from musicbox.runtime.bundle import Bundle
        from musicbox.runtime.generator import Generator
        from musicbox.runtime.render import Renderer

        self.bundle = Bundle.open(
            settings.bundle_path, settings.precision, settings.memory_budget_mb, settings.threads
        )
        self.generator = Generator(self.bundle)
        self.renderer = Renderer(self.bundle.manifest.controls, settings.synth, settings.sample_rate)
        self.rep = self.bundle.manifest.representation.pianoroll()

    def make_state(self, state: GeneratorState | None, seed: int) -> GeneratorState:
        """``state`` reseeded with ``seed`` (None: bar 0 of a fresh piece, in the seed's key)."""
        self.generator.set_state(self.generator.fresh_state(seed) if state is None else state)
        if seed != self.generator.get_state().seed:
            self.generator.reseed(seed)
        return self.generator.get_state()

    def produce_bar(self, state, controls: Controls, wanted=lambda: True):
        """One bar from ``state``: returns (pcm float32 [frames, 2], Bar, the state after the bar), or
        None when ``wanted()`` says, after the generation or between the rendering's events, that the bar
        is no longer wanted (a knob turned meanwhile: its rewrite comes first)."""
        from musicbox.runtime.render import Interrupted

        if state is not self.generator.get_state():
            self.generator.set_state(state)
        bar = self.generator.next_bar(controls)
        if not wanted():
            return None
        try:
            pcm = self.renderer.render_roll(
                bar.roll, controls, bar.meter, self.rep, phrase=bar.phrase, keep_going=wanted
            )
        except Interrupted:
            return None
        return pcm, bar, self.generator.get_state()

    def produce_splice(self, state, controls: Controls, splice: Splice):
        """The rest of the bar after ``state`` from ``splice.step``, written again for ``controls`` (or
        only rendered again): (pcm float32 [frames, 2] from the step, Bar, the state after the bar)."""
        from musicbox.runtime.generator import Bar, Hold
        from musicbox.runtime.meter import crop
        from musicbox.runtime.performance import Phrasing
        from musicbox.runtime.pianoroll import roll_to_notes, transpose

        if splice.rewrite:
            self.generator.set_state(state)
            bar = self.generator.next_bar(controls, Hold.of(splice.played, splice.step))
            after = self.generator.get_state()
        else:
            meter = self.generator.meter(controls)
            if splice.played.roll is None:
                raise MusicBoxError("a splice needs the state of a bar written with its roll")
            roll = transpose(crop(splice.played.roll, meter), splice.played.sounding_key())[None]
            phrase = Phrasing.after(splice.played, self.generator.form(controls))  # as it was phrased
            bar = Bar(state.index, roll, roll_to_notes(roll, self.rep), controls, 0.0, meter, phrase=phrase)
            after = splice.played
            self.generator.set_state(after)
        pcm = self.renderer.render_roll(
            bar.roll, controls, bar.meter, self.rep, from_step=splice.step, phrase=bar.phrase
        )
        return pcm, bar, after

    def meter(self, controls: Controls) -> Meter:
        """The meter the next bar for ``controls`` will be in."""
        return self.generator.meter(controls)

    def seam(self) -> None:
        """The previous bar rendered is not the one before the next: release its held notes."""
        self.renderer.release()

    def close(self) -> None:
        """Free the synth and the sessions."""
        self.renderer.close()
        self.bundle.close()


class _Job:
    """What the worker is writing: the next bar number, its state, controls, generation, the steps of
    its bars (their meter's) and a splice to write first."""

    def __init__(self, play: Play, state, steps: int):
        self.bar, self.state, self.controls, self.gen = play.from_bar, state, play.controls, play.gen
        self.steps = steps
        self.splice = play.splice
        self.first = True  # its first entry is always written whole: every turn is heard


def run_worker(spec: RingSpec, settings: WorkerSettings, conn: Connection) -> None:
    """Entry point of the worker process (multiprocessing target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the supervisor stops us
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    reuse_freed()  # each bar's arrays reuse the last bar's pages (runtime/heap.py)
    ring = BarRing.attach(spec)
    pid = os.getpid()
    ring.mark_progress()
    stop_beating = _start_heartbeat(ring, pid, settings.heartbeat_s())
    start = time.monotonic()
    try:
        producer = BarProducer(settings)
    except MusicBoxError as exc:
        conn.send(Failed(type(exc).__name__, str(exc), exc.exit_code))
        return
    producer.renderer.longest_s = (spec.slot_frames - 64) / settings.sample_rate  # a slot holds a bar
    conn.send(Ready(pid, producer.bundle.precision, time.monotonic() - start))
    try:
        _loop(ring, producer, settings, conn)
    except (EOFError, BrokenPipeError):
        pass  # the main process is gone: nothing to play for
    except MusicBoxError as exc:
        conn.send(Failed(type(exc).__name__, str(exc), exc.exit_code))
    finally:
        stop_beating()
        producer.close()
        ring.close()


def _start_heartbeat(ring: BarRing, pid: int, interval_s: float):
    """Beat now and then every ``interval_s`` seconds on a daemon thread; returns a function that stops it."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            ring.beat(pid)
            if stop.wait(interval_s):
                return

    ring.beat(pid)
    thread = threading.Thread(target=beat, name="musicbox-heartbeat", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join()

    return halt


IDLE_S = 1.0
"""Seconds the loop sleeps on the command pipe while it is far enough ahead (or paused): the next bar is
wanted only when the playing one ends (the ring holds ``ahead_s`` seconds or more), and a command wakes
it at once. Waiting for a free slot only (a rewrite's superseded entries, freed by the player's next
callback), it looks again every :data:`SLOT_POLL_S`."""

SLOT_POLL_S = 0.2
"""Seconds between two looks for a free ring slot while a bar is wanted and none is free."""


def _loop(ring: BarRing, producer: BarProducer, settings: WorkerSettings, conn: Connection):
    job: _Job | None = None
    while True:
        ring.mark_progress()
        wait = IDLE_S
        busy = False
        if job is not None:
            ahead = settings.ahead_for(job.controls.tempo_bpm, job.steps)
            busy = _wants_bar(ring, job, ahead)
            if not busy and job.bar <= ring.playing()[1] + ahead:
                wait = SLOT_POLL_S  # wanted, but no slot is free yet
        if conn.poll(0 if busy else wait):
            message = conn.recv()
            while not isinstance(message, Stop) and conn.poll(0):
                message = conn.recv()  # a knob swept: only its latest position matters
            if isinstance(message, Stop):
                return
            job = _start(message, producer) if isinstance(message, Play) else None
            continue
        if busy and job is not None:
            _write_one(ring, producer, job, conn)


def _wants_bar(ring: BarRing, job: _Job, ahead_bars: int) -> bool:
    """True when the job's next bar is within ``ahead_bars`` of the playing bar and a slot is free; a
    splice is wanted only while its bar still plays (or is yet to)."""
    _, playing_bar, _ = ring.playing()
    if job.splice is not None and job.bar < playing_bar:  # its bar is over: go on after it as played
        job.bar, job.state, job.splice = job.bar + 1, job.splice.played, None
    return job.bar <= playing_bar + ahead_bars and ring.has_room()


def _start(play: Play, producer: BarProducer) -> _Job:
    if play.seam:
        producer.seam()
    return _Job(play, producer.make_state(play.state, play.seed), producer.meter(play.controls).steps)


def _write_one(ring: BarRing, producer: BarProducer, job: _Job, conn: Connection) -> None:
    """Produce, publish and report the job's next bar (or the rest of the playing one first)."""
    t0 = time.perf_counter()
    splice, job.splice = job.splice, None
    if splice is not None:
        pcm, bar, state = producer.produce_splice(job.state, job.controls, splice)
    else:
        wanted = (lambda: True) if job.first else (lambda: not conn.poll(0))
        made = producer.produce_bar(job.state, job.controls, wanted=wanted)
        if made is None:
            return  # a command is waiting (a knob turned): the loop reads it; this bar ahead is dropped
        pcm, bar, state = made
    first = splice.step if splice is not None else 0
    render_s = time.perf_counter() - t0 - bar.gen_seconds
    span = Span.of(bar.meter.beats, bar.meter.steps, first)
    ring.write_bar(job.bar, job.gen, np.ascontiguousarray(pcm, dtype=np.float32), span)
    plan = producer.renderer.last_plan  # the bar as the synth played it: what MIDI out sends
    conn.send(
        Written(
            job.bar,
            job.gen,
            state,
            job.controls,
            bar.notes,
            bar.gen_seconds,
            render_s,
            bar.meter,
            first,
            played=plan.notes,
            programs=plan.programs,
            phrase=bar.phrase,
            stretch=plan.stretch,
        )
    )
    job.bar, job.state, job.first = job.bar + 1, state, False
