"""`musicbox render`: generate and render music offline, as fast as the machine allows, to a WAV file.

Bar by bar: the generator writes a bar for the current knobs, the renderer plays it; a ``--script``
of knob changes ``[{"at": seconds, "style"|"tempo"|"mood": value}, ...]`` is applied at the first bar
line at or after each ``at`` (as the box does). Prints each bar's generation time, then a summary;
``--stats FILE.json`` also writes the summary as JSON (``musicbox bench`` reads the peak RSS there).
The synth settings are the box's: the config's ``[synth]`` (``--config``, else the box's own file or the
defaults, as ``musicbox play`` reads them); ``--soundfont`` overrides its SoundFont.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from musicbox.errors import ConfigError
from musicbox.precision import PRECISION_CHOICES

FADE_SECONDS = 0.02


def register(sub):
    p = sub.add_parser("render", help="render music offline to a WAV (and MIDI) file")
    p.add_argument("--seconds", type=float, required=True, help="length of music to write (s)")
    p.add_argument("--bundle", type=Path, help="bundle folder (default: the shipped assets/bundle)")
    p.add_argument("--style", help="style name or knob position 0..n_styles-1 (default: the first style)")
    p.add_argument("--tempo", type=float, default=100.0, help="beats per minute (default 100)")
    p.add_argument("--mood", type=float, default=0.0, help="-1 dark .. +1 bright (default 0)")
    p.add_argument(
        "--variation",
        type=float,
        default=None,
        help="0 literal returns .. 1 ever new (default: the config's)",
    )
    p.add_argument("--seed", type=int, default=0, help="noise seed: same seed, same music")
    p.add_argument(
        "--precision", choices=PRECISION_CHOICES, default="auto", help="model variant (default auto)"
    )
    p.add_argument("--threads", type=int, default=1, help="inference threads (0 = all cores but one)")
    p.add_argument("--soundfont", type=Path, help="a .sf2/.sf3 (default: search the usual places)")
    p.add_argument("--script", type=Path, help='JSON list of knob changes [{"at": s, "style": 1.5}, ...]')
    p.add_argument("--out", type=Path, required=True, help="WAV file to write")
    p.add_argument("--midi", type=Path, help="also write a standard MIDI file, one track per part")
    p.add_argument("--config", type=Path, help="musicbox.toml whose [synth] to use (default: the box's)")
    p.add_argument("--stats", type=Path, help="also write the summary figures to this JSON file")
    p.set_defaults(run=run)


def parse_style(value: str | None, manifest) -> float:
    """A style name or a number -> knob position (default: the first style, 0)."""
    if value is None:
        return 0.0
    try:
        return float(value)
    except ValueError:
        return float(manifest.controls.style_index(value))


def apply_events(controls, events: list, now: float, gen):
    """Controls after every script event (``device.scripted.ScriptEvent``) with ``at <= now``, whose
    buttons act on the generator ``gen`` as the box's do (next: new noise; keep, new: the form); the
    applied events are consumed from ``events``."""
    from musicbox.device.buttons import Button
    from musicbox.runtime.form import keep, renew

    actions = {
        Button.NEXT: lambda s: s.reseeded(s.seed + 1),
        Button.KEEP: keep,
        Button.NEW: renew,
    }
    while events and events[0].at <= now + 1e-9:
        event = events.pop(0)
        controls = event.apply(controls)
        if event.button in actions:
            gen.set_state(actions[event.button](gen.get_state()))
    return controls


def run(args) -> int:
    import numpy as np
    import soundfile

    from musicbox.config import load_config, resolve_bundle
    from musicbox.device.scripted import load_script
    from musicbox.runtime.bundle import Bundle
    from musicbox.runtime.controls import Controls
    from musicbox.runtime.generator import Generator
    from musicbox.runtime.render import Renderer

    if args.seconds <= 0:
        raise ConfigError("--seconds must be > 0")
    bundle = Bundle.open(resolve_bundle(args.bundle), precision=args.precision, threads=args.threads)
    manifest = bundle.manifest
    print(f"bundle {bundle.path}: {bundle.precision} ({bundle.precision_reason})", flush=True)
    variation = load_config(None).knobs.variation if args.variation is None else args.variation
    if not 0.0 <= variation <= 1.0:
        raise ConfigError(f"--variation {variation:g}: must be from 0 (literal returns) to 1 (ever new)")
    controls = Controls(parse_style(args.style, manifest), args.tempo, args.mood, variation)
    style_names = [style.name for style in manifest.controls.styles]
    events = load_script(args.script, style_names) if args.script else []
    config = load_config(args.config)
    synth = config.synth if args.soundfont is None else replace(config.synth, soundfont=args.soundfont)
    renderer = Renderer(manifest.controls, synth, config.audio.sample_rate)
    gen = Generator(bundle, seed=args.seed)
    pcm, bars, now = [], [], 0.0
    while now < args.seconds:
        controls = apply_events(controls, events, now, gen)
        bar = gen.next_bar(controls)
        audio = renderer.render_roll(bar.roll, bar.controls)
        pcm.append(audio)
        bars.append(bar)
        _print_bar(bar, now)
        now += len(audio) / renderer.sample_rate
    out = _finish(np.concatenate(pcm), renderer.sample_rate, args.seconds)
    soundfile.write(args.out, out, renderer.sample_rate, subtype="PCM_16")
    if args.midi:
        _write_midi(args.midi, bars, manifest)
    stats = summary(bars, now, renderer)
    _print_summary(stats, args)
    if args.stats:
        args.stats.write_text(json.dumps(stats, indent=2) + "\n")
    return 0


def summary(bars, music_seconds: float, renderer) -> dict:
    """The figures of a render: bars, seconds of music, generation time per bar (ms) and real-time
    factor p50/p95, this process's peak RSS (MiB) and the synth settings used."""
    import numpy as np

    gen = np.array([b.gen_seconds for b in bars])
    rtf = gen / np.array([b.controls.bar_seconds() for b in bars])
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


def _print_bar(bar, at: float) -> None:
    c = bar.controls
    print(
        f"bar {bar.index:4d}  at {at:7.2f} s  gen {bar.gen_seconds * 1e3:7.2f} ms  notes {len(bar.notes):3d}"
        f"  style {c.style:.2f} tempo {c.tempo_bpm:.0f} mood {c.mood:+.2f}",
        flush=True,
    )


def _print_summary(stats: dict, args) -> None:
    print(
        f"{stats['bars']} bars, {stats['music_seconds']:.1f} s of music -> {args.out}"
        + (f" and {args.midi}" if args.midi else "")
        + f"; generation p50 {stats['gen_ms_p50']:.2f} ms, p95 {stats['gen_ms_p95']:.2f} ms"
        + f" per bar (real-time factor p50 {stats['rtf_p50']:.4f}); peak RSS {stats['peak_rss_mb']:.0f} MB",
        flush=True,
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MiB; 0 where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            line = next((line for line in f if line.startswith("VmHWM:")), "VmHWM: 0 kB")
    except OSError:
        return 0.0
    return int(line.split()[1]) / 1024


def _write_midi(path: Path, bars, manifest) -> None:
    """The bars' rolls as one MIDI file, one track per part (``runtime/midi.py``), with the first bar's
    style's General MIDI programs and tempo (a scripted change is heard in the WAV, not in the MIDI file)."""
    import numpy as np

    from musicbox.runtime.midi import roll_to_midi

    first = bars[0].controls
    styles = manifest.controls.styles
    style = styles[min(len(styles) - 1, max(0, round(first.style)))]
    roll = np.concatenate([bar.roll for bar in bars])
    roll_to_midi(roll, path, bpm=first.tempo_bpm, programs=style.arrangement.programs)
