"""Rolls and notes <-> standard MIDI files (mido), so any phrase can be heard and edited in a DAW.

A written file is type 1: track 0 holds the time signatures and the tempo map, then one track per part
(``melody``, ``harmony``, ``bass``), each on its own channel (0, 1, 2; never 9, the drums) with its
General MIDI program and its name. Time: ``ticks_per_beat`` per quarter note, so one grid step is
``ticks_per_beat / 4`` ticks. Every track ends exactly at the last bar line, so silent bars at the end
survive a round trip; or at ``seconds`` when given (notes sounding then end there).

Meters (``runtime/meter.py``): a bar lasts its meter's steps (4/4: 16, 3/4 and 6/8: 12); a
``time_signature`` stands at tick 0 and at every bar line where the meter changes (6/8 with 36 MIDI
clocks per metronome click: the dotted quarter is its beat). Reading, the bar lines follow the file's
time signatures the same way (:func:`midi_meters`).

Music as the box played it (:func:`played_to_midi`, used by ``render --midi`` and SAVE): a ``set_tempo``
at every bar line where the tempo changed, a ``time_signature`` where the meter changed and a
``program_change`` where the style's instruments changed, so the file's bar lines fall where the audio's do (the renderer's bars are whole frames, rounded without
drift: they agree to a sample) and it sounds with the instruments that played. The notes are the synth's
(``arrangement.Played``): velocities and micro-timing (swing, humanization) as heard, to the tick
(480 per quarter note: 1/120 of a step); a note tied over a bar line stays one note (struck once, ended
where the audio ends it); the drum part is a fifth track, ``drums``, on channel 10 (index 9), which
:func:`midi_to_notes` leaves out (the roll has no drums).

``roll -> MIDI -> roll`` is exact for any roll whose notes start with ``ONSET`` (all rolls built by the
dataset; ``pianoroll.roll_to_notes`` turns a stray ``HELD`` after ``OFF`` into an onset). Reading a file
made elsewhere snaps times to the nearest 16th and maps tracks by name, else by order of appearance.

Runtime code: numpy and mido only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import mido
import numpy as np

from musicbox.errors import MusicBoxError
from musicbox.runtime.meter import COMMON, METERS, Meter
from musicbox.runtime.pianoroll import DEFAULT, Note, Representation, notes_to_roll, roll_to_notes

TICKS_PER_BEAT = 480
DEFAULT_PROGRAMS = (0, 0, 0)
"""General MIDI programs of melody, harmony and bass when none are given (0 = acoustic grand piano)."""


class MidiError(MusicBoxError, ValueError):
    """A MIDI file cannot be read as a musicbox phrase."""


@dataclass(frozen=True)
class BarPlay:
    """How one bar was played: ``bpm`` (quarter notes per minute), General MIDI ``programs`` per track and
    its ``meter``; ``turn``: ``(step, bpm, programs)`` from a beat line on, where a knob turned inside the
    bar (the box plays a turn from the next beat line)."""

    bpm: float
    programs: tuple[int, ...]
    meter: Meter = COMMON
    turn: tuple[int, float, tuple[int, ...]] | None = None


def played_to_midi(
    bars: Sequence,
    path,
    styles=None,
    seconds: float | None = None,
    played: Sequence | None = None,
    stretches: Sequence[float] | None = None,
) -> mido.MidiFile:
    """A MIDI file of bars as played, in order: each has ``notes`` (``Note``, start in steps from its bar
    line), ``controls`` (``Controls``) and ``meter`` (``Meter``): the generator's ``Bar`` and the
    recorder's ``PlayedBar`` alike; a bar with a ``turn`` ``(step, controls before)`` played its first
    ``step`` steps with the controls before (a knob turned at that beat line).

    played: per bar, its notes as the synth played them (``arrangement.Played``, the renderer's
    ``last_plan.notes``; see :func:`join_turn` for a bar played in two parts); None = each bar's own
    ``played`` (the recorder's ``PlayedBar``). A bar without them is written from its ``notes`` at
    velocity 80, without drums.
    styles: the manifest's controls (``ControlsInfo``) or an ``Arranger``, for each bar's programs
    (those of the nearer style, as the renderer plays them); None = :data:`DEFAULT_PROGRAMS`.
    seconds: cut the file there (as the WAV is), else it ends at the last bar line.
    """
    from musicbox.runtime.arrangement import Arranger

    arranger = styles if isinstance(styles, Arranger) or styles is None else Arranger.from_manifest(styles)
    starts = _bar_starts([bar.meter.steps for bar in bars])
    if played is None:
        played = [getattr(bar, "played", None) or [] for bar in bars]
    if len(played) != len(bars):
        raise ValueError(f"{len(played)} played bars for {len(bars)} bars")
    performed = [p or [_as_played(n) for n in bar.notes] for p, bar in zip(played, bars, strict=True)]

    def programs(controls) -> tuple[int, ...]:
        return arranger.style_arrangement(controls.style).programs if arranger else DEFAULT_PROGRAMS

    if stretches is None:
        stretches = [float(getattr(bar, "stretch", 1.0)) for bar in bars]
    plays = []
    for bar, stretch in zip(bars, stretches, strict=True):
        before = getattr(bar, "turn", None)  # (step, controls before it): a turn inside the bar
        bpm = float(bar.controls.tempo_bpm) / stretch  # the performance's ritardando lengthens the bar
        if before is None:
            plays.append(BarPlay(bpm, programs(bar.controls), bar.meter))
            continue
        step, old = before
        turn = (step, bpm, programs(bar.controls))
        plays.append(BarPlay(float(old.tempo_bpm) / stretch, programs(old), bar.meter, turn))
    return _write(_held(performed, starts), plays, path, seconds)


def join_turn(head: Sequence, rest: Sequence, step: int) -> list:
    """One bar's ``Played`` notes when a turn took over at ``step``: those of ``head`` struck before the
    step, ended there at the latest (the synth releases them), then ``rest`` (from the step on)."""
    return [p._replace(off=min(p.off, float(step))) for p in head if p.on < step] + list(rest)


def _as_played(note: Note):
    from musicbox.runtime.arrangement import Played

    return Played(float(note.start), float(note.start + note.duration), note.track, note.pitch, 80, False)


Performed = tuple[int, int, float, float, int]
"""One note as heard: (channel, key, on, off, velocity), times in steps from the first bar line."""


def _held(bars: Sequence[Sequence], starts: list[int]) -> list[Performed]:
    """The notes of consecutive bars' ``Played`` lists (starting at ``starts`` steps) as heard, as the
    renderer schedules them: a tied note whose key still sounds extends it (one note across the bar
    line), a new onset of a sounding key ends it first."""
    out: list[Performed] = []
    ringing: dict[tuple[int, int], list] = {}  # (channel, key) -> [on, off, velocity]
    for at, notes in zip(starts, bars, strict=False):
        for key, (on, off, velocity) in list(ringing.items()):
            if off < at:  # ended before this bar line
                out.append((*key, on, off, velocity))
                del ringing[key]
        for p in notes:
            key, on, off = (p.channel, p.key), at + p.on, at + p.off
            if p.tied and key in ringing:
                ringing[key][1] = max(ringing[key][1], off)
                continue
            if key in ringing:
                was = ringing.pop(key)
                out.append((*key, was[0], min(was[1], on), was[2]))
            ringing[key] = [on, off, p.velocity]
    out += [(*key, on, off, velocity) for key, (on, off, velocity) in ringing.items()]
    return out


def _write(
    performed: list[Performed],
    plays: Sequence[BarPlay],
    path,
    seconds: float | None,
    rep: Representation = DEFAULT,
) -> mido.MidiFile:
    """A type-1 file of ``performed`` notes over ``plays`` (tempo map, meters, programs): a track per
    part of ``rep`` on its channel, and ``drums`` on channel 10 when there are drum notes."""
    from musicbox.runtime.arrangement import DRUM_CHANNEL

    ticks_per_step = _ticks_per_step(TICKS_PER_BEAT, rep)
    lines = [start * ticks_per_step for start in _bar_starts([b.meter.steps for b in plays])]
    end = lines[-1] if seconds is None else min(lines[-1], _tick_at(seconds, plays, lines, TICKS_PER_BEAT))
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    mid.tracks.append(_conductor(plays, lines, end))
    changes = _program_changes(plays, lines, end) or [(0, DEFAULT_PROGRAMS)]
    parts: dict[int, list[tuple[int, int, int, int]]] = {}
    for channel, key, on, off, velocity in performed:
        tick_on, tick_off = round(on * ticks_per_step), round(off * ticks_per_step)
        parts.setdefault(channel, []).append((tick_on, max(tick_off, tick_on + 1), key, velocity))
    for t, name in enumerate(rep.tracks):
        track_programs = [(tick, p[t] if t < len(p) else 0) for tick, p in changes]
        mid.tracks.append(_part_track(parts.get(t, []), name, t, track_programs, end))
    if parts.get(DRUM_CHANNEL):
        mid.tracks.append(_part_track(parts[DRUM_CHANNEL], "drums", DRUM_CHANNEL, [], end))
    if path is not None:
        mid.save(os.fspath(path))
    return mid


def notes_to_midi(
    notes: Iterable[Note],
    n_bars: int,
    path: str | os.PathLike | None = None,
    *,
    rep: Representation = DEFAULT,
    bpm: float = 100.0,
    programs: Sequence[int] = DEFAULT_PROGRAMS,
    velocity: int = 80,
    ticks_per_beat: int = TICKS_PER_BEAT,
    bars: Sequence[BarPlay] | None = None,
    seconds: float | None = None,
    meter: Meter = COMMON,
) -> mido.MidiFile:
    """A type-1 MIDI file of ``notes`` (start/duration in grid steps) lasting ``n_bars`` bars.

    bpm: quarter notes per minute. programs: one General MIDI program (0..127) per track. meter: every
    bar's meter. bars: one :class:`BarPlay` per bar instead (a tempo map, time signatures and program
    changes at bar lines). seconds: end the file there (notes after it dropped, notes sounding then cut),
    else at the last bar line. velocity: note-on velocity 1..127. Written to ``path`` too when given.
    """
    ticks_per_step = _ticks_per_step(ticks_per_beat, rep)
    if bars is None:
        bars = [BarPlay(bpm, tuple(programs), meter)] * n_bars
    if len(bars) != n_bars:
        raise ValueError(f"{len(bars)} bar settings for {n_bars} bars")
    lines = [start * ticks_per_step for start in _bar_starts([b.meter.steps for b in bars])]
    end = lines[-1]
    if seconds is not None:
        end = min(end, _tick_at(seconds, bars, lines, ticks_per_beat))
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    mid.tracks.append(_conductor(bars or [BarPlay(bpm, tuple(programs), meter)], lines, end))
    by_track: list[list[Note]] = [[] for _ in rep.tracks]
    for note in notes:
        by_track[note.track].append(note)
    changes = _program_changes(bars, lines, end) or [(0, tuple(programs))]
    for t, name in enumerate(rep.tracks):
        track_programs = [(tick, p[t] if t < len(p) else 0) for tick, p in changes]
        timed = [
            (n.start * ticks_per_step, (n.start + n.duration) * ticks_per_step, n.pitch, velocity)
            for n in by_track[t]
        ]
        mid.tracks.append(_part_track(timed, name, t, track_programs, end))
    if path is not None:
        mid.save(os.fspath(path))
    return mid


def roll_to_midi(
    roll: np.ndarray, path: str | os.PathLike | None = None, meter: Meter = COMMON, **kwargs
) -> mido.MidiFile:
    """A MIDI file of a roll ``[n_bars, T, meter.steps, P]`` in ``meter``; keyword arguments as
    :func:`notes_to_midi`."""
    if roll.shape[-2] != meter.steps:
        raise ValueError(f"a {meter.name} bar has {meter.steps} steps; this roll has {roll.shape[-2]}")
    rep = kwargs.get("rep", DEFAULT)
    return notes_to_midi(roll_to_notes(roll, rep), len(roll), path, meter=meter, **kwargs)


def midi_to_notes(source, rep: Representation = DEFAULT) -> tuple[list[Note], int]:
    """Notes (grid steps from the start) of a MIDI file path or ``mido.MidiFile``, and its length in
    whole bars, bar lines following the file's time signatures (4/4 when it has none).

    Raises :class:`MidiError` when the file cannot be read.
    """
    mid = _open(source)
    ticks_per_step = mid.ticks_per_beat * 4 / rep.steps_per_bar
    notes: list[Note] = []
    length = 0
    part_tracks = [tr for tr in mid.tracks if _has_notes(tr) and not _is_drums(tr)]
    for order, track in enumerate(part_tracks):
        t = _track_index(track, order, rep)
        track_notes, ticks = _read_track(track, t, ticks_per_step)
        notes.extend(track_notes)
        length = max(length, ticks)
    length = max([length] + [sum(m.time for m in tr) for tr in mid.tracks])
    n_bars = len(_bar_signatures(mid, round(length / ticks_per_step), ticks_per_step))
    notes.sort(key=lambda n: (n.start, n.track, n.pitch))
    return notes, n_bars


def midi_meters(source, rep: Representation = DEFAULT) -> list[Meter]:
    """The meter of each bar of a MIDI file (as many as :func:`midi_to_notes` counts), from its time
    signatures; :class:`MidiError` for a signature the box does not play (not one of ``METERS``)."""
    mid = _open(source)
    ticks_per_step = mid.ticks_per_beat * 4 / rep.steps_per_bar
    length = max([0] + [sum(m.time for m in tr) for tr in mid.tracks])
    meters = []
    for numerator, denominator in _bar_signatures(mid, round(length / ticks_per_step), ticks_per_step):
        name = f"{numerator}/{denominator}"
        if name not in METERS:
            raise MidiError(f"a bar in {name}: the box reads {', '.join(METERS)}")
        meters.append(METERS[name])
    return meters


def midi_to_roll(source, rep: Representation = DEFAULT, n_bars: int | None = None) -> np.ndarray:
    """Roll ``[n_bars, T, S, P]`` of a MIDI file in one meter, ``S`` its steps (``n_bars`` defaults to the
    file's length); :class:`MidiError` for a file that changes meter (read it with :func:`midi_to_notes`
    and :func:`midi_meters`)."""
    mid = _open(source)
    notes, length = midi_to_notes(mid, rep)
    meters = set(midi_meters(mid, rep)) or {COMMON}
    if len(meters) > 1:
        raise MidiError(f"the file changes meter ({', '.join(sorted(m.name for m in meters))}): no one roll")
    steps = meters.pop().steps
    return notes_to_roll(notes, length if n_bars is None else n_bars, replace(rep, steps_per_bar=steps))


# --------------------------------------------------------------------------------------------------


def _ticks_per_step(ticks_per_beat: int, rep: Representation) -> int:
    steps_per_beat = rep.steps_per_bar // 4
    if ticks_per_beat % steps_per_beat:
        raise MidiError(
            f"ticks_per_beat={ticks_per_beat} is not a multiple of {steps_per_beat} steps per beat"
        )
    return ticks_per_beat // steps_per_beat


def _bar_starts(steps: Sequence[int]) -> list[int]:
    """Where each bar of ``steps[i]`` steps starts, in steps, and the end of the last: ``len + 1`` values."""
    return [0, *np.cumsum(steps, dtype=np.int64).tolist()]


def _segments(bars: Sequence[BarPlay], lines: list[int]) -> list[tuple[int, float, tuple[int, ...]]]:
    """(tick, bpm, programs) from each bar line, and from each turn's beat line inside its bar."""
    out = []
    for bar, start, stop in zip(bars, lines[:-1], lines[1:], strict=True):
        out.append((start, bar.bpm, tuple(bar.programs)))
        if bar.turn is not None:
            step, bpm, programs = bar.turn
            out.append((start + step * (stop - start) // bar.meter.steps, bpm, tuple(programs)))
    return out


def _tick_at(seconds: float, bars: Sequence[BarPlay], lines: list[int], ticks_per_beat: int) -> int:
    """The tick ``seconds`` into a file whose bar ``i`` spans ticks ``lines[i] .. lines[i + 1]`` at the tempo
    ``bars[i].bpm`` (from its turn on, the turn's)."""
    left = seconds
    segments = _segments(bars, lines)
    ends = [tick for tick, _, _ in segments[1:]] + [lines[-1]]
    for (start, bpm, _), stop in zip(segments, ends, strict=True):
        tempo = mido.bpm2tempo(bpm)  # µs per quarter note
        span_seconds = (stop - start) * tempo / ticks_per_beat / 1e6
        if left < span_seconds:
            return start + round(left * 1e6 / tempo * ticks_per_beat)
        left -= span_seconds
    return lines[-1]


def _program_changes(
    bars: Sequence[BarPlay], lines: list[int], end: int
) -> list[tuple[int, tuple[int, ...]]]:
    """(tick, programs) at the first bar and wherever they change later (a bar line, a turn) before
    ``end``."""
    changes: list[tuple[int, tuple[int, ...]]] = []
    for tick, _, programs in _segments(bars, lines):
        if (not changes or programs != changes[-1][1]) and (not changes or tick < end):
            changes.append((tick, programs))
    return changes


def _conductor(bars: Sequence[BarPlay], lines: list[int], end: int) -> mido.MidiTrack:
    """Name, then at each bar line (``lines[i]``, ticks) before ``end`` a time signature where the meter
    changes and a tempo (µs per quarter note) wherever it changes (a bar line, a turn's beat line); the
    first bar has both."""
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name="musicbox", time=0))
    events = []  # (tick, order, message): a time signature before a tempo at the same tick
    meter = None
    for i, bar in enumerate(bars):
        if i > 0 and lines[i] >= end:
            break
        if bar.meter != meter:
            events.append((lines[i], 0, _time_signature(bar.meter, 0)))
            meter = bar.meter
    tempo = None
    for tick, bpm, _ in _segments(bars, lines):
        if (tick < end or not events) and mido.bpm2tempo(bpm) != tempo:
            tempo = mido.bpm2tempo(bpm)
            events.append((tick, 1, mido.MetaMessage("set_tempo", tempo=tempo, time=0)))
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, end - now)))
    return track


def _time_signature(meter: Meter, time: int) -> mido.MetaMessage:
    """``meter``'s time signature, ``time`` ticks after the previous event; the metronome clicks once a
    beat (24 MIDI clocks per quarter note: 36 for 6/8's dotted quarter)."""
    clocks = 24 * meter.beat_steps // 4
    return mido.MetaMessage(
        "time_signature",
        numerator=meter.numerator,
        denominator=meter.denominator,
        clocks_per_click=clocks,
        notated_32nd_notes_per_beat=8,
        time=time,
    )


def _bar_signatures(mid: mido.MidiFile, length_steps: int, ticks_per_step: float) -> list[tuple[int, int]]:
    """(numerator, denominator) of each bar of ``mid`` up to ``length_steps`` steps, bar lines laid by its
    time signatures (a signature takes effect at the first bar line at or after it; 4/4 before any)."""
    changes = sorted(
        (round(tick / ticks_per_step), m.numerator, m.denominator)
        for track in mid.tracks
        for tick, m in _timed(track)
        if m.type == "time_signature"
    )
    bars: list[tuple[int, int]] = []
    start, numerator, denominator = 0, 4, 4
    while start < length_steps:
        while changes and changes[0][0] <= start:
            _, numerator, denominator = changes.pop(0)
        bars.append((numerator, denominator))
        start += max(1, round(numerator * 16 / denominator))  # 16 steps (sixteenths) to a whole note
    return bars


def _timed(track: mido.MidiTrack):
    """(absolute tick, message) of each message of ``track``."""
    tick = 0
    for m in track:
        tick += m.time
        yield tick, m


def _part_track(
    notes: list[tuple[int, int, int, int]],
    name: str,
    channel: int,
    programs: list[tuple[int, int]],
    end: int,
) -> mido.MidiTrack:
    """One part: name, then program changes ``(tick, program)`` and the notes ``(on tick, off tick, key,
    velocity)`` up to ``end`` (a note sounding there ends there; at one tick: note-offs, then program
    changes, then note-ons)."""
    events = [(tick, 1, "program", program, 0) for tick, program in programs]  # (tick, order, kind, ...)
    for on, off, key, velocity in notes:
        if on < end:
            events += [(on, 2, "note_on", key, velocity), (min(off, end), 0, "note_off", key, 0)]
    events.sort()
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name, time=0))
    now = 0
    for tick, _, kind, value, velocity in events:
        if kind == "program":
            message = mido.Message("program_change", channel=channel, program=value, time=tick - now)
        else:
            message = mido.Message(kind, channel=channel, note=value, velocity=velocity, time=tick - now)
        track.append(message)
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, end - now)))
    return track


def _open(source) -> mido.MidiFile:
    if isinstance(source, mido.MidiFile):
        return source
    try:
        return mido.MidiFile(os.fspath(source))
    except (OSError, EOFError, ValueError) as exc:
        raise MidiError(f"cannot read MIDI file {source}: {exc}; give a standard .mid file") from exc


def _has_notes(track: mido.MidiTrack) -> bool:
    return any(m.type == "note_on" for m in track)


def _is_drums(track: mido.MidiTrack) -> bool:
    """All its notes on channel 10 (General MIDI percussion): not a part of the roll."""
    return all(m.channel == 9 for m in track if m.type in ("note_on", "note_off"))


def _track_index(track: mido.MidiTrack, order: int, rep: Representation) -> int:
    """Track index by name (``melody``/``harmony``/``bass``), else by order (extra tracks -> harmony)."""
    for m in track:
        if m.type == "track_name" and m.name in rep.tracks:
            return rep.tracks.index(m.name)
    return order if order < rep.n_tracks else 1


def _read_track(track: mido.MidiTrack, t: int, ticks_per_step: float) -> tuple[list[Note], int]:
    """Notes of one track and its length in ticks; a note-on of a sounding pitch re-strikes it."""
    sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> start step
    notes: list[Note] = []
    tick = 0
    for m in track:
        tick += m.time
        if m.type not in ("note_on", "note_off"):
            continue
        step = round(tick / ticks_per_step)
        key = (m.channel, m.note)
        if key in sounding:
            start = sounding.pop(key)
            if step > start:
                notes.append(Note(t, start, m.note, step - start))
        if m.type == "note_on" and m.velocity > 0:
            sounding[key] = step
    return notes, tick
