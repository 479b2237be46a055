"""`musicbox render`: generate and render music offline, as fast as the machine allows, to a WAV file.

Bar by bar: the generator writes a bar for the current knobs, the renderer plays it in the bar's meter; a
``--script`` of knob changes ``[{"at": seconds, "style"|"tempo"|"mood"|"meter": value}, ...]`` is played
as the box plays a turn: a knob turn (and next) from the first beat line at or after its ``at`` (the rest
of the bar written again, or for tempo only rendered again), a meter change and the form buttons (keep,
new) at the first bar line. Prints each bar's generation time, then a summary;
``--stats FILE.json`` also writes the summary as JSON (``musicbox bench`` reads the peak RSS there).
The synth settings are the box's: the config's ``[synth]`` (``--config``, else the box's own file or the
defaults, as ``musicbox play`` reads them); ``--soundfont`` overrides its SoundFont. With the WAV going to
stdout (``--out -``) the progress goes to stderr.

``--seconds`` is the length of both files: the WAV is cut there (with a short fade), and the MIDI file,
which carries the tempo map, time signatures and program changes the audio was played with, ends there
too: its bar lines are the WAV's.

Knob values (``--style/--tempo/--mood/--variation/--meter`` and the script's) are checked against the
bundle's manifest (:class:`~musicbox.runtime.controls.ControlRanges`; a meter against its model's), and
the output folders before anything is generated.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from musicbox.errors import ConfigError
from musicbox.precision import PRECISION_CHOICES
from musicbox.runtime.controls import FIELDS, KNOBS, MOOD_RANGE, VARIATION_RANGE, Controls

FADE_SECONDS = 0.02


def register(sub):
    p = sub.add_parser("render", help="render music offline to a WAV (and MIDI) file")
    p.add_argument("--seconds", type=float, required=True, help="length of music to write (s)")
    p.add_argument("--bundle", type=Path, help="bundle folder (default: the shipped assets/bundle)")
    (dark, bright), (literal, new) = MOOD_RANGE, VARIATION_RANGE
    p.add_argument("--style", help="style name or knob position 0..n_styles-1 (default: the first style)")
    p.add_argument("--tempo", type=float, help="beats per minute (default: the bundle's default_bpm)")
    p.add_argument(
        "--mood", type=float, help=f"{dark:g} dark .. {bright:+g} bright (default {Controls.mood:g})"
    )
    p.add_argument(
        "--variation",
        type=float,
        help=f"{literal:g} literal returns .. {new:g} ever new (default: the config's)",
    )
    p.add_argument(
        "--meter",
        help="4/4, 3/4 or 6/8 (one the bundle plays), or \"\" for each style's own (default: the config's)",
    )
    p.add_argument(
        "--key", help="the tonic to play in, C, C#, D .. B, or \"\" for the seed's (default: the seed's)"
    )
    p.add_argument("--seed", type=int, default=0, help="noise seed: same seed, same music")
    p.add_argument(
        "--precision", choices=PRECISION_CHOICES, default="auto", help="model variant (default auto)"
    )
    p.add_argument("--threads", type=int, default=1, help="inference threads (0 = all cores but one)")
    p.add_argument("--soundfont", type=Path, help="a .sf2/.sf3 (default: search the usual places)")
    p.add_argument("--script", type=Path, help='JSON list of knob changes [{"at": s, "style": 1.5}, ...]')
    p.add_argument("--out", type=Path, required=True, help="WAV file to write (- = stdout)")
    p.add_argument("--midi", type=Path, help="also write a standard MIDI file, one track per part")
    p.add_argument("--config", type=Path, help="musicbox.toml whose [synth] to use (default: the box's)")
    p.add_argument("--stats", type=Path, help="also write the summary figures to this JSON file")
    p.set_defaults(run=run)


def apply_events(controls, events: list, now: float, gen, knobs_only: bool = False):
    """Controls after every script event (``device.scripted.ScriptEvent``) with ``at <= now``, whose
    buttons act on the generator ``gen`` as the box's do (next: new noise; keep, new: the form); the
    applied events are consumed from ``events``. ``knobs_only``: stop before an event with a meter, a key
    or a button other than next (a turn inside a bar; those wait for the bar line)."""
    from musicbox.device.buttons import Button
    from musicbox.runtime.form import keep, renew

    actions = {
        Button.NEXT: lambda s: s.reseeded(s.seed + 1),
        Button.KEEP: keep,
        Button.NEW: renew,
    }
    while events and events[0].at <= now + 1e-9:
        if knobs_only and _at_bar_line(events[0]):
            break
        event = events.pop(0)
        controls = event.apply(controls)
        if event.button in actions:
            gen.set_state(actions[event.button](gen.get_state()))
    return controls


def beat_turn(events: list, now: float, bar) -> int | None:
    """The beat line of ``bar`` (starting at ``now`` seconds) at which the next script event turns a knob,
    as the box would play it: the first beat line at or after its time; None when the event is at or
    after the bar's end, or changes the meter or the key or presses a button other than next (those wait
    for the bar line). Events later in the same bar are taken with it (the box too plays the latest)."""
    if not events or events[0].at >= now + bar.seconds - 1e-9:
        return None
    event = events[0]
    if _at_bar_line(event):
        return None
    step_s = bar.seconds / bar.meter.steps
    for beat in bar.meter.beats[1:]:
        if now + beat * step_s >= event.at - 1e-9:
            return beat
    return None


def _at_bar_line(event) -> bool:
    """Whether script ``event`` waits for the bar line: a meter, a key (heard from the next phrase start
    on, as the box plays it) or a button other than next."""
    from musicbox.device.buttons import Button

    return event.meter is not None or event.key is not None or event.button not in (None, Button.NEXT)


def turn_bar(gen, before, bar, turned, step: int):
    """``bar`` played with ``turned`` controls from beat line ``step``: the model writes its rest again
    from the state ``before`` it (its first steps held), or for a tempo turn only its controls change;
    ``gen`` goes on after it."""
    from musicbox.runtime.controls import rewrites
    from musicbox.runtime.generator import Hold

    played = gen.get_state()
    reseeded = played.seed != before.seed  # next pressed inside the bar
    if reseeded or rewrites(bar.controls, turned):
        gen.set_state(replace(before, seed=played.seed))
        new = gen.next_bar(turned, Hold.of(played, step))
    else:
        new = replace(bar, controls=turned)
    return replace(new, turn=(step, bar.controls))


def run(args) -> int:
    import numpy as np

    from musicbox.config import load_config, resolve_bundle
    from musicbox.device.scripted import load_script
    from musicbox.runtime.bundle import Bundle
    from musicbox.runtime.controls import ControlRanges
    from musicbox.runtime.generator import Generator
    from musicbox.runtime.midi import join_turn, played_to_midi
    from musicbox.runtime.render import Renderer

    if not 0 < args.seconds < float("inf"):
        raise ConfigError(f"--seconds {args.seconds:g}: give a number of seconds above 0")
    check_outputs(args.out, args.midi)
    wav_fd = _claim_stdout() if _to_stdout(args.out) else None
    say = _printer(sys.stderr if wav_fd is not None else sys.stdout)
    bundle = Bundle.open(resolve_bundle(args.bundle), precision=args.precision, threads=args.threads)
    manifest = bundle.manifest
    say(f"bundle {bundle.path}: {bundle.precision} ({bundle.precision_reason})")
    config = load_config(args.config)
    ranges = ControlRanges.from_manifest(manifest.controls, manifest.representation.meters)
    defaults = Controls(
        tempo_bpm=manifest.controls.tempo.default_bpm,
        variation=config.knobs.variation,
        meter=_meter(ranges, args.meter, config.knobs.meter),
        key=ranges.check_key(args.key or "", "--key"),
    )
    given = {knob: getattr(args, knob) for knob in KNOBS if getattr(args, knob) is not None}
    checked: dict[str, Any] = {FIELDS[k]: ranges.check(k, v, f"--{k}") for k, v in given.items()}
    controls = replace(defaults, **checked)
    events = load_script(args.script, ranges) if args.script else []
    synth = config.synth if args.soundfont is None else replace(config.synth, soundfont=args.soundfont)
    renderer = Renderer(manifest.controls, synth, config.audio.sample_rate)
    gen = Generator(bundle, seed=args.seed)
    pcm, bars, played, stretches, now = [], [], [], [], 0.0
    while now < args.seconds:
        controls = apply_events(controls, events, now, gen)
        before = gen.get_state()
        bar = gen.next_bar(controls)
        turn = beat_turn(events, now, bar)
        if turn is None:
            audio = renderer.render_roll(bar.roll, bar.controls, bar.meter, phrase=bar.phrase)
            heard = renderer.last_plan.notes
        else:
            head = renderer.render_roll(bar.roll, bar.controls, bar.meter, to_step=turn, phrase=bar.phrase)
            heard_head = renderer.last_plan.notes
            turned = apply_events(controls, events, now + bar.seconds, gen, knobs_only=True)
            bar = turn_bar(gen, before, bar, turned, turn)
            controls = bar.controls
            rest = renderer.render_roll(bar.roll, bar.controls, bar.meter, from_step=turn, phrase=bar.phrase)
            audio = np.concatenate([head, rest])
            heard = join_turn(heard_head, renderer.last_plan.notes, turn)
        pcm.append(audio)
        bars.append(bar)
        played.append(heard)
        stretches.append(renderer.last_plan.stretch)
        say(_bar_line(bar, now))
        now += len(audio) / renderer.sample_rate
    out = _finish(np.concatenate(pcm), renderer.sample_rate, args.seconds)
    _write_wav(args.out, out, renderer.sample_rate, wav_fd)
    if args.midi:
        played_to_midi(
            bars, args.midi, renderer.arranger, seconds=args.seconds, played=played, stretches=stretches
        )
    stats = summary(bars, len(out) / renderer.sample_rate, renderer)  # the files' length, not the bars'
    say(_summary_line(stats, args))
    if args.stats:
        args.stats.write_text(json.dumps(stats, indent=2) + "\n")
    return 0


def _meter(ranges, given: str | None, configured: str) -> str:
    """``--meter``, else the config's ``[knobs] meter``, checked against the bundle's meters."""
    if given is None:
        return ranges.check_meter(configured, "[knobs] meter")
    return ranges.check_meter(given, "--meter")


def check_outputs(out: Path, midi: Path | None) -> None:
    """ConfigError now, before generating, when an output cannot be written: a missing or read-only
    folder, a folder given as the file, the WAV to a terminal, or the MIDI file to stdout."""
    if _to_stdout(out) and sys.stdout.isatty():
        raise ConfigError("--out -: stdout is a terminal; pipe or redirect it (`... --out - > a.wav`)")
    if midi is not None and _to_stdout(midi):
        raise ConfigError("--midi -: the MIDI file cannot go to stdout; give a file name")
    for flag, path in (("--out", out), ("--midi", midi)):
        if path is None or _to_stdout(path):
            continue
        folder = path.parent
        if path.is_dir():
            raise ConfigError(f"{flag} {path}: is a folder; give a file name in it")
        if not folder.is_dir():
            raise ConfigError(
                f"{flag} {path}: the folder {folder} does not exist; create it or choose another"
            )
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"{flag} {path}: cannot write in {folder} (permissions); choose another folder")


def _to_stdout(path: Path | None) -> bool:
    return path is not None and str(path) == "-"


def _printer(stream):
    return lambda line: print(line, file=stream, flush=True)


def _claim_stdout() -> int:
    """Keep file descriptor 1 for the WAV alone: returns a duplicate of it and points fd 1 (and with it
    anything a C library prints there: the synth, onnxruntime) at stderr."""
    sys.stdout.flush()
    wav_fd = os.dup(1)
    os.dup2(2, 1)
    return wav_fd


def _write_wav(path: Path, pcm, sample_rate: int, fd: int | None = None) -> None:
    """16-bit WAV to ``path``, or for ``-`` to ``fd`` (stdout's duplicate from :func:`_claim_stdout`;
    built in memory: a pipe cannot seek back to the header)."""
    import io

    import soundfile

    if fd is None:
        soundfile.write(path, pcm, sample_rate, subtype="PCM_16")
        return
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm, sample_rate, subtype="PCM_16", format="WAV")
    with os.fdopen(fd, "wb") as out:
        out.write(buffer.getvalue())


def summary(bars, music_seconds: float, renderer) -> dict:
    """The figures of a render: bars, seconds of music, generation time per bar (ms) and real-time
    factor p50/p95, this process's peak RSS (MiB) and the synth settings used."""
    import numpy as np

    gen = np.array([b.gen_seconds for b in bars])
    rtf = gen / np.array([b.seconds for b in bars])
    synth = renderer.synth
    return {
        "bars": len(bars),
        "music_seconds": round(music_seconds, 3),
        "gen_ms_p50": float(np.percentile(gen, 50) * 1e3),
        "gen_ms_p95": float(np.percentile(gen, 95) * 1e3),
        "rtf_p50": float(np.percentile(rtf, 50)),
        "rtf_p95": float(np.percentile(rtf, 95)),
        "peak_rss_mb": peak_rss_mb(),
        "synth": {"soundfont": str(renderer.soundfont), "gain": synth.gain, "reverb": synth.reverb},
    }


def _finish(pcm, sample_rate: int, seconds: float):
    """Cut to ``seconds`` with a short fade-out (no click), clip to [-1, 1]."""
    import numpy as np

    pcm = pcm[: int(round(seconds * sample_rate))].copy()
    n = min(len(pcm), int(FADE_SECONDS * sample_rate))
    if n:
        pcm[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)[:, None]
    return np.clip(pcm, -1.0, 1.0)


def _bar_line(bar, at: float) -> str:
    c = bar.controls
    return (
        f"bar {bar.index:4d}  at {at:8.3f} s  gen {bar.gen_seconds * 1e3:7.2f} ms  notes {len(bar.notes):3d}"
        f"  style {c.style:.2f} tempo {c.tempo_bpm:.0f} mood {c.mood:+.2f} {bar.meter.name}"
    )


def _summary_line(stats: dict, args) -> str:
    return (
        f"{stats['bars']} bars, {stats['music_seconds']:.1f} s of music -> {args.out}"
        + (f" and {args.midi}" if args.midi else "")
        + f"; generation p50 {stats['gen_ms_p50']:.2f} ms, p95 {stats['gen_ms_p95']:.2f} ms"
        + f" per bar (real-time factor p50 {stats['rtf_p50']:.4f}); peak RSS {stats['peak_rss_mb']:.0f} MB"
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MiB; 0 where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            line = next((line for line in f if line.startswith("VmHWM:")), "VmHWM: 0 kB")
    except OSError:
        return 0.0
    return int(line.split()[1]) / 1024
