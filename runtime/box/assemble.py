"""The box assembled from a ``BoxConfig``: worker and player settings, recorder, supervisor, notifier, and
the memory the configuration needs, checked against what the service may use."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from musicbox.config import firmware_dir, resolve_bundle

log = logging.getLogger("musicbox.play")


def build_box(config, bundle: Path | None = None, notifier=None):
    """A Supervisor for ``config`` (raises ConfigError/ManifestError/BundleError, exit 78)."""
    from musicbox.runtime.box.recorder import Recorder
    from musicbox.runtime.box.supervisor import Supervisor

    root = resolve_bundle(bundle or config.bundle.path)
    manifest = load_bundle_manifest(root)
    worker = worker_settings(config, root)
    min_bpm, max_bpm = tempo_range(config, manifest)
    check_memory(config, memory_need(config, min_bpm, max_bpm))
    recorder = Recorder(config.recording.folder, config.recording.minutes_kept, config.audio.sample_rate)
    recorder.remove_leftovers()
    box = Supervisor(
        worker,
        player_settings(config),
        recorder,
        min_bpm=min_bpm,
        max_bpm=max_bpm,
        notifier=notifier if notifier is not None else systemd_notifier(),
    )
    box.style_names = tuple(style.name for style in manifest.controls.styles)
    return box


def tempo_range(config, manifest) -> tuple[float, float]:
    """The slowest and fastest tempo (BPM) the box may play: the knobs' and the bundle's ranges together."""
    tempo = manifest.controls.tempo
    return min(config.knobs.min_bpm, tempo.min_bpm), max(config.knobs.max_bpm, tempo.max_bpm)


PROCESSES_MB = 270.0
"""MiB the box's processes take besides the bar ring and the SAVE buffer: the main process ~142 and the
worker ~110 (RSS with the shipped bundle under JACK, `musicbox play --stats`: 258 and 110 MiB, less the
ring and the 10-minute SAVE buffer), the fork server and resource tracker, and a little headroom."""


@dataclass(frozen=True)
class MemoryNeed:
    """What a configuration needs, in MiB: the bar ring (shared memory), the SAVE buffer, the processes."""

    ring_mb: float
    ring_bars: int
    bar_s: float
    recording_mb: float
    processes_mb: float = PROCESSES_MB

    @property
    def total_mb(self) -> float:
        return self.ring_mb + self.recording_mb + self.processes_mb

    def describe(self) -> str:
        return (
            f"~{self.total_mb:.0f} MiB: bar ring {self.ring_mb:.0f} MiB ({self.ring_bars} bars of up to "
            f"{self.bar_s:.1f} s), SAVE buffer {self.recording_mb:.0f} MiB, processes ~{self.processes_mb:.0f} MiB"
        )


def memory_need(config, min_bpm: float, max_bpm: float) -> MemoryNeed:
    """The memory ``config`` needs when tempi run from ``min_bpm`` to ``max_bpm``."""
    from musicbox.runtime.box.ring import RingSpec
    from musicbox.runtime.box.supervisor import ring_slots, slot_frames_for
    from musicbox.runtime.controls import Controls

    rate = config.audio.sample_rate
    slots = ring_slots(worker_settings(config, Path()), max_bpm)
    ring = RingSpec("", slots, slot_frames_for(rate, min_bpm)).nbytes
    recording = config.recording.minutes_kept * 60 * rate * 2 * 2  # int16 stereo
    return MemoryNeed(ring / 2**20, slots, Controls(tempo_bpm=min_bpm).bar_seconds(), recording / 2**20)


def memory_limit_mb() -> tuple[float, str] | None:
    """What the box may use, in MiB, and where that limit comes from: this process's cgroup memory.max
    (under systemd, the unit's MemoryMax with any drop-ins), else the shipped unit's MemoryMax."""
    try:
        cgroup = next(
            line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::")
        )
        value = Path(f"/sys/fs/cgroup{cgroup}/memory.max").read_text().strip()
        if value.isdigit():
            return int(value) / 2**20, f"this service's memory.max ({cgroup})"
    except (OSError, StopIteration):
        pass
    unit = firmware_dir() / "systemd" / "musicbox.service"
    match = re.search(r"^MemoryMax=(\d+)([KMG]?)\s*$", unit.read_text(), re.M) if unit.is_file() else None
    if match is None:
        return None
    scale = {"": 2**-20, "K": 2**-10, "M": 1.0, "G": 1024.0}[match.group(2)]
    return int(match.group(1)) * scale, f"MemoryMax={match.group(1)}{match.group(2)} in {unit}"


def check_memory(config, need: MemoryNeed) -> None:
    """ConfigError (exit 78) when ``config`` needs more memory than the service may use."""
    from musicbox.errors import ConfigError

    limit = memory_limit_mb()
    if limit is None or need.total_mb <= limit[0]:
        return
    a, k, r = config.audio, config.knobs, config.recording
    raise ConfigError(
        f"{config.source or 'the configuration'}: [audio] buffer_bars = {a.buffer_bars}, buffer_seconds = "
        f"{a.buffer_seconds:g}, [knobs] min_bpm = {k.min_bpm:g}, [recording] minutes_kept = "
        f"{r.minutes_kept} need {need.describe()}, more than the {limit[0]:.0f} MiB allowed by "
        f"{limit[1]}; lower buffer_bars or buffer_seconds, raise min_bpm, lower minutes_kept, or raise "
        "MemoryMax in the unit"
    )


def load_bundle_manifest(root: Path):
    from musicbox.errors import BundleError
    from musicbox.runtime.manifest import load_manifest

    if not (root / "manifest.json").is_file():
        raise BundleError(f"{root}: no manifest.json; point [bundle] path or --bundle at a bundle folder")
    return load_manifest(root / "manifest.json")


def worker_settings(config, root: Path):
    """The worker's settings from the config's [bundle], [synth] and [audio] sections."""
    from musicbox.runtime.box.worker import WorkerSettings

    b, s = config.bundle, config.synth
    return WorkerSettings(
        bundle_path=root,
        precision=b.precision,
        memory_budget_mb=b.memory_budget_mb or None,
        threads=b.threads,
        soundfont=s.soundfont,
        gain=s.gain,
        reverb=s.reverb,
        sample_rate=config.audio.sample_rate,
        ahead_bars=config.audio.buffer_bars,
        ahead_s=config.audio.buffer_seconds,
    )


def player_settings(config):
    """PlayerSettings from [audio] (a device written as digits is a PortAudio index)."""
    from musicbox.runtime.box.player import PlayerSettings

    a = config.audio
    device = a.device.strip() or None
    if device is not None and device.isdigit():
        device = int(device)
    return PlayerSettings(sample_rate=a.sample_rate, blocksize=a.blocksize, latency=a.latency, device=device)


def systemd_notifier():
    """sdnotify's notifier under systemd (NOTIFY_SOCKET set), else None."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return None
    try:
        import sdnotify
    except ImportError:
        log.warning("sdnotify is not installed: no READY/WATCHDOG notifications (pip install sdnotify)")
        return None
    return sdnotify.SystemdNotifier()
