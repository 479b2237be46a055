"""`musicbox play`: the appliance. Plays forever (or ``--seconds``), supervised, knobs and buttons live.

Exit status: 0 after a clean stop (SIGTERM/SIGINT, long-press on play, ``--seconds``); 78 for a bad
configuration or a missing/corrupt bundle (the systemd unit's ``RestartPreventExitStatus=78`` keeps it
from crash-looping); 69 when the audio device vanished in a way PortAudio cannot recover from in-process
(a missing device at start is waited for); 75 when another box already plays with the same recordings
folder; 1 when workers keep dying.
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
    from musicbox.runtime.box.assemble import build_box
    from musicbox.runtime.box.lock import hold_box_lock

    config = load_config(args.config)
    if args.backend:
        config = replace(config, knobs=replace(config.knobs, backend=args.backend))
    lock = hold_box_lock(config.recording.folder)  # held until the process ends
    box = build_box(config, args.bundle)
    backend = _open_backend(config, box)
    box.stats_writer = _status_publisher(args.stats, backend, box)
    _install_signal_handlers(box)
    try:
        box.run(args.seconds)
    finally:
        backend.close()
        os.close(lock)
    return 0


def _open_backend(config, box):
    from musicbox.device import Button, open_backend
    from musicbox.runtime.box.supervisor import Event

    events = {Button.PLAY_PAUSE: Event.TOGGLE_PAUSE, Button.SHUTDOWN: Event.STOP}
    same = (Button.NEXT, Button.SAVE, Button.KEEP, Button.NEW, Button.VOLUME_UP, Button.VOLUME_DOWN)
    events |= {b: Event(b.value) for b in same}
    backend = open_backend(config, box.style_names)
    backend.start(on_controls=box.set_controls, on_button=lambda b: box.post(events[b]))
    return backend


def _install_signal_handlers(box) -> None:
    from musicbox.runtime.box.supervisor import Event

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
        view = {
            "state": stats["state"],
            "bar": stats["bars_played"],
            "tempo_bpm": c["tempo_bpm"],
            "mood": c["mood"],
            "style": c["style"],
            "volume_db": stats["volume_db"],
        }
        if stats.get("last_save"):
            view["message"] = stats["last_save"]  # where SAVE wrote the files, or why it could not
        last = box.recorder.last_bar() if box.recorder is not None else None
        if last is not None:
            view["roll"] = notes_to_roll(last.notes, 1)[0]
        backend.show(view)

    return publish
