"""The box assembled from a ``BoxConfig``: worker and player settings, recorder, supervisor, notifier."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from musicbox.config import resolve_bundle

log = logging.getLogger("musicbox.play")


def build_box(config, bundle: Path | None = None, notifier=None):
    """A Supervisor for ``config`` (raises ConfigError/ManifestError/BundleError, exit 78)."""
    from musicbox.runtime.box.recorder import Recorder
    from musicbox.runtime.box.supervisor import Supervisor

    root = resolve_bundle(bundle or config.bundle.path)
    manifest = load_bundle_manifest(root)
    worker = worker_settings(config, root)
    recorder = Recorder(config.recording.folder, config.recording.minutes_kept, config.audio.sample_rate)
    box = Supervisor(
        worker,
        player_settings(config),
        recorder,
        min_bpm=min(config.knobs.min_bpm, manifest.controls.tempo.min_bpm),
        notifier=notifier if notifier is not None else systemd_notifier(),
    )
    box.style_names = tuple(style.name for style in manifest.controls.styles)
    return box


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
