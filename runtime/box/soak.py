"""`musicbox bench soak`: the box played in real time with its worker SIGKILLed about every minute.

:func:`soak` starts a JACK dummy server (a real-time-paced device, no sound card needed), plays the
bundle through the real box (:class:`~musicbox.runtime.box.supervisor.Supervisor`, sounddevice stream on
JACK) for ``--minutes``, kills the worker at random moments averaging ``--kill-every`` seconds apart (so
the kills land at every phase of a bar; 0 = no kills) and reports, as JSON: underruns (episodes, target 0)
and the seconds of silence they cost; worker restarts; per recovery p50/p95 of the detection time (last
heartbeat to the decision to replace), the replacement's ready time (bundle loaded) and its first bar in
the ring (which waits for a free ring slot while the buffer is full), all from the decision; the CPU
seconds per minute of music of the whole box (main process, fork server, every worker; not the JACK
server), in all and from 30 s in (the steady state; target <= 0.8 without kills, ``cpu_ok``), with the
start-up's CPU seconds apart; and the main process's RSS drift (MiB from 30 s in to the end; target <= 5).
The server's period is the box's ``[audio] blocksize``, as on a sound card the box opens.

``jackd --no-realtime -d dummy`` consumes audio at exactly the sample rate, so a PortAudio stream on it
is paced like a real card. The server gets a unique name through ``JACK_DEFAULT_SERVER`` (set in this
process's environment, which PortAudio's JACK host API reads when it initializes), and PortAudio is
re-initialized after each start so the JACK host API appears.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from musicbox.errors import AudioDeviceError
from musicbox.targets import targets_of

log = logging.getLogger("musicbox.jack")


def reinit_portaudio() -> None:
    """Make PortAudio enumerate host APIs and devices again (sounddevice scans only at init)."""
    import sounddevice

    sounddevice._terminate()
    sounddevice._initialize()


class JackDummy:
    """Start/stop a named ``jackd`` dummy server; usable as a context manager.

    sample_rate: frames per second (Hz). period: frames per JACK period (512 = 11.6 ms at 44.1 kHz).
    """

    def __init__(self, name: str | None = None, sample_rate: int = 44100, period: int = 512):
        if shutil.which("jackd") is None:
            raise AudioDeviceError("jackd is not installed; install it with `apt install jackd2`")
        self.name = name or f"musicbox{os.getpid()}"
        self.sample_rate = sample_rate
        self.period = period
        self.proc: subprocess.Popen | None = None
        self._previous_server: str | None = os.environ.get("JACK_DEFAULT_SERVER")

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait (up to ``timeout_s`` seconds) until clients can connect."""
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        os.environ.setdefault("JACK_NO_AUDIO_RESERVATION", "1")
        cmd = ["jackd", "--no-realtime", "-n", self.name, "-d", "dummy"]
        cmd += ["-r", str(self.sample_rate), "-p", str(self.period)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait = ["jack_wait", "-s", self.name, "-w", "-t", str(int(timeout_s))]
        if subprocess.run(wait, capture_output=True, timeout=timeout_s + 5).returncode != 0:
            self.stop()
            raise AudioDeviceError(f"the JACK dummy server {self.name!r} did not start in {timeout_s} s")
        reinit_portaudio()
        log.info("JACK dummy server %r up (pid %d)", self.name, self.proc.pid)

    def stop(self) -> None:
        """Terminate the server politely (idempotent) and point ``JACK_DEFAULT_SERVER`` back where it was.
        PortAudio lets go of it first and is initialized again after: its JACK host API aborts the process
        (an assertion in Pa_Terminate) when the server vanished under it."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if self._previous_server is None:  # later clients go back to the server they used before
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = self._previous_server
        sounddevice = sys.modules.get("sounddevice")
        if sounddevice is not None:
            sounddevice._terminate()
        proc.terminate()  # (a SIGKILLed jackd leaves its entry in JACK's shm registry, filling it up)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if sounddevice is not None:
            sounddevice._initialize()

    def __enter__(self) -> JackDummy:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


BASELINE_S = 30.0  # RSS baseline taken this long after the start (buffers and caches warmed up)


def soak(bundle: Path, minutes: float, kill_every_s: float = 60.0, config_path: Path | None = None) -> dict:
    """Play ``minutes`` on a JACK dummy device, SIGKILLing the worker every ``kill_every_s`` seconds.
    ``config_path``: a musicbox.toml to play with (its [audio] block size, [synth] reverb ...; default:
    the defaults alone); the soak's knobs are fixed (backend none) and it records into a scratch folder."""
    from dataclasses import replace

    from musicbox.config import load_config
    from musicbox.runtime.box.assemble import build_box

    with tempfile.TemporaryDirectory() as tmp:
        if config_path is None:
            config_path = Path(tmp) / "defaults.toml"
            config_path.write_text("")
        config = load_config(config_path)
        config = replace(
            config,
            knobs=replace(config.knobs, backend="none"),
            recording=replace(config.recording, folder=Path(tmp) / "rec"),
        )
        # the device's period is the box's block, as on a sound card the box opens (ALSA takes its period
        # from the stream's block; a JACK server's period is the server's own choice)
        with JackDummy(sample_rate=config.audio.sample_rate, period=config.audio.blocksize or 512) as jack:
            figures = _soak(build_box(config, bundle), jack, minutes, kill_every_s)
        # what the figures were measured with: a smaller block or the reverb on costs CPU
        figures["blocksize"], figures["reverb"] = config.audio.blocksize, config.synth.reverb
        return figures


def _soak(box, jack: JackDummy, minutes: float, kill_every_s: float) -> dict:
    stop = threading.Event()
    kills: list[float] = []  # bar phase (0..1) of the playing bar at each kill
    rss: list[tuple[float, float]] = []
    cpu_at: list[float] = []  # the box's CPU seconds at BASELINE_S: the steady state is measured from there
    helpers = [threading.Thread(target=_rss_sampler, args=(box, jack, stop, rss, cpu_at), daemon=True)]
    if kill_every_s > 0:
        helpers.append(threading.Thread(target=_killer, args=(box, kill_every_s, stop, kills), daemon=True))
    for thread in helpers:
        thread.start()
    cpu0 = _box_cpu_s(jack)
    try:
        box.run(minutes * 60.0)
    finally:
        stop.set()
    cpu1 = _box_cpu_s(jack)
    figures = _figures(box, minutes, kills, rss, cpu1 - cpu0)
    steady, start = None, None
    if cpu_at and minutes > BASELINE_S / 60.0:  # the rate from BASELINE_S on; what came before it is more
        steady = (cpu1 - cpu_at[0]) / (minutes - BASELINE_S / 60.0)
        start = round(cpu_at[0] - cpu0 - BASELINE_S / 60.0 * steady, 2)
        steady = round(steady, 3)
    figures["box_cpu_s_per_music_minute_steady"], figures["box_cpu_s_start"] = steady, start
    figures["jack_period"] = jack.period
    # the CPU target holds for a box that plays on (no kills): a restart costs a worker's start-up
    cpu = targets_of("soak_cpu")[0]
    figures["cpu_ok"] = None if kills or steady is None else cpu.met(figures[cpu.name])
    return figures


def _box_cpu_s(jack: JackDummy) -> float:
    """CPU seconds of this process and its descendants, less the JACK server's (not part of the box)."""
    from musicbox.runtime.box.proc import tree_cpu_s

    return tree_cpu_s() - (tree_cpu_s(jack.proc.pid) if jack.proc is not None else 0.0)


def _killer(box, every_s: float, stop: threading.Event, phases: list[float]) -> None:
    """SIGKILL the worker after random waits of 0.5 to 1.5 x ``every_s`` seconds (random bar phases)."""
    rng = random.Random()
    while not stop.wait(rng.uniform(0.5, 1.5) * every_s):
        worker = box.worker
        if worker is not None and worker.process.pid:
            phases.append(box.player.bar_phase())
            os.kill(worker.process.pid, signal.SIGKILL)
            log.info("soak: SIGKILL worker pid %d at %.0f %% of a bar", worker.process.pid, 100 * phases[-1])


def _rss_sampler(box, jack: JackDummy, stop: threading.Event, samples: list, cpu_at: list[float]) -> None:
    """Every 2 s the main process's RSS (MiB); at ``BASELINE_S`` the box's CPU seconds too."""
    from musicbox.runtime.box.proc import rss_mb

    start = time.monotonic()
    while not stop.wait(2.0):
        samples.append((time.monotonic() - start, rss_mb(os.getpid()) or 0.0))
        if not cpu_at and samples[-1][0] >= BASELINE_S:
            cpu_at.append(_box_cpu_s(jack))


def _figures(box, minutes: float, phases: list[float], rss: list[tuple[float, float]], cpu_s: float) -> dict:
    assert box.final_stats is not None  # run() sets it as the box stops
    after = [mb for t, mb in rss if t >= min(BASELINE_S, minutes * 30.0)]
    drift = (after[-1] - after[0]) if len(after) > 1 else 0.0
    figures = {
        "minutes": minutes,
        "bars_played": box.final_stats.bars_played,
        "underruns": box.player.underruns,
        "silence_s": box.final_stats.silence_s,
        "xruns": box.player.xruns,
        "kills": len(phases),
        "kill_bar_phase_min_max": [round(min(phases), 2), round(max(phases), 2)] if phases else None,
        "worker_restarts": box.worker_restarts,
        **_percentiles("detect_s", [r.detect_s for r in box.recoveries]),
        **_percentiles("ready_s", [r.ready_s for r in box.recoveries if r.ready_s is not None]),
        **_percentiles("first_bar_s", [r.first_bar_s for r in box.recoveries]),
        "box_cpu_s_per_music_minute": round(cpu_s / minutes, 2),
        "rss_mb_start": after[0] if after else None,
        "rss_mb_end": after[-1] if after else None,
        "rss_drift_mb": round(drift, 2),
        "rss_mb_peak": max((mb for _, mb in rss), default=None),
    }
    figures["ok"] = all(t.met(figures[t.name]) for t in targets_of("soak"))
    return figures


def _percentiles(name: str, values: list[float]) -> dict:
    """``{name}_p50``, ``_p95`` and ``_max`` of ``values`` in seconds (None when there are none)."""
    if not values:
        return {f"{name}_{k}": None for k in ("p50", "p95", "max")}
    a = np.array(values)
    return {
        f"{name}_p50": round(float(np.percentile(a, 50)), 3),
        f"{name}_p95": round(float(np.percentile(a, 95)), 3),
        f"{name}_max": round(float(a.max()), 3),
    }
