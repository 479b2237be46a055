"""`musicbox play`: the appliance. Plays forever (or ``--seconds``), supervised, knobs and buttons live.

Exit status: 0 after a clean stop (SIGTERM/SIGINT, long-press on play, ``--seconds``); 78 for a bad
configuration or a missing/corrupt bundle (the systemd unit's ``RestartPreventExitStatus=78`` keeps it
from crash-looping); 69 when no audio device can be opened; 1 when workers keep dying.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import replace
from pathlib import Path

log = logging.getLogger("musicbox.play")


def register(sub):
    from musicbox.config import BACKENDS

    p = sub.add_parser("play", help="play music from the knobs, forever (the box's service)")
    p.add_argument("--config", type=Path, help="musicbox.toml (default: $MUSICBOX_CONFIG, /etc/musicbox/...)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds (default: run until stopped)")
    p.add_argument("--stats", type=Path, help="rewrite this JSON file every second with the box's figures")
    p.add_argument("--bundle", type=Path, help="bundle folder (overrides [bundle] path)")
    p.add_argument("--backend", choices=BACKENDS, help="knob/button backend (overrides [knobs] backend)")
    p.set_defaults(run=run)


def run(args) -> int:
    from musicbox.config import load_config

    config = load_config(args.config)
    if args.backend:
        config = replace(config, knobs=replace(config.knobs, backend=args.backend))
    box = build_box(config, args.bundle)
    backend = _open_backend(config, box)
    box.stats_writer = _status_publisher(args.stats, backend, box)
    _install_signal_handlers(box)
    try:
        box.run(args.seconds)
    finally:
        backend.close()
    return 0


def build_box(config, bundle: Path | None = None, notifier=None):
    """A Supervisor for ``config`` (raises ConfigError/ManifestError/BundleError, exit 78)."""
    from musicbox.runtime.recorder import Recorder
    from musicbox.runtime.supervisor import Supervisor

    root = _bundle_path(config, bundle)
    manifest = _load_manifest(root)
    worker = worker_settings(config, root)
    recorder = Recorder(config.recording.folder, config.recording.minutes_kept, config.audio.sample_rate)
    box = Supervisor(
        worker,
        player_settings(config),
        recorder,
        min_bpm=min(config.knobs.min_bpm, manifest.controls.tempo.min_bpm),
        notifier=notifier if notifier is not None else _notifier(),
    )
    box.style_names = tuple(style.name for style in manifest.controls.styles)
    return box


def _bundle_path(config, bundle: Path | None) -> Path:
    from musicbox.commands.render import resolve_bundle

    return resolve_bundle(bundle or config.bundle.path)


def _load_manifest(root: Path):
    from musicbox.errors import BundleError
    from musicbox.runtime.manifest import load_manifest

    if not (root / "manifest.json").is_file():
        raise BundleError(f"{root}: no manifest.json; point [bundle] path or --bundle at a bundle folder")
    return load_manifest(root / "manifest.json")


def worker_settings(config, root: Path):
    """The worker's settings from the config's [bundle], [synth] and [audio] sections."""
    from musicbox.runtime.worker import WorkerSettings

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
    )


def player_settings(config):
    """PlayerSettings from [audio] (a device written as digits is a PortAudio index)."""
    from musicbox.runtime.player import PlayerSettings

    a = config.audio
    device = a.device.strip() or None
    if device is not None and device.isdigit():
        device = int(device)
    return PlayerSettings(sample_rate=a.sample_rate, blocksize=a.blocksize, latency=a.latency, device=device)


def _open_backend(config, box):
    from musicbox.device import Button, open_backend
    from musicbox.runtime.supervisor import Event

    events = {Button.PLAY_PAUSE: Event.TOGGLE_PAUSE, Button.NEXT: Event.NEXT, Button.SAVE: Event.SAVE}
    events[Button.SHUTDOWN] = Event.STOP
    backend = open_backend(config, box.style_names)
    backend.start(on_controls=box.set_controls, on_button=lambda b: box.post(events[b]))
    return backend


def _notifier():
    """sdnotify's notifier under systemd (NOTIFY_SOCKET set), else None."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return None
    try:
        import sdnotify
    except ImportError:
        log.warning("sdnotify is not installed: no READY/WATCHDOG notifications (pip install sdnotify)")
        return None
    return sdnotify.SystemdNotifier()


def _install_signal_handlers(box) -> None:
    from musicbox.runtime.supervisor import Event

    def stop(signum, _frame):
        log.info("%s received", signal.Signals(signum).name)
        box.post(Event.STOP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _status_publisher(path: Path | None, backend, box):
    """A callable(stats) the supervisor calls every second: writes the stats to ``path`` atomically
    (with ``--stats``) and shows the box's state, knobs, bar count and the bar playing on the backend."""
    from musicbox.runtime.pianoroll import notes_to_roll

    def publish(stats: dict) -> None:
        if path is not None:
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                tmp.write_text(json.dumps(stats, indent=1) + "\n")
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("cannot write stats to %s: %s", path, exc)
        c = stats["controls"]
        names = box.style_names
        view = {
            "state": stats["state"],
            "bar": stats["bars_played"],
            "tempo_bpm": c["tempo_bpm"],
            "mood": c["mood"],
            "style": names[min(len(names) - 1, max(0, round(c["style"])))],
        }
        last = box.recorder.last_bar() if box.recorder is not None else None
        if last is not None:
            view["roll"] = notes_to_roll(last.notes, 1)[0]
        backend.show(view)

    return publish
