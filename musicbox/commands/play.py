"""`musicbox play`: the appliance. Plays forever (or ``--seconds``), supervised, knobs and buttons live.

Exit status: 0 after a clean stop (SIGTERM/SIGINT, long-press on play, ``--seconds``; with ``[buttons]
hold_action = "poweroff"`` the long-press then asks logind to power the board off, 1 if it refuses); 78 for a bad
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
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

log = logging.getLogger("musicbox.play")
POWEROFF_COMMAND = ("systemctl", "poweroff")
"""Through logind: as the service user this is allowed by the package's polkit rule only."""


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
    held = threading.Event()  # the hold gesture asked for the stop
    backend = _open_backend(config, box, held)
    box.stats_writer = _status_publisher(args.stats, backend, box)
    _install_signal_handlers(box)
    try:
        box.run(args.seconds)
    finally:
        backend.close()
        os.close(lock)
    if held.is_set() and config.buttons.hold_action == "poweroff":
        return power_off()
    return 0


def power_off() -> int:
    """Ask logind to power the board off (the box has stopped and its recording is written); 0 when
    the request was accepted, else 1 with the reason logged (the service then restarts and plays on)."""
    log.info("play held: powering off (%s)", " ".join(POWEROFF_COMMAND))
    try:
        result = subprocess.run(POWEROFF_COMMAND, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        result = subprocess.CompletedProcess(POWEROFF_COMMAND, 1, "", str(exc))
    if result.returncode != 0:
        log.error(
            "power off refused: %s. The Debian package's polkit rule (/usr/share/polkit-1/rules.d/"
            '50-musicbox.rules) lets the user musicbox power off; or set [buttons] hold_action = "quit"',
            result.stderr.strip() or f"exit {result.returncode}",
        )
        return 1
    return 0


def _open_backend(config, box, held: threading.Event):
    from musicbox.device import Button, open_backend
    from musicbox.runtime.box.supervisor import Event

    events = {Button.PLAY_PAUSE: Event.TOGGLE_PAUSE, Button.SHUTDOWN: Event.STOP}
    same = (Button.NEXT, Button.SAVE, Button.KEEP, Button.NEW, Button.VOLUME_UP, Button.VOLUME_DOWN)
    events |= {b: Event(b.value) for b in same}

    def on_button(button) -> None:
        if button is Button.SHUTDOWN:
            held.set()
        box.post(events[button])

    backend = open_backend(config, box.style_names)
    backend.start(on_controls=box.set_controls, on_button=on_button)
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
