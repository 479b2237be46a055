"""`musicbox bench`: the box's performance figures (docs/design.md), each against its target, as a table and JSON.

``musicbox bench [all]`` measures, in one run:

- generation real-time factor (bar generation time / bar duration), INT8 and FP32 generators interleaved
  bar by bar (side by side, same seed and knobs), p50/p95, and the INT8 speed-up;
- synth real-time factor (``render.measure_synth_rtf``);
- process start -> first audio sample, and the peak RSS of that process: ``musicbox render`` in a
  subprocess, timed from spawn to its first bar line (printed once the first bar's audio exists); its
  peak RSS comes from the JSON summary it writes (``render --stats``);
- CPU seconds per minute of music (generation + synthesis, this process);
- knob change -> first changed bar: from the state after the bar playing (what the box's supervisor
  keeps), the first regenerated bar differs (in bars; 1 = at the next bar line) and its regeneration
  time must fit in a bar.

Synthesis uses the box's ``[synth]`` settings (``--config``, else the box's own file or the defaults),
as the box and ``musicbox render`` do. Targets come from ``musicbox/targets.py``.

``musicbox bench soak --minutes M --kill-every S`` runs the paced soak (``musicbox.runtime.box.soak``).

``musicbox bench remote [--seconds S] [--device]`` measures the web remote's RSS and CPU with one page
open, and the stream's CPU (``musicbox.remote.footprint``).

``musicbox bench save [--minutes M]`` plays the real box with the web remote and one page listening for M
minutes (10 by default: the SAVE buffer full), presses SAVE three times at once and reports the peak
memory of every process of the box during the saves and whether all three recordings were written
(``musicbox.remote.savebench``).

``musicbox bench midi [--seconds S]`` plays the box with MIDI out on a JACK dummy server (60 s by default)
and reports the MIDI clock's jitter and the note-vs-audio offset (``musicbox.runtime.box.midibench``).

``musicbox bench macs [--precision P] [--gmacs G]`` counts the multiply-accumulates of one bar per stage
(from ONNX Runtime's profile of what ran, ``musicbox.runtime.macs``), times the same bars unprofiled to
get this machine's effective rate (MACs / second), counts the worst bar (a fresh bar, every sampler step,
at each meter's style with the most denoiser rows) and estimates its time on each board of
``musicbox.runtime.board_rates`` as a range from published rates, and as a share of the bar at the
fastest tempo (or at ``--gmacs`` G MACs per second, a rate measured on your board).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path


def verdict(name: str, result: dict) -> str:
    """``yes``, or ``NO`` with why: the value, which side of its target (``musicbox/targets.py``) it
    falls, and by how much."""
    from musicbox.targets import target

    if result["ok"]:
        return "yes"
    if result["value"] is None:
        return "NO: never happened (no change was seen)"
    goal = target(name)
    value = float(result["value"])
    side = {"<=": "above", ">=": "below"}.get(goal.comparison, "not")
    return f"NO: {value:.4g} is {side} the target {goal.bound:g} (off by {abs(value - goal.bound):.3g})"


def register(sub):
    p = sub.add_parser("bench", help="measure the performance targets (or `bench soak`, `macs`, `remote`)")
    p.add_argument(
        "mode",
        nargs="?",
        choices=("all", "soak", "macs", "remote", "knobs", "midi", "save"),
        default="all",
        help="all figures, the soak, MACs, the web remote, knob turns in the live box, MIDI out's timing, "
        "or the box's memory during three SAVEs at once",
    )
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--bundle", type=Path, help="bundle folder (default: the shipped assets/bundle)")
    p.add_argument(
        "--bars",
        type=int,
        default=64,
        help="bars per measurement (default 64: a p95 of 16 bars is their second slowest)",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="musicbox.toml whose [synth] to use (default: the box's); soak: the configuration to play "
        "(default: the defaults)",
    )
    p.add_argument(
        "--minutes",
        type=float,
        help="soak, knobs: minutes to play (default 30); save: minutes played before the presses (10)",
    )
    p.add_argument(
        "--kill-every",
        type=float,
        default=60.0,
        help="soak: SIGKILL the worker at random times S seconds apart on average (0 = never)",
    )
    p.add_argument("--precision", default="fp32", help="macs: the variant to count (default fp32)")
    p.add_argument("--gmacs", type=float, help="macs: also estimate at this rate, 1e9 MACs per second")
    p.add_argument(
        "--seconds",
        type=float,
        help="remote: seconds measured per run (default 30); midi: seconds played (60)",
    )
    p.add_argument(
        "--device", action="store_true", help="remote: play on the default audio device, not a JACK dummy"
    )
    p.set_defaults(run=run)


def run(args) -> int:
    from musicbox.config import resolve_bundle

    root = resolve_bundle(args.bundle)
    if args.mode == "soak":
        return _run_soak(root, args)
    if args.mode == "save":
        return _run_save(root, args)
    if args.mode == "knobs":
        return _run_knobs(root, args)
    if args.mode == "macs":
        figures = measure_macs(root, args.precision, max(2, args.bars), args.gmacs)
        _print_macs(figures)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return 0
    if args.mode == "remote":
        from musicbox.remote.footprint import measure

        figures = measure(root, args.seconds or 30.0, jack=not args.device)
        text = json.dumps(figures, indent=2)
        print(text)
        if args.json:
            Path(args.json).write_text(text + "\n")
        return 0 if figures["ok"] else 1
    if args.mode == "midi":
        from musicbox.runtime.box.midibench import measure as measure_midi

        text = json.dumps(measure_midi(root, args.seconds or 60.0), indent=2)
        print(text)
        if args.json:
            Path(args.json).write_text(text + "\n")
        return 0
    figures = measure_all(root, max(2, args.bars), args.config)
    _print_table(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _run_knobs(root: Path, args) -> int:
    """``bench knobs``: a sweep (tempo and mood every 0.25 s for 30 s, then 15 s untouched) and the
    turn -> audio latency of every knob (a turn every 2 s for ``--minutes``, default 30 here too: pass
    ``--minutes 10`` for the 10-minute run); exit 1 when the sweep goes silent or underruns."""
    from musicbox.runtime.box.turns import latency, sweep

    figures = {"sweep": sweep(root), "latency": latency(root, args.minutes or 30.0)}
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    s = figures["sweep"]
    return 0 if s["underruns"] == 0 and s["silence_s"] <= 0.5 else 1


def _run_soak(root: Path, args) -> int:
    """``bench soak``: print (and with ``--json`` write) the soak's figures; exit 1 if a target fails."""
    from musicbox.runtime.box.soak import soak

    figures = soak(root, args.minutes or 30.0, args.kill_every, args.config)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if figures["ok"] and figures["cpu_ok"] is not False else 1


def _run_save(root: Path, args) -> int:
    """``bench save``: print (and with ``--json`` write) the memory during three SAVEs at once; exit 1
    when a recording is missing, the box underran or its processes passed the target."""
    from musicbox.remote.savebench import measure

    figures = measure(root, 10.0 if args.minutes is None else args.minutes)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if figures["ok"] else 1


def _heaviest_style(manifest, meter: str) -> float:
    """The style knob position (a detent) whose bars of ``meter`` run the most denoiser rows a call; the
    first style where all run alike."""
    names = [s.name for s in manifest.controls.styles]
    return float(max(range(len(names)), key=lambda i: len(manifest.sampler.row_guidance(meter, names[i]))))


def measure_all(root: Path, bars: int, config_path: Path | None = None) -> dict:
    """Every figure; ``results`` maps a name to ``{"value", "target", "ok"}`` plus details.
    ``config_path``: the musicbox.toml whose ``[synth]`` renders (None: the box's own, as ``play``)."""
    from musicbox.config import load_config
    from musicbox.runtime.bundle import INT8_PREFERENCE, Bundle
    from musicbox.runtime.controls import Controls

    base = Bundle.open(root, precision="fp32")
    int8s = [p for p in INT8_PREFERENCE if p in base.manifest.variants]
    details: dict = {"bundle": str(root), "bars": bars}
    values: dict = {}
    # every meter the model plays, each at the style whose bars in it run the most guidance rows (the
    # slowest: a meter-guided, style-guided 3/4 bar three rows a call); the first is the default knobs'
    meters = base.manifest.representation.meters
    by_meter = {
        m: _generation(root, int8s, bars, Controls(style=_heaviest_style(base.manifest, m), meter=m))
        for m in meters
    }
    gen = by_meter[meters[0]]
    details["generation"] = by_meter
    int8 = min(int8s, key=lambda p: gen[p]["bar_ms_p50"]) if int8s else None  # as `auto` picks
    if int8:
        details["int8_variant"] = int8
        values["generation_rtf_int8_p95"] = max(g[int8]["rtf_p95"] for g in by_meter.values())
        values["int8_speedup_per_bar"] = gen[f"{int8}_speedup_p50"]
    synth, cpu = _synth_and_cpu(root, int8 or "fp32", bars, load_config(config_path))
    details["synth"] = synth
    values["synth_rtf_p95"] = synth["rtf_p95"]
    values["cpu_seconds_per_music_minute"] = cpu
    start = _start_and_rss(root, config_path)
    details["start"] = start
    values["start_to_first_audio_s"] = start["first_audio_s"]
    values["peak_rss_mb"] = start["peak_rss_mb"]
    knob = _knob_change(root, int8 or "fp32")
    details["knob"] = knob
    values["knob_to_change_bars"] = knob["worst_bars"]
    return {"results": {k: _judge(k, v) for k, v in values.items()}, "details": details}


def measure_macs(root: Path, precision: str, bars: int, gmacs: float | None = None) -> dict:
    """MACs per bar per stage kind (denoiser, decoder, encoder) of ``precision`` at the default knobs,
    this machine's effective rate (MACs / unprofiled bar time, one thread), the worst bar of each meter
    (the first bar of a generator: every sampler step, no theme returning; at the style whose bars in that
    meter run the most denoiser rows, ``SamplerInfo.row_guidance``) and, for the worst of those as a
    share of its bar at the fastest tempo, the lower and upper estimate on each board of
    :data:`~musicbox.runtime.board_rates.BOARD_RATES` (and at ``gmacs`` 1e9 MACs per second)."""
    from musicbox.runtime.board_rates import BOARD_RATES
    from musicbox.runtime.bundle import Bundle
    from musicbox.runtime.controls import Controls
    from musicbox.runtime.generator import Generator

    controls = Controls()
    stages, ops, _ = _profiled_macs(root, precision, controls, bars)
    timing = Generator(Bundle.open(root, precision=precision, threads=1), seed=0)
    timing.next_bar(controls)  # warm-up: session creation is start-up
    seconds = _pcts([timing.next_bar(controls).gen_seconds for _ in range(bars)])["p50"]
    total = sum(stages.values())
    manifest = timing.manifest
    fastest = manifest.controls.tempo.max_bpm
    styles = manifest.controls.styles
    by_meter: dict[str, dict] = {}
    for meter in manifest.representation.meters:
        style = int(_heaviest_style(manifest, meter))
        at = Controls(style=float(style), meter=meter, tempo_bpm=fastest)
        counts, _, calls = _profiled_macs(root, precision, at, 1)
        by_meter[meter] = {
            "style": styles[style].name,
            "rows": 1 + len(manifest.sampler.row_guidance(meter, styles[style].name)),
            "denoiser_calls": calls,
            "macs": sum(counts.values()),
            "bar_seconds": at.bar_seconds(timing.meter(at).steps),
        }
    worst_meter = max(by_meter, key=lambda m: by_meter[m]["macs"] / by_meter[m]["bar_seconds"])
    worst = {"meter": worst_meter, "tempo_bpm": fastest, **by_meter[worst_meter]}
    int8 = precision != "fp32"
    ranges = {name: rate.seconds(worst["macs"], int8) for name, rate in BOARD_RATES.items()}
    if gmacs:
        ranges[f"at {gmacs:g} GMAC/s"] = (worst["macs"] / (gmacs * 1e9),) * 2
    estimates = {
        name: {"bar_ms": [s * 1e3 for s in pair], "share": [s / worst["bar_seconds"] for s in pair]}
        for name, pair in ranges.items()
    }
    return {
        "bundle": str(root),
        "precision": precision,
        "bars": bars,
        "bar_seconds": controls.bar_seconds(timing.meter(controls).steps),
        "macs_per_bar": {**stages, "total": total},
        "macs_per_bar_by_op": ops,
        "this_machine": {"bar_ms_p50": seconds * 1e3, "effective_gmacs": total / seconds / 1e9},
        "worst_bar": {**worst, "by_meter": by_meter},
        "boards": {name: asdict(rate) for name, rate in BOARD_RATES.items()},
        "estimates": estimates,
    }


def _profiled_macs(
    root: Path, precision: str, controls, bars: int
) -> tuple[dict[str, float], dict[str, float], int]:
    """MACs per bar of ``bars`` bars from a fresh generator at ``controls``, by stage kind (denoiser,
    decoder, encoder) and by op type, and how many denoiser calls those bars made, from ONNX Runtime's
    profile of one thread."""
    import tempfile

    from musicbox.runtime.bundle import Bundle
    from musicbox.runtime.generator import Generator
    from musicbox.runtime.macs import profile_macs, profile_runs

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Bundle.open(root, precision=precision, threads=1, profile_prefix=f"{tmp}/")
        generator = Generator(bundle, seed=0)
        for _ in range(bars):
            generator.next_bar(controls)
        profiles = bundle.sessions.end_profiling()
        variant = bundle.variant
        kind = {stage.file: "denoiser" for stage in variant.denoiser}
        kind.update({variant.decoder.file: "decoder", variant.encoder.file: "encoder"})
        stages: dict[str, float] = {"denoiser": 0.0, "decoder": 0.0, "encoder": 0.0}
        ops: dict[str, float] = {}
        for file, path in profiles.items():
            counts = profile_macs(path)
            stages[kind[file]] += sum(counts.values()) / bars
            for op, n in counts.items():
                ops[op] = ops.get(op, 0.0) + n / bars
        calls = profile_runs(profiles[variant.denoiser[0].file])
    return stages, ops, calls


def _print_macs(figures: dict) -> None:
    m, here, w = figures["macs_per_bar"], figures["this_machine"], figures["worst_bar"]
    print(
        f"MACs per bar ({figures['precision']}, {figures['bars']} bars, bar = {figures['bar_seconds']:.2f} s):"
    )
    for stage in ("denoiser", "decoder", "encoder", "total"):
        print(f"  {stage:<9} {m[stage] / 1e6:10.2f} M")
    print(
        f"this machine: {here['bar_ms_p50']:.2f} ms per bar (p50) = {here['effective_gmacs']:.2f} GMAC/s effective"
    )
    print("worst bar per meter (first bar: every sampler step, the style with the most denoiser rows):")
    for meter, b in w["by_meter"].items():
        print(
            f"  {meter:<4} {b['style']:<11} {b['rows']} rows x {b['denoiser_calls']} calls: "
            f"{b['macs'] / 1e6:7.1f} M in a bar of {b['bar_seconds']:.3f} s at {w['tempo_bpm']:g} BPM"
        )
    print(
        f"estimates for the worst ({w['meter']} {w['style']}, {w['macs'] / 1e6:.1f} M, one core, "
        f"{figures['precision']}; docs/boards.md has the sources):"
    )
    for name, e in figures["estimates"].items():
        board = figures["boards"].get(name)
        how = f"{board['core']} {board['ghz']:g} GHz" if board else "given"
        (lo, hi), (slo, shi) = e["bar_ms"], e["share"]
        print(f"  {name:<17} {how:<20} {lo:7.1f} - {hi:7.1f} ms = {slo:6.1%} - {shi:6.1%} of the bar")


def _judge(name: str, value: float | None) -> dict:
    """``value`` against its target; None (never happened, e.g. a knob that changed nothing) fails."""
    from musicbox.targets import target

    goal = target(name)
    if value is None:
        return {"value": None, "target": str(goal), "ok": False}
    return {"value": round(float(value), 5), "target": str(goal), "ok": goal.met(value)}


def _pcts(values) -> dict:
    import numpy as np

    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


def _generation(root: Path, int8s: Sequence[str], bars: int, controls) -> dict:
    """The INT8 variants' and the FP32 generators interleaved bar by bar (one thread each, same seed and
    ``controls``); per INT8 variant its per-bar speed-up over FP32 (``{variant}_speedup_p50``)."""
    from musicbox.runtime.bundle import Bundle
    from musicbox.runtime.generator import Generator

    precisions = [*int8s, "fp32"]
    gens = {p: Generator(Bundle.open(root, precision=p), seed=0) for p in precisions}
    for g in gens.values():
        g.next_bar(controls)  # warm-up: session creation is start-up, not generation
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(bars):
        for p, g in gens.items():
            times[p].append(g.next_bar(controls).gen_seconds)
    bar_s = controls.bar_seconds(gens[precisions[0]].meter(controls).steps)
    out: dict = {}
    for p in precisions:
        ms = _pcts([t * 1e3 for t in times[p]])
        out[p] = {"bar_ms_p50": ms["p50"], "bar_ms_p95": ms["p95"]}
        out[p].update({"rtf_p50": ms["p50"] / 1e3 / bar_s, "rtf_p95": ms["p95"] / 1e3 / bar_s})
    for p in int8s:
        out[f"{p}_speedup_p50"] = out["fp32"]["bar_ms_p50"] / out[p]["bar_ms_p50"]
    return out


def _synth_and_cpu(root: Path, precision: str, bars: int, config) -> tuple[dict, float]:
    """Synth RTF over generated bars, and CPU seconds (generation + synthesis) per minute of music,
    synthesized with ``config``'s ``[synth]`` (as ``musicbox render`` does)."""
    from musicbox.runtime.bundle import Bundle
    from musicbox.runtime.controls import Controls
    from musicbox.runtime.generator import Generator
    from musicbox.runtime.render import Renderer, measure_synth_rtf

    bundle = Bundle.open(root, precision=precision)
    gen, controls = Generator(bundle, seed=1), Controls()
    renderer = Renderer(bundle.manifest.controls, config.synth, config.audio.sample_rate)
    first = gen.next_bar(controls)
    renderer.render_roll(first.roll, controls, first.meter)  # warm-up: presets, sessions
    cpu0, music = time.process_time(), 0.0
    rolls = []
    for _ in range(bars):
        bar = gen.next_bar(controls)
        music += len(renderer.render_roll(bar.roll, controls, bar.meter)) / renderer.sample_rate
        rolls.append(bar.roll[0])
    cpu_per_minute = (time.process_time() - cpu0) / (music / 60.0)
    import numpy as np

    synth = measure_synth_rtf(renderer, np.stack(rolls), controls, first.meter)
    renderer.close()
    return synth, cpu_per_minute


def _start_and_rss(root: Path, config_path: Path | None) -> dict:
    """Spawn ``musicbox render`` for 4 bars: seconds until its first bar line, and its peak RSS (from
    the summary it writes with ``--stats``)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.json"
        cmd = [sys.executable, "-m", "musicbox.cli", "render", "--seconds", "9.6", "--bundle", str(root)]
        cmd += ["--out", str(Path(tmp) / "start.wav"), "--stats", str(stats)]
        cmd += ["--config", str(config_path)] if config_path else []
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stderr is not None  # both PIPE
        first = None
        for line in proc.stdout:
            if first is None and line.startswith("bar "):
                first = time.perf_counter() - t0
        err = proc.stderr.read()
        if proc.wait() != 0 or first is None:
            raise RuntimeError(f"`{' '.join(cmd)}` failed: {err.strip()[-500:]}")
        summary = json.loads(stats.read_text())
    return {
        "first_audio_s": first,
        "peak_rss_mb": summary["peak_rss_mb"],
        "synth": summary["synth"],
        "command": " ".join(cmd[1:]),
    }


def _knob_change(root: Path, precision: str) -> dict:
    """For each knob: from the state after bar 3 (the box's path: the supervisor keeps the state after
    each bar), regenerate with the knob turned; bars until a bar differs from the unchanged timeline
    (1 = the very next bar) and the regeneration time."""
    import numpy as np

    from musicbox.runtime.bundle import Bundle
    from musicbox.runtime.controls import Controls
    from musicbox.runtime.generator import Generator

    base = Controls()
    gen = Generator(Bundle.open(root, precision=precision), seed=2)
    timeline = [gen.next_bar(base) for _ in range(4)]
    after_bar_3 = gen.get_state()
    timeline += [gen.next_bar(base) for _ in range(4)]
    turns = {"style": replace(base, style=1.0), "tempo": replace(base, tempo_bpm=150.0)}
    turns["mood"] = replace(base, mood=1.0)
    out: dict = {}
    for name, turned in turns.items():
        gen.set_state(after_bar_3)
        bars, regen = None, []
        for i, old in enumerate(timeline[4:], start=1):
            t0 = time.perf_counter()
            new = gen.next_bar(turned)
            regen.append(time.perf_counter() - t0)
            if not np.array_equal(new.roll, old.roll) or turned.tempo_bpm != old.controls.tempo_bpm:
                bars = i
                break
        out[name] = {
            "bars": bars,
            "regen_ms": regen[0] * 1e3,
            "bar_ms": turned.bar_seconds(gen.meter(turned).steps) * 1e3,
        }
    changed = [v["bars"] for v in out.values()]
    out["worst_bars"] = None if None in changed else max(changed)
    return out


def _print_table(figures: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from musicbox.targets import target

    table = Table(title="musicbox bench (targets: docs/design.md)")
    for col in ("figure", "value", "target", "unit", "ok"):
        table.add_column(col)
    for name, r in figures["results"].items():
        value = "never" if r["value"] is None else f"{r['value']:.4g}"
        style = "green" if r["ok"] else "red"
        table.add_row(name, value, r["target"], target(name).unit, f"[{style}]{verdict(name, r)}[/]")
    console = Console()
    console.print(table)
    for meter, gen in figures["details"]["generation"].items():
        for p, g in gen.items():
            if isinstance(g, dict):
                console.print(
                    f"generation {meter} {p}: {g['bar_ms_p50']:.2f} / {g['bar_ms_p95']:.2f} ms per bar "
                    f"(p50/p95), RTF {g['rtf_p50']:.4f} / {g['rtf_p95']:.4f}"
                )
