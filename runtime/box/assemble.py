"""The box assembled from a ``BoxConfig``: worker and player settings, recorder, supervisor, notifier; the
configuration's memory need is checked first against what the service and the board's memory class
allow (``runtime/buffering.py``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from musicbox.config import resolve_bundle
from musicbox.runtime.buffering import check_memory, memory_need
from musicbox.runtime.controls import ControlRanges

log = logging.getLogger("musicbox.play")


def build_box(config, bundle: Path | None = None, notifier=None):
    """A Supervisor for ``config`` (raises ConfigError/ManifestError/BundleError, exit 78)."""
    from musicbox.runtime.box.recorder import Recorder
    from musicbox.runtime.box.supervisor import Supervisor
    from musicbox.runtime.sleep import SleepSettings

    root = resolve_bundle(bundle or config.bundle.path)
    manifest = load_bundle_manifest(root)
    ranges = ControlRanges.from_manifest(manifest.controls, manifest.representation.meters)
    ranges.check_meter(config.knobs.meter, f"{config.source or 'the configuration'}: [knobs] meter")
    worker = worker_settings(config, root)
    min_bpm, max_bpm = tempo_range(config, manifest)
    check_memory(config, memory_need(config, min_bpm, max_bpm, manifest))
    recorder = Recorder(
        config.recording.folder,
        config.recording.minutes_kept,
        config.audio.sample_rate,
        styles=manifest.controls,
    )
    recorder.remove_leftovers()
    box = Supervisor(
        worker,
        player_settings(config),
        recorder,
        min_bpm=min_bpm,
        max_bpm=max_bpm,
        notifier=notifier if notifier is not None else systemd_notifier(),
        style_names=tuple(style.name for style in manifest.controls.styles),
        style_meters=tuple(style.meters for style in manifest.controls.styles),
        sleep=SleepSettings.of(config.sleep),
    )
    return box


def tempo_range(config, manifest) -> tuple[float, float]:
    """The slowest and fastest tempo (BPM) the box may play: the knobs' and the bundle's ranges together."""
    tempo = manifest.controls.tempo
    return min(config.knobs.min_bpm, tempo.min_bpm), max(config.knobs.max_bpm, tempo.max_bpm)


def load_bundle_manifest(root: Path):
    from musicbox.errors import BundleError
    from musicbox.runtime.manifest import load_manifest

    if not (root / "manifest.json").is_file():
        raise BundleError(f"{root}: no manifest.json; point [bundle] path or --bundle at a bundle folder")
    return load_manifest(root / "manifest.json")


def worker_settings(config, root: Path):
    """The worker's settings from the config's [bundle], [synth] and [audio] sections."""
    from musicbox.runtime.box.worker import WorkerSettings

    b = config.bundle
    return WorkerSettings(
        bundle_path=root,
        synth=config.synth,
        precision=b.precision,
        memory_budget_mb=b.memory_budget_mb or None,
        threads=b.threads,
        sample_rate=config.audio.sample_rate,
        ahead_bars=config.audio.buffer_bars,
        ahead_s=config.audio.buffer_seconds,
    )


def player_settings(config):
    """PlayerSettings from [audio] (a device written as digits is a PortAudio index); with the web
    remote and its stream on, a machine without a sound card plays to the stream only."""
    from musicbox.runtime.box.player import PlayerSettings

    a = config.audio
    device = a.device.strip() or None
    if device is not None and device.isdigit():
        device = int(device)
    r = config.remote
    return PlayerSettings(
        sample_rate=a.sample_rate,
        blocksize=a.blocksize,
        latency=a.latency,
        device=device,
        volume_db=a.volume_db,
        volume_step_db=a.volume_step_db,
        clock_fallback=r.enabled and r.stream,
    )


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
