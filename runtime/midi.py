"""Rolls and notes <-> standard MIDI files (mido), so any phrase can be heard and edited in a DAW.

A written file is type 1: track 0 holds the tempo and a 4/4 time signature, then one track per part
(``melody``, ``harmony``, ``bass``), each on its own channel (0, 1, 2; never 9, the drums) with its
General MIDI program and its name. Time: ``ticks_per_beat`` per quarter note, so one grid step is
``ticks_per_beat / 4`` ticks. Every track ends exactly at the last bar line, so silent bars at the end
survive a round trip.

``roll -> MIDI -> roll`` is exact for any roll whose notes start with ``ONSET`` (all rolls built by the
dataset; ``pianoroll.roll_to_notes`` turns a stray ``HELD`` after ``OFF`` into an onset). Reading a file
made elsewhere snaps times to the nearest 16th and maps tracks by name, else by order of appearance.

Runtime code: numpy and mido only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence

import mido
import numpy as np

from musicbox.errors import MusicBoxError
from musicbox.runtime.pianoroll import DEFAULT, Note, Representation, notes_to_roll, roll_to_notes

TICKS_PER_BEAT = 480
DEFAULT_PROGRAMS = (0, 0, 0)
"""General MIDI programs of melody, harmony and bass when none are given (0 = acoustic grand piano)."""


class MidiError(MusicBoxError, ValueError):
    """A MIDI file cannot be read as a musicbox phrase."""


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
) -> mido.MidiFile:
    """A type-1 MIDI file of ``notes`` (start/duration in grid steps) lasting ``n_bars`` bars.

    bpm: quarter notes per minute. programs: one General MIDI program (0..127) per track.
    velocity: note-on velocity 1..127. Written to ``path`` too when given.
    """
    ticks_per_step = _ticks_per_step(ticks_per_beat, rep)
    end = n_bars * rep.steps_per_bar * ticks_per_step
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    mid.tracks.append(_conductor(bpm, rep, end))
    by_track: list[list[Note]] = [[] for _ in rep.tracks]
    for note in notes:
        by_track[note.track].append(note)
    for t, name in enumerate(rep.tracks):
        program = programs[t] if t < len(programs) else 0
        mid.tracks.append(_part_track(by_track[t], name, t, program, velocity, ticks_per_step, end))
    if path is not None:
        mid.save(os.fspath(path))
    return mid


def roll_to_midi(roll: np.ndarray, path: str | os.PathLike | None = None, **kwargs) -> mido.MidiFile:
    """A MIDI file of a roll ``[n_bars, T, S, P]``; keyword arguments as :func:`notes_to_midi`."""
    rep = kwargs.get("rep", DEFAULT)
    return notes_to_midi(roll_to_notes(roll, rep), len(roll), path, **kwargs)


def midi_to_notes(source, rep: Representation = DEFAULT) -> tuple[list[Note], int]:
    """Notes (grid steps) of a MIDI file path or ``mido.MidiFile``, and its length in whole bars.

    Raises :class:`MidiError` when the file cannot be read.
    """
    mid = _open(source)
    ticks_per_step = mid.ticks_per_beat * 4 / rep.steps_per_bar
    notes: list[Note] = []
    length = 0
    part_tracks = [tr for tr in mid.tracks if _has_notes(tr)]
    for order, track in enumerate(part_tracks):
        t = _track_index(track, order, rep)
        track_notes, ticks = _read_track(track, t, ticks_per_step)
        notes.extend(track_notes)
        length = max(length, ticks)
    length = max([length] + [sum(m.time for m in tr) for tr in mid.tracks])
    n_bars = math.ceil(round(length / ticks_per_step) / rep.steps_per_bar)
    notes.sort(key=lambda n: (n.start, n.track, n.pitch))
    return notes, n_bars


def midi_to_roll(source, rep: Representation = DEFAULT, n_bars: int | None = None) -> np.ndarray:
    """Roll ``[n_bars, T, S, P]`` of a MIDI file (``n_bars`` defaults to the file's length)."""
    notes, length = midi_to_notes(source, rep)
    return notes_to_roll(notes, length if n_bars is None else n_bars, rep)


# --------------------------------------------------------------------------------------------------


def _ticks_per_step(ticks_per_beat: int, rep: Representation) -> int:
    steps_per_beat = rep.steps_per_bar // 4
    if ticks_per_beat % steps_per_beat:
        raise MidiError(
            f"ticks_per_beat={ticks_per_beat} is not a multiple of {steps_per_beat} steps per beat"
        )
    return ticks_per_beat // steps_per_beat


def _conductor(bpm: float, rep: Representation, end: int) -> mido.MidiTrack:
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name="musicbox", time=0))
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    track.append(mido.MetaMessage("end_of_track", time=end))
    return track


def _part_track(
    notes: list[Note], name: str, channel: int, program: int, velocity: int, ticks_per_step: int, end: int
) -> mido.MidiTrack:
    """One part: name, program, then note events (note-offs before note-ons at the same tick)."""
    events = []  # (tick, 0 off / 1 on, pitch)
    for n in notes:
        events.append((n.start * ticks_per_step, 1, n.pitch))
        events.append(((n.start + n.duration) * ticks_per_step, 0, n.pitch))
    events.sort()
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name, time=0))
    track.append(mido.Message("program_change", channel=channel, program=program, time=0))
    now = 0
    for tick, on, pitch in events:
        kind = "note_on" if on else "note_off"
        track.append(
            mido.Message(kind, channel=channel, note=pitch, velocity=velocity if on else 0, time=tick - now)
        )
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
