"""Notes -> stereo PCM through FluidSynth (pyfluidsynth), one bar per call.

Design of the bar-by-bar contract: :meth:`Renderer.render_bar` returns exactly one bar of audio and the
synth keeps its state between calls. A note-off that falls at or after the bar end (a note whose
duration runs past the bar, or one reaching the bar line) is kept pending and sent in the call that
renders its time, converted with *that* bar's tempo. A note tied over the bar line arrives in the next bar
as a note at step 0 whose ``(track, pitch)`` is listed in ``ties`` (a ``HELD`` cell at step 0 of the
roll, see :func:`arrangement.bar_notes` and :meth:`Renderer.render_roll`): if that note is still
sounding it is extended, not struck again; otherwise it is struck. So a caller may pass bar-local notes
plus ties (what the generator produces), or notes whose durations run past the bar; not both for the
same note.

Samples: ``fluid_synth_write_float`` (through the ctypes handle pyfluidsynth loaded) writes straight
into the float32 ``[frames, 2]`` output, between the bar's events (sample-accurate placement up to
FluidSynth's 64-frame control block, 1.5 ms at 44.1 kHz). Against pyfluidsynth's ``get_samples``
(dithered int16 in a new bytes object per call, then a float conversion), side by side on the same bars:
CPU real-time factor 0.0044 vs 0.0055, and no 16-bit clipping. No per-sample Python objects are made.

Speed (target, docs/design.md: synth real-time factor <= 0.02 on one thread): chorus off, linear interpolation,
polyphony 64, one synth thread, dynamic sample loading (an .sf3 is decoded only for the presets used,
which keeps start-up well under a second and RSS small). Reverb is FluidSynth's own.

Gain, reverb level and SoundFont have one source, the config's ``[synth]`` table
(``firmware_config/musicbox.toml``, :class:`musicbox.config.SynthConfig`): the box's worker, ``musicbox
render`` and ``musicbox bench`` all pass it here, so what is rendered offline or measured is what the
box plays (tests/test_render.py checks it).
Measured with :func:`measure_synth_rtf` (32 bars at 120 BPM, MuseScore_General_Lite.sf3, reverb on):
CPU real-time factor p50 0.004..0.012, p95 0.005..0.016 across the five shipped styles.
"""

from __future__ import annotations

import ctypes
import dataclasses
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from musicbox.errors import MusicBoxError, SoundFontError
from musicbox.runtime.arrangement import DRUM_CHANNEL, Arranger, BarPlan, Played, bar_notes
from musicbox.runtime.controls import Controls
from musicbox.runtime.loudness import DEFAULT_LEVEL, Leveler, LevelSettings
from musicbox.runtime.meter import COMMON, Meter
from musicbox.runtime.performance import Phrasing
from musicbox.runtime.pianoroll import DEFAULT, Note, Representation
from musicbox.runtime.soundfont import find_soundfont
from musicbox.targets import target

if TYPE_CHECKING:
    from musicbox.config import SynthConfig
    from musicbox.runtime.manifest import ControlsInfo

INTERPOLATION = {"none": 0, "linear": 1, "4th": 4, "7th": 7}
"""FluidSynth interpolation methods (``fluid_interp``): linear is the measured speed/quality choice."""

_PANS = (72, 52, 64)  # CC10 of melody, harmony, bass: a little stereo width
_REVERB_ROOM = (0.45, 0.3, 0.9)  # FluidSynth reverb room size, damping, width; the level is `reverb`
_FLUID_BLOCK = 64  # FluidSynth renders (and applies events) in blocks of this many frames
_CHECK_FRAMES = 4096  # frames synthesized between two keep_going questions (~2 ms of CPU here)
_BUFFER_ARGS = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]  # buffer, offset, increment (in floats)


class Interrupted(Exception):
    """A bar's rendering was stopped half way (``keep_going`` said no): its notes were released."""


class Renderer:
    """A FluidSynth instance playing one bundle's arrangements bar by bar.

    controls: the manifest's ``controls`` table (``Manifest.controls``): styles' arrangements and the
        tempo range.
    synth: the ``[synth]`` settings (``musicbox.config.SynthConfig``): ``soundfont`` (a .sf2/.sf3 path, or
        None to search, :func:`soundfont.find_soundfont`), ``gain`` (FluidSynth master gain, linear; at 0.5
        a full texture with drums peaks near -6 dBFS) and ``reverb`` (FluidSynth's reverb level 0..1;
        0 turns it off, which saves CPU).
    sample_rate: Hz.
    chorus: FluidSynth's chorus (off by default: it costs CPU for little on these fonts).
    polyphony: voice limit. interpolation: a key of :data:`INTERPOLATION`.
    seed, humanize: passed to the :class:`~arrangement.Arranger` (timing/velocity jitter).
    level: :class:`~loudness.LevelSettings` of the leveler and peak limiter every bar goes through (one
        loudness for all styles and moods, peaks under -2 dBFS), or None for the synth's raw output.
    """

    def __init__(
        self,
        controls: ControlsInfo,
        synth: SynthConfig,
        sample_rate: int = 44100,
        *,
        chorus: bool = False,
        polyphony: int = 64,
        interpolation: str = "linear",
        seed: int = 0,
        humanize: bool = True,
        level: LevelSettings | None = DEFAULT_LEVEL,
    ):
        self.arranger = Arranger.from_manifest(
            controls, seed=seed, humanize=humanize, expression=float(synth.expression)
        )
        self.synth = synth
        self.soundfont = find_soundfont(synth.soundfont)
        self.sample_rate = int(sample_rate)
        self.leveler = Leveler(self.sample_rate, level) if level is not None else None
        self.reverb = float(synth.reverb)
        self.interpolation = interpolation
        if interpolation not in INTERPOLATION:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATION)}: {interpolation!r}")
        self._fs = _fluidsynth()
        self._synth = self._fs.Synth(
            gain=float(synth.gain),
            samplerate=float(self.sample_rate),
            channels=16,
            **{
                "synth.reverb.active": int(self.reverb > 0),
                "synth.chorus.active": int(chorus),
                "synth.polyphony": int(polyphony),
                "synth.cpu-cores": 1,
                "synth.dynamic-sample-loading": 1,
                "synth.lock-memory": 0,
            },
        )
        self.longest_s: float | None = None  # the longest a performed bar may last (the box's ring slot)
        self._sfid = self._load_soundfont()
        self._write = _c_function(self._fs, "fluid_synth_write_float", [ctypes.c_int, *_BUFFER_ARGS * 2])
        self._set_interp = _c_function(self._fs, "fluid_synth_set_interp_method", [ctypes.c_int] * 2)
        self._noteon, self._noteoff = self._fs.fluid_synth_noteon, self._fs.fluid_synth_noteoff
        self._scratch = np.empty((4096, 2), dtype=np.float32)
        self._block_phase = 0  # frames rendered modulo FluidSynth's block: where the next event lands
        self.last_plan = BarPlan((), [])  # the last bar as played (render_bar)
        self._setup_channels()
        self.reset()

    # -- the bar contract ---------------------------------------------------------------------------

    def render_bar(
        self,
        notes: Iterable[Note],
        controls: Controls,
        meter: Meter = COMMON,
        *,
        ties: Collection[tuple[int, int]] = (),
        from_step: int = 0,
        to_step: int | None = None,
        phrase: Phrasing | None = None,
        keep_going: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Render one bar of ``meter``: float32 ``[frames, 2]``, frames = the bar's duration at
        ``controls.tempo_bpm`` (``meter.quarters`` quarter notes; rounded so that consecutive bars never
        drift: their lengths add up to the exact total), leveled (``level``). phrase: where the form
        put the bar (``Bar.phrase``): performed at ``[synth] expression`` (``runtime/performance.py``),
        its length times the performance's stretch (its steps stay evenly spaced); None: as written.

        notes: the bar's notes (``start`` relative to the bar, in steps; durations may run past it).
        ties: ``(track, pitch)`` of notes at step 0 that continue the previous bar's note (module doc).
        from_step: render only the rest of the bar from this grid step (a beat line where a knob turned):
        what sounds is released first, notes sounding at the step start there, and the frames returned
        begin at the step. keep_going: asked between the bar's events; when it says no, what the bar
        started is released and :class:`Interrupted` raised (a bar written ahead that a knob turn made
        stale: the turn's rewrite starts at once). to_step: stop there (the frames before a beat line where a knob turned; the
        rest is rendered next with ``from_step``).

        :attr:`last_plan` is then this call's bar as the synth played it (``arrangement.BarPlan``: the
        programs and the :class:`~arrangement.Played` notes, velocities, swing and drums as heard; from
        ``from_step`` a sounding note starts again at the step, before ``to_step`` only the notes struck
        before it): what MIDI out and the MIDI files carry (``runtime/midi.py``).
        """
        plan = self.arranger.arrange(notes, controls, meter, ties, phrase)
        self._select_programs(plan.programs)
        played = plan.notes
        if from_step:
            self.release()
            played = [
                p._replace(on=max(p.on, float(from_step)), tied=False) for p in played if p.off > from_step
            ]
        events = self._schedule(played, meter.steps)
        seconds = controls.bar_seconds(meter.steps)
        if plan.stretch != 1.0 and self.longest_s is not None:  # the performance gives way to the slot
            plan = dataclasses.replace(plan, stretch=max(1.0, min(plan.stretch, self.longest_s / seconds)))
        frames = self._bar_frames(seconds * plan.stretch)
        per_step = frames / meter.steps
        first = min(int(from_step * per_step + 0.5), frames)
        if to_step is not None:
            frames = min(int(to_step * per_step + 0.5), frames)
            events = [e for e in events if e[0] * per_step + 0.5 < frames]
            played = [p for p in played if p.on * per_step + 0.5 < frames]
        self.last_plan = BarPlan(plan.programs, played, plan.stretch)
        out = np.empty((frames - first, 2), dtype=np.float32)
        pos = 0
        for step, is_on, channel, key, velocity in events:
            at = min(int(step * per_step + 0.5), frames) - first
            pos = self._synthesize(out, pos, at, keep_going)
            if is_on:
                self._noteon(self._synth.synth, channel, key, velocity)
            else:
                self._noteoff(self._synth.synth, channel, key)
        self._synthesize(out, pos, frames - first, keep_going)
        return self.leveler.process(out) if self.leveler is not None else out

    def _synthesize(self, out: np.ndarray, start: int, stop: int, keep_going) -> int:
        """Synthesize ``out[start:stop]`` (a block of :data:`_CHECK_FRAMES` at a time, asking
        ``keep_going`` before each); returns where it ended (``stop``, or ``start`` if already past it)."""
        pos = start
        while pos < stop:
            if keep_going is not None and not keep_going():
                self.release()  # what this bar started stops; the next bar starts afresh
                raise Interrupted
            end = min(stop, pos + _CHECK_FRAMES)
            self._write_into(out, pos, end)
            pos = end
        return pos

    def render_roll(
        self,
        roll: np.ndarray,
        controls: Controls,
        meter: Meter,
        rep: Representation = DEFAULT,
        *,
        from_step: int = 0,
        to_step: int | None = None,
        keep_going: Callable[[], bool] | None = None,
        phrase: Phrasing | None = None,
    ) -> np.ndarray:
        """Render the bars of a roll ``[n_bars, T, meter.steps, P]`` (or one bar ``[T, S, P]``), all in
        ``meter``, continuing from the previous call: float32 ``[frames, 2]``. Ties come from ``HELD``
        cells at each bar's step 0. The generator's ``Bar`` plays as
        ``render_roll(bar.roll, bar.controls, bar.meter)`` (3/4 and 6/8 bars have the same 12 steps: the
        meter says which). ``from_step`` / ``to_step``: of a one-bar roll, only its steps from / before
        these (:meth:`render_bar`). ``phrase``: of a one-bar roll, where the form put it (``Bar.phrase``)."""
        roll = roll.reshape((-1, *roll.shape[-3:]))
        if roll.shape[-2] != meter.steps:
            raise ValueError(f"a {meter.name} bar has {meter.steps} steps; this roll has {roll.shape[-2]}")
        if phrase is not None and len(roll) != 1:
            raise ValueError(f"a phrase place is one bar's; this roll has {len(roll)} bars")
        pcm = []
        for bar in roll:
            notes, ties = bar_notes(bar, rep)
            pcm.append(
                self.render_bar(
                    notes,
                    controls,
                    meter,
                    ties=ties,
                    from_step=from_step,
                    to_step=to_step,
                    phrase=phrase,
                    keep_going=keep_going,
                )
            )
        return np.concatenate(pcm) if pcm else np.zeros((0, 2), np.float32)

    def reset(self) -> None:
        """Silence everything at once (voices, pending note-offs, reverb tail) and restart the bar clock
        and the humanization sequence: the next bar sounds as if the renderer were new (to within
        FluidSynth's recycled per-voice state, which touches a note's first 64 frames by < -40 dB).

        (FluidSynth's ``system_reset`` would also do it but reloads default presets: 1.7 s with an .sf3.)
        """
        self._synth.all_sounds_off(-1)
        self._flush_reverb()
        self._ringing: dict[tuple[int, int], float] = {}
        self._frame_carry = 0.0
        self.arranger.reset()
        if self.leveler is not None:
            self.leveler.reset()

    def release(self) -> None:
        """Note-off for everything sounding or pending, now: the next bar starts with no notes carried
        over while the released notes and the reverb ring out naturally. For a seam after bars that
        were rendered ahead and then discarded (a knob turn): no click, no stale held notes."""
        for channel, key in self._ringing:
            self._noteoff(self._synth.synth, channel, key)
        self._ringing.clear()

    def close(self) -> None:
        """Free the synth and its SoundFont."""
        if self._synth is not None:
            self._synth.delete()
            self._synth = None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------

    def _setup_channels(self) -> None:
        """Interpolation, reverb room, pans, the drum kit (only if a style has drums; it costs ~0.2 s
        and its samples' memory with an .sf3)."""
        self._set_interp(self._synth.synth, -1, INTERPOLATION[self.interpolation])
        self._synth.set_reverb(*_REVERB_ROOM, self.reverb)
        self._programs: tuple[int, ...] = ()
        for channel, pan in enumerate(_PANS):
            self._synth.cc(channel, 10, pan)
        if any(style.drums != "none" for style in self.arranger.styles):
            if self._synth.program_select(DRUM_CHANNEL, self._sfid, 128, 0) != 0:
                self._synth.program_select(DRUM_CHANNEL, self._sfid, 0, 0)
            self._synth.cc(DRUM_CHANNEL, 91, 20)

    def _flush_reverb(self, max_seconds: float = 8.0) -> None:
        """Run the synth silently until the reverb tail is below -100 dBFS (FluidSynth has no call that
        clears its reverb alone; ~4 ms of CPU per second of tail), ending on a boundary of FluidSynth's
        64-frame block so that events land exactly where they would in a new synth."""
        self._write_into(self._scratch, 0, -self._block_phase % _FLUID_BLOCK)
        for _ in range(int(max_seconds * self.sample_rate / len(self._scratch)) + 1):
            self._write_into(self._scratch, 0, len(self._scratch))
            if float(np.abs(self._scratch).max()) < 1e-5:
                return

    def _load_soundfont(self) -> int:
        sfid = self._synth.sfload(str(self.soundfont))
        if sfid < 0:
            self.close()
            raise SoundFontError(
                f"FluidSynth could not load the SoundFont {self.soundfont} (corrupt, or an .sf3 with a "
                "libfluidsynth built without libsndfile/Ogg); choose another file in [synth] soundfont"
            )
        return sfid

    def _select_programs(self, programs: tuple[int, ...]) -> None:
        """Program changes only where a track's instrument changed (bank 0, else the font's preset 0)."""
        for channel, program in enumerate(programs):
            if channel < len(self._programs) and self._programs[channel] == program:
                continue
            if self._synth.program_select(channel, self._sfid, 0, program) != 0:
                self._synth.program_select(channel, self._sfid, 0, 0)
        self._programs = tuple(programs)

    def _schedule(self, notes: list[Played], steps: int) -> list[tuple[float, bool, int, int, int]]:
        """This bar's (step, is_on, channel, key, velocity) events, sorted, note-offs first at a tie.

        Updates ``_ringing`` ((channel, key) -> note-off step): a new onset on a sounding key ends the old
        note first; offs before the bar end are emitted, the rest carried (shifted by one bar)."""
        ringing, events = self._ringing, []
        for n in notes:
            key = (n.channel, n.key)
            if n.tied and key in ringing:
                ringing[key] = max(ringing[key], n.off)
                continue
            if key in ringing:
                events.append((min(ringing.pop(key), n.on), False, *key, 0))
            events.append((n.on, True, *key, n.velocity))
            ringing[key] = n.off
        for key, off in list(ringing.items()):
            if off < steps:
                events.append((off, False, *key, 0))
                del ringing[key]
            else:
                ringing[key] = off - steps
        events.sort(key=lambda e: (e[0], e[1]))
        return events

    def _bar_frames(self, seconds: float) -> int:
        """Frames of a bar of ``seconds``; the rounding remainder carries to the next bar."""
        exact = seconds * self.sample_rate + self._frame_carry
        frames = int(round(exact))
        self._frame_carry = exact - frames
        return frames

    def _write_into(self, out: np.ndarray, start: int, stop: int) -> None:
        """Synthesize frames ``start:stop`` of ``out`` (float32 ``[frames, 2]``, C order) in place."""
        if stop <= start:
            return
        ptr = out.ctypes.data + start * 8
        self._write(self._synth.synth, stop - start, ptr, 0, 2, ptr, 1, 2)
        self._block_phase = (self._block_phase + stop - start) % _FLUID_BLOCK


def measure_synth_rtf(
    renderer: Renderer,
    bars: Sequence[Sequence[Note]] | np.ndarray,
    controls: Controls,
    meter: Meter = COMMON,
) -> dict[str, Any]:
    """Synth real-time factor over ``bars`` (all in ``meter``) on the calling thread (FluidSynth runs
    single-threaded).

    bars: note lists (one per bar) or a roll ``[n_bars, T, meter.steps, P]``. The first bar is rendered
    once as a warm-up (loading the presets' samples), then the renderer is reset and every bar is timed:
    ``rtf`` = wall seconds / audio seconds, ``cpu_rtf`` = this thread's CPU seconds / audio seconds (the
    figure that does not depend on other processes sharing the cores). Leaves the renderer reset.
    """
    items = [bar_notes(b) for b in bars] if isinstance(bars, np.ndarray) else [(b, ()) for b in bars]
    if not items:
        raise ValueError("measure_synth_rtf needs at least one bar")
    renderer.render_bar(items[0][0], controls, meter, ties=items[0][1])
    renderer.reset()
    wall, cpu, audio = [], [], 0.0
    for notes, ties in items:
        t0, c0 = time.perf_counter(), time.thread_time()
        pcm = renderer.render_bar(notes, controls, meter, ties=ties)
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        seconds = len(pcm) / renderer.sample_rate
        wall.append(dt / seconds)
        cpu.append(dc / seconds)
        audio += seconds
    renderer.reset()
    return {
        "bars": len(items),
        "audio_seconds": round(audio, 3),
        "rtf_p50": _percentile(wall, 50),
        "rtf_p95": _percentile(wall, 95),
        "cpu_rtf_p50": _percentile(cpu, 50),
        "cpu_rtf_p95": _percentile(cpu, 95),
        "target": target("synth_rtf_p95").bound,
        "threads": 1,
        "sample_rate": renderer.sample_rate,
        "gain": renderer.synth.gain,
        "reverb": renderer.reverb,
        "interpolation": renderer.interpolation,
        "soundfont": str(renderer.soundfont),
    }


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _fluidsynth():
    """The pyfluidsynth module, or a ``MusicBoxError`` saying what to install."""
    try:
        import fluidsynth
    except ImportError as err:
        raise MusicBoxError(
            f"the FluidSynth synth is not available ({err}); install libfluidsynth3 "
            "(`sudo apt install libfluidsynth3`) and pyfluidsynth (`pip install 'musicbox[device]'`)"
        ) from err
    return fluidsynth


def _c_function(fs, name: str, argtypes: list):
    """``name(fluid_synth_t *synth, *argtypes) -> int`` from the libfluidsynth that pyfluidsynth loaded,
    with its C prototype (for the functions pyfluidsynth does not wrap)."""
    return ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, *argtypes)((name, fs._fl))
