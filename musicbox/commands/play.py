"""`musicbox play`: the appliance. Plays forever (or ``--seconds``), supervised, knobs and buttons live.

Exit status: 0 after a clean stop (SIGTERM/SIGINT, long-press on play, ``--seconds``; with ``[buttons]
hold_action = "poweroff"`` the long-press then asks logind to power the board off, 1 if it refuses); 78 for a bad
configuration or a missing/corrupt bundle (the systemd unit's ``RestartPreventExitStatus=78`` keeps it
from crash-looping); 69 when the audio device vanished in a way PortAudio cannot recover from in-process
(a missing device at start is waited for, or, with the web remote's stream on, played to the stream
meanwhile); 75 when another box already plays with the same recordings folder; 1 when workers keep dying.
"""

from __future__ import annotations

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
    p.add_argument(
        "--remote", action="store_true", help="serve the web remote for this run ([remote] enabled = true)"
    )
    p.add_argument(
        "--midi-out",
        metavar="PORT",
        help='MIDI out for this run ([midi] out): "jack" or "jack:<port to connect to>" (docs/rig.md)',
    )
    p.add_argument(
        "--sleep",
        type=_minutes,
        metavar="MINUTES",
        help="sleep timer: wind down, end on a cadence, fade out and pause (or [sleep] then) after MINUTES",
    )
    p.set_defaults(run=run)


def _minutes(text: str) -> float:
    """``--sleep``'s minutes: a number from 0.1 to 600 (argparse reports anything else)."""
    import argparse

    try:
        minutes = float(text)
    except ValueError:
        minutes = float("nan")
    if not 0.1 <= minutes <= 600.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes from 0.1 to 600")
    return minutes


def run(args) -> int:
    from musicbox.config import load_config
    from musicbox.device.led import StatusLed
    from musicbox.runtime.box.assemble import build_box
    from musicbox.runtime.box.lock import hold_box_lock
    from musicbox.runtime.sleep import Sleep

    config = load_config(args.config)
    if args.backend:
        config = replace(config, knobs=replace(config.knobs, backend=args.backend))
    if args.remote:
        config = replace(config, remote=replace(config.remote, enabled=True))
    lock = hold_box_lock(config.recording.folder)  # held until the process ends
    box = build_box(config, args.bundle)
    if args.sleep:
        box.post(Sleep(args.sleep))  # handled at the box's first tick: the timer runs from the start
    held = threading.Event()  # the hold gesture asked for the stop
    on_button = _press(box, held, config)  # one for every surface: the preset steps go on from each other
    try:
        remote = _start_remote(config, box, on_button) if config.remote.enabled else None
    except BaseException:
        box.ring.close()  # the box never ran: free its shared memory
        os.close(lock)
        raise
    midi_out = getattr(args, "midi_out", None)
    try:
        rig = _open_midi(config, box, midi_out) if (midi_out or config.midi.out) else None
    except BaseException:
        box.ring.close()
        os.close(lock)
        raise
    osc = sensors = link = None
    led = StatusLed.from_config(config)  # [board] led_pin; -1: none
    try:
        backend = _open_backend(config, box, on_button, remote)
        try:
            try:
                osc = _start_osc(config, box, backend, remote, on_button)
                sensors = _start_sensors(config, box)
                link = _start_link(config, box)
            except BaseException:
                box.ring.close()  # the box never ran: free its shared memory
                raise
            _install_signal_handlers(box)
            hub = remote.stream if remote is not None else None
            box.run(
                args.seconds,
                on_status=_status_publisher(args.stats, backend, box, remote, led),
                on_audio=hub.feed if hub is not None else None,
                audio_wanted=(lambda: hub.listeners > 0) if hub is not None else None,
            )
        finally:
            backend.close()
    finally:
        led.close()
        if link is not None:
            link.close()
        if sensors is not None:
            sensors.close()
        if osc is not None:
            osc.close()
        if rig is not None:
            rig.close()  # every sounding note off, Stop: also after a crash of the box
        if remote is not None:
            remote.close()
        os.close(lock)
    if (held.is_set() and config.buttons.hold_action == "poweroff") or box.slept == "poweroff":
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


def _press(box, held: threading.Event, config):
    """``callable(Button)`` posting the button to the box (the hold, SHUTDOWN, also sets ``held``);
    PRESET recalls the next preset saved on the web remote's page (``presets.json`` in its state folder,
    read at every press)."""
    from musicbox.remote.library import Presets, PresetStepper
    from musicbox.remote.server import state_dir
    from musicbox.runtime.box.supervisor import Recall
    from musicbox.runtime.controls import Button

    presets = PresetStepper(Presets(state_dir(config.remote.state_dir) / "presets.json"))

    def on_button(button: Button) -> None:
        if button is Button.PRESET:
            preset = presets.step()
            if preset is None:
                log.info("preset: none saved yet (save one on the web remote's page)")
                return
            log.info("preset %r", preset.name)
            box.post(Recall(preset.controls, preset.seed))
            return
        if button is Button.SHUTDOWN:
            held.set()
        box.post(button)

    return on_button


def _open_midi(config, box, out: str | None):
    """MIDI out (and clock in) on JACK for ``box`` (``runtime/box/midiout.py``); the box's own sound off
    with ``[midi] local_sound = false``."""
    from musicbox.runtime.box.midiout import ClockFollower, JackMidi, MidiFollower, MidiSettings

    settings = MidiSettings.from_config(config.midi, out)
    if not config.midi.local_sound:
        box.player.muted = True
        box.player.set_volume(box.player.volume_db)
    clock = ClockFollower(*_follow(box)) if settings.clock_in else None
    return JackMidi(MidiFollower(box.player, box.bar_info, settings), clock=clock)


def _follow(box):
    """``(on_tempo(bpm), on_run(running))`` for a tempo the box follows (a MIDI clock in, Ableton Link):
    the tempo, within the box's range, becomes ``box.followed_bpm`` and the box's; start/stop play and
    pause."""
    from musicbox.runtime.box.supervisor import BoxState
    from musicbox.runtime.controls import Button

    def on_tempo(bpm: float) -> None:
        bpm = min(max(bpm, box.min_bpm), box.max_bpm)
        box.followed_bpm = bpm
        box.set_controls(replace(box.controls, tempo_bpm=bpm))

    def on_run(running: bool) -> None:
        if running == (box.state is BoxState.PAUSED):
            box.post(Button.PLAY_PAUSE)

    return on_tempo, on_run


def _start_link(config, box):
    """Following an Ableton Link session (``[midi] link``, ``runtime/box/link.py``: the GPL ``link``
    extra, imported only here); None when off."""
    if not config.midi.link:
        return None
    from musicbox.runtime.box.link import LinkFollower

    link = LinkFollower(box.controls.tempo_bpm, *_follow(box))
    link.start()
    return link


def _open_backend(config, box, on_button, remote=None):
    """Open and start the knob backend; knob changes go to the box and, when on, to the remote's pages.
    Following a tempo (a MIDI clock in, Ableton Link), the tempo knob shows and does nothing else. The
    key, like the meter, is a choice the backend keeps (``KnobMap.key``; the page's or OSC's reaches it
    through ``follow``)."""
    from musicbox.device import open_backend

    def from_knobs(controls) -> None:
        followed = box.followed_bpm
        if followed is not None:
            controls = replace(controls, tempo_bpm=followed)
        box.set_controls(controls)
        if remote is not None:
            remote.controls_changed(controls)

    backend = open_backend(config, box.style_names, box.style_meters)
    if remote is not None:
        remote.follow = backend.follow  # a change on the page moves the backend's knobs too
    backend.start(on_controls=from_knobs, on_button=on_button)
    return backend


def _from_page(box, follow):
    """The handler of a change made beside the knobs (the web remote's page, OSC): ``on_controls(controls,
    seed=None)`` gives it to the box (with a seed: a recalled preset) and then to ``follow(controls)``,
    the knob backend (last writer wins, knob by knob: a hardware knob takes over again when it is next
    turned)."""
    from musicbox.runtime.box.supervisor import Recall

    def on_controls(controls, seed=None) -> None:
        if seed is None:
            box.set_controls(controls)
        else:
            box.post(Recall(controls, seed))
        follow(controls)

    return on_controls


def _start_osc(config, box, backend, remote, on_button):
    """OSC (``remote/osc.py``) for ``box``, serving: its changes go where the page's go (:func:`_from_page`:
    the box, the knob backend) and to the remote's open pages; the bar and beat playing go out. None
    unless ``[osc] enabled``."""
    if not config.osc.enabled:
        return None
    from musicbox.device import knob_map
    from musicbox.remote.osc import OscServer, box_position

    def follow(controls) -> None:
        backend.follow(controls)
        if remote is not None:
            remote.controls_changed(controls)

    ranges = knob_map(config, box.style_names, box.style_meters).ranges(box.style_names)
    osc = OscServer(
        config.osc,
        ranges,
        lambda: box.controls,
        _from_page(box, follow),
        on_button,
        lambda: box_position(box),
    )
    osc.start()
    return osc


def _start_sensors(config, box):
    """The fitted sensors (``[sensors.*]``, ``device/sensors.py``) turning their knobs, polling; None when
    none is fitted."""
    from musicbox.device import knob_map
    from musicbox.device.sensors import KINDS, SensorKnobs

    if not any(getattr(config.sensors, kind).knob for kind in KINDS):
        return None

    ranges = knob_map(config, box.style_names, box.style_meters).ranges(box.style_names)
    sensors = SensorKnobs(config.sensors, ranges, lambda: box.controls, box.set_controls)
    sensors.start()
    return sensors


def _start_remote(config, box, on_button):
    """The web remote of ``box``, serving; a change on the page goes to the box and to the knob backend
    (:func:`_from_page`)."""
    from musicbox.device import knob_map
    from musicbox.remote.server import RemoteServer

    remote: RemoteServer  # the page's changes follow it (assigned next, before any request)
    remote = RemoteServer(
        config.remote,
        box=box,
        knob_map=knob_map(config, box.style_names, box.style_meters),
        on_controls=_from_page(box, lambda controls: remote.follow(controls)),
        on_button=on_button,
        recordings=config.recording.folder,
        sample_rate=config.audio.sample_rate,
    )
    remote.start()
    return remote


def _install_signal_handlers(box) -> None:
    from musicbox.runtime.controls import Button

    def stop(signum, _frame):
        log.info("%s received", signal.Signals(signum).name)
        box.post(Button.SHUTDOWN)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _status_publisher(path: Path | None, backend, box, remote=None, led=None):
    """A callable(stats) the supervisor calls every second: writes the stats to ``path`` atomically
    (with ``--stats``), shows the box's state, knobs, bar count and the bar playing on the backend (and
    the remote's address and pairing code), and hands the stats to the remote's pages."""
    from musicbox.device.audio import no_audio_device_hint
    from musicbox.runtime.box.status import BoxStatus
    from musicbox.runtime.pianoroll import DEFAULT, notes_to_roll

    def publish(stats: BoxStatus) -> None:
        if led is not None:
            led.follow(stats.state, stats.audio_state, stats.saves, stats.worker_restarts)
        if path is not None:
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                tmp.write_bytes(stats.to_json() + b"\n")
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("cannot write stats to %s: %s", path, exc)
        c = stats.controls
        view = {
            "state": stats.state,
            "bar": stats.bars_played,
            "tempo_bpm": c.tempo_bpm,
            "mood": c.mood,
            "style": c.style,
            "volume_db": stats.volume_db,
            "meter": stats.meter,
        }
        if stats.last_save:
            view["message"] = stats.last_save  # where SAVE wrote the files, or why it could not
        if stats.audio_state == "lost":  # no sound card: said for as long as the box waits for one
            hint = no_audio_device_hint(remote is not None)
            view["message"] = f"{hint}   {view['message']}" if view.get("message") else hint
        last = box.recorder.last_bar() if box.recorder is not None and backend.draws else None
        if last is not None:
            view["roll"] = notes_to_roll(last.notes, 1, replace(DEFAULT, steps_per_bar=last.meter.steps))[0]
        if remote is not None:
            pairing = f"remote {remote.url} pairing code {remote.pairing.code}"
            view["message"] = f"{view['message']}   {pairing}" if view.get("message") else pairing
            remote.publish(stats)
        backend.show(view)

    return publish
