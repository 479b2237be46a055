"""Knob turns measured in the live box: `musicbox bench knobs`.

The box plays the bundle for real (:class:`~musicbox.runtime.box.supervisor.Supervisor`, a sounddevice
stream on a JACK dummy server, paced like a sound card) while a thread turns knobs as a listener would.

- :func:`sweep`: tempo and mood turned every ``every_s`` seconds for ``turning_s``, then left alone for
  ``quiet_s``: underruns, seconds of silence, and the longest wait between two bar lines (bars play
  throughout when it stays near the longest bar).
- :func:`latency`: one turn every ``every_s`` seconds at a random moment of the beat, of a random knob
  (style, tempo, mood, variation, volume) at random tempos across the range: seconds from the turn being
  posted to the first frame written for it leaving the player's callback, p50 and p95 per knob in ms and
  in beats (of the bar playing when the turn was made, as played: its tempo and the performance's
  stretch), the ms beyond one beat and the ms the worker took to
  write what was heard (a turn that comes too close before a beat line for its rewrite to be ready
  there is heard at the next one: one beat plus less than the writing time); the stream's output
  latency is reported beside, to add for the speaker. The splices are checked for clicks: the largest sample step within a crossfade of
  each splice against the largest sample step of the music elsewhere.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from musicbox.runtime.box.soak import JackDummy, _percentiles

KNOBS = ("style", "tempo", "mood", "variation", "volume")


def _box(tmp: str, bundle: Path, extra: str = ""):
    from musicbox.config import load_config
    from musicbox.runtime.box.assemble import build_box

    toml = Path(tmp) / "knobs.toml"
    toml.write_text(f'[knobs]\nbackend = "none"\n[recording]\nfolder = "{tmp}/rec"\n{extra}')
    return build_box(load_config(toml), bundle)


def _run(box, seconds: float, turner, on_audio=None) -> threading.Thread:
    """Play ``seconds`` with ``turner(box, stop)`` on its own thread; returns after the box stopped."""
    stop = threading.Event()
    thread = threading.Thread(target=turner, args=(box, stop), daemon=True)
    thread.start()
    try:
        box.run(seconds, on_audio=on_audio)
    finally:
        stop.set()
        thread.join(5)
    return thread


def _wait_playing(box, stop: threading.Event, timeout_s: float = 30.0) -> bool:
    end = time.monotonic() + timeout_s
    while box.ring.bars_played < 2 and time.monotonic() < end:
        if stop.wait(0.05):
            return False
    return box.ring.bars_played >= 2


def sweep(bundle: Path, every_s: float = 0.25, turning_s: float = 30.0, quiet_s: float = 15.0) -> dict:
    """Tempo and mood turned every ``every_s`` s for ``turning_s`` s, then ``quiet_s`` s untouched."""
    turned: list[float] = []

    def turner(box, stop: threading.Event) -> None:
        if not _wait_playing(box, stop):
            return
        rng = random.Random(1)
        lo, hi = box.min_bpm, box.max_bpm
        start = time.monotonic()
        while not stop.wait(every_s) and time.monotonic() - start < turning_s:
            box.set_controls(replace(box.controls, tempo_bpm=rng.uniform(lo, hi), mood=rng.uniform(-1, 1)))
            turned.append(time.monotonic())

    with tempfile.TemporaryDirectory() as tmp, JackDummy(name=f"mbsweep{id(turned)}"):
        box = _box(tmp, bundle)
        _run(box, turning_s + quiet_s + 8.0, turner)
    stats = box.final_stats
    assert stats is not None  # run() sets it as the box stops
    log = box.player.log
    kept = range(max(0, log.n_marks - log.MARKS), log.n_marks)
    lines = [log.mark_times[i % log.MARKS] for i in kept if log.marks[i % log.MARKS, 4] == 0]
    lines = [t for t in lines if turned and t >= turned[0]]  # from the first turn on
    gaps = np.diff(lines) if len(lines) > 1 else np.array([0.0])
    return {
        "turns": len(turned),
        "every_s": every_s,
        "turning_s": turning_s,
        "quiet_s": quiet_s,
        "bars_played": stats.bars_played,
        "underruns": stats.underruns,
        "silence_s": stats.silence_s,
        "splices": stats.splices,
        "longest_between_bar_lines_s": round(float(gaps.max()), 3),
        "longest_bar_s": round(240.0 / box.min_bpm, 3),
    }


def latency(bundle: Path, minutes: float = 2.0, every_s: float = 2.0, seed: int = 0) -> dict:
    """One turn of a random knob every ``every_s`` seconds for ``minutes``; see the module docstring."""
    from musicbox.runtime.controls import Button

    samples: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in KNOBS}
    # per turn: seconds to the first changed audio, the same in beats, seconds beyond one beat, and the
    # seconds the worker took to write what was heard
    heard: list[np.ndarray] = []

    def turner(box, stop: threading.Event) -> None:
        if not _wait_playing(box, stop):
            return
        rng = random.Random(seed)
        n_styles = max(1, len(box.style_names))
        while not stop.wait(rng.uniform(0.5, 1.5) * every_s):
            knob = rng.choice(KNOBS)
            c = box.controls
            beat_s = box.player.beat_seconds() or 60.0 / c.tempo_bpm  # as played: ritardandos included
            posted = time.monotonic()
            if knob == "volume":
                box.post(Button.VOLUME_DOWN if box.player.volume_db > -9 else Button.VOLUME_UP)
                got = _until(stop, lambda t=posted: box.player.volume_applied_at >= t)
                took = box.player.volume_applied_at - posted if got else None
                made = 0.0
            else:
                before = len(box.turns)
                box.set_controls(_turned(c, knob, rng, n_styles, box.min_bpm, box.max_bpm))
                got = _until(stop, lambda n=before: len(box.turns) > n)
                turn = box.turns[-1] if got else None
                took, made = (turn.heard_s, turn.made_s) if turn is not None else (None, 0.0)
            if took is not None:
                samples[knob].append((took, took / beat_s, took - beat_s, made))

    with tempfile.TemporaryDirectory() as tmp, JackDummy(name=f"mblat{id(samples)}"):
        box = _box(tmp, bundle)
        _run(box, minutes * 60.0, turner, on_audio=heard.append)
    stats = box.final_stats
    assert stats is not None  # run() sets it as the box stops
    figures: dict = {"minutes": minutes, "every_s": every_s}
    for knob, values in samples.items():
        figures[knob] = {
            "turns": len(values),
            **_percentiles("ms", [1e3 * v[0] for v in values]),
            **_percentiles("beats", [v[1] for v in values]),
            **_percentiles("ms_beyond_a_beat", [1e3 * v[2] for v in values]),
            **_percentiles("write_ms", [1e3 * v[3] for v in values]),
        }
    stream = box.player._stream
    figures["output_latency_ms"] = round(1e3 * float(getattr(stream, "latency", 0.0) or 0.0), 1)
    figures.update(
        underruns=stats.underruns,
        silence_s=stats.silence_s,
        bars_played=stats.bars_played,
        splices=stats.splices,
        **_clicks(np.concatenate(heard) if heard else np.zeros((0, 2)), box),
    )
    return figures


def _turned(c, knob: str, rng: random.Random, n_styles: int, lo: float, hi: float):
    if knob == "style":
        return replace(c, style=float((round(c.style) + rng.randrange(1, n_styles)) % n_styles))
    if knob == "tempo":
        return replace(c, tempo_bpm=rng.uniform(lo, hi))
    if knob == "mood":
        return replace(c, mood=-1.0 if c.mood > 0 else 1.0)
    return replace(c, variation=rng.uniform(0.0, 1.0))


def _until(stop: threading.Event, test, timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while not test():
        if time.monotonic() > end or stop.wait(0.002):
            return False
    return True


def _clicks(pcm: np.ndarray, box) -> dict:
    """The largest sample step within a crossfade of each splice vs the largest elsewhere (all played
    audio, before the volume)."""
    if len(pcm) < 2:
        return {"splice_jump_max": None, "music_jump_max": None}
    jumps = np.abs(np.diff(pcm, axis=0)).max(axis=1)
    near = np.zeros(len(jumps), bool)
    width = box.player._xfade_frames + 64
    start = box.player.log.written - len(pcm)  # the log frame of pcm[0]
    for frame in box.splice_frames:
        at = frame - start
        if 0 <= at < len(jumps):
            near[max(0, at - 64) : at + width] = True
    splice = float(jumps[near].max()) if near.any() else 0.0
    music = float(jumps[~near].max()) if (~near).any() else 0.0
    return {
        "splices_checked": int(sum(0 <= f - start < len(jumps) for f in box.splice_frames)),
        "splice_jump_max": round(splice, 4),
        "music_jump_max": round(music, 4),
        "splice_click_free": splice <= music,
    }
