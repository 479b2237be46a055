"""The sleep timer (runtime/sleep.py): its schedule, the box's wind-down, and every way to set it: the
config's [sleep], `musicbox play --sleep`, the terminal's key and the web remote's sleep button."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from musicbox.config import default_config, load_config
from musicbox.errors import ConfigError
from musicbox.runtime.box.player import PlayerSettings
from musicbox.runtime.box.supervisor import BoxState, Supervisor, WorkerHandle
from musicbox.runtime.box.worker import WorkerSettings, Written
from musicbox.runtime.controls import Button, Controls
from musicbox.runtime.performance import Phrasing
from musicbox.runtime.sleep import SILENCE_DB, Sleep, SleepSettings, SleepTimer, fade_db
from musicbox.runtime.state import GeneratorState

KNOBS = Controls(style=0.0, tempo_bpm=120.0, mood=0.6)


# ---- the schedule -----------------------------------------------------------------------------------


def test_the_wind_down_moves_the_knobs_to_calm_and_the_volume_down_over_the_last_minutes():
    s = SleepSettings(minutes=30.0, wind_down_minutes=5.0, calm_bpm=66.0, calm_mood=-0.4, softer_db=9.0)
    timer = SleepTimer.start(s, 30.0, now=0.0, knobs=KNOBS)
    assert timer.left(0.0) == 1800.0
    before = 1800.0 - 300.0
    assert timer.calm(before - 1) == 0.0 and timer.controls(before - 1) == KNOBS
    assert timer.softer_db(before - 1) == 0.0
    times = np.linspace(before, 1800.0, 31)
    tempo = [timer.controls(t).tempo_bpm for t in times]
    mood = [timer.controls(t).mood for t in times]
    soft = [timer.softer_db(t) for t in times]
    assert np.all(np.diff(tempo) <= 0) and tempo[-1] == 66.0  # slower
    assert np.all(np.diff(mood) <= 0) and mood[-1] == -0.4  # darker, sparser
    assert np.all(np.diff(soft) <= 0) and soft[-1] == -9.0  # softer
    assert len(set(tempo)) < 60  # whole BPM: a few rewrites a minute, not one a bar
    slow = SleepTimer.start(s, 30.0, 0.0, Controls(tempo_bpm=60.0, mood=-1.0))
    assert slow.controls(1800.0) == Controls(tempo_bpm=60.0, mood=-1.0)  # never faster nor brighter
    short = SleepTimer.start(s, 1.0, 0.0, KNOBS)  # a timer shorter than the wind-down winds all of it
    assert short.calm(0.0) == 0.0 and 0.4 < short.calm(30.0) < 0.6 and short.calm(60.0) == 1.0
    with pytest.raises(ValueError, match="positive number of minutes"):
        SleepTimer.start(s, 0.0, 0.0, KNOBS)


def test_the_last_bar_is_the_cadence_after_which_less_than_a_phrase_is_left():
    timer = SleepTimer.start(SleepSettings(), 1.0, now=0.0, knobs=KNOBS)
    bar, phrase = 2.0, 8.0  # a 2 s bar, 4-bar phrases
    assert not timer.is_last_bar(40.0, bar, cadence=True, phrase_s=phrase)  # 18 s left after it
    assert timer.is_last_bar(52.0, bar, cadence=True, phrase_s=phrase)  # 6 s: not another phrase
    assert not timer.is_last_bar(56.0, bar, cadence=False, phrase_s=phrase)  # ends in time: go on
    assert timer.is_last_bar(59.0, bar, cadence=False, phrase_s=phrase)  # no cadence came: stop anyway


def test_the_fade_goes_from_the_wind_down_s_level_to_silence():
    db = [fade_db(x, -9.0) for x in np.linspace(0, 1, 11)]
    assert db[0] == pytest.approx(-9.0) and db[-1] == SILENCE_DB and np.all(np.diff(db) < 0)
    assert fade_db(0.5, 0.0) == pytest.approx(-6.02, abs=0.01)  # linear in amplitude


# ---- the configuration and the command line ---------------------------------------------------------


def test_the_sleep_section_is_read_strictly_and_its_defaults_are_the_timer_s(tmp_path):
    assert SleepSettings.of(default_config().sleep) == SleepSettings()
    path = tmp_path / "box.toml"
    path.write_text('[sleep]\nminutes = 45\nthen = "poweroff"\n')
    sleep = load_config(path).sleep
    assert (sleep.minutes, sleep.then) == (45.0, "poweroff")
    path.write_text('[sleep]\nthen = "explode"\n')
    with pytest.raises(ConfigError, match=r"sleep\.then: got 'explode'.*'pause', 'poweroff'"):
        load_config(path)
    path.write_text("[sleep]\nminutes = 0\n")
    with pytest.raises(ConfigError, match=r"sleep\.minutes"):
        load_config(path)


def test_play_refuses_a_sleep_that_is_not_a_number_of_minutes():
    for bad in ("0", "soon", "1000"):
        result = subprocess.run(
            [sys.executable, "-m", "musicbox.cli", "play", "--sleep", bad],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2 and "--sleep" in result.stderr and "minutes" in result.stderr


# ---- the box ------------------------------------------------------------------------------------------


@pytest.fixture
def box():
    sup = Supervisor(
        WorkerSettings(Path("/nonexistent"), default_config().synth),
        PlayerSettings(),
        None,
        controls=KNOBS,
        sleep=SleepSettings(minutes=1.0, wind_down_minutes=1.0),
    )
    sup.state = BoxState.PLAYING
    yield sup
    sup.ring.close()


def _written(box: Supervisor, bar: int, phrase: Phrasing | None, stretch: float = 1.0) -> Written:
    state = replace(GeneratorState.fresh(3, key=0, history=2, latent=(4, 64)), index=bar + 1)
    written = Written(bar, box.gen, state, box.controls, [], phrase=phrase, stretch=stretch)
    box.ring.write_bar(bar, box.gen, np.zeros((100, 2), np.float32))
    worker = WorkerHandle(SimpleNamespace(pid=1), None, 0.0, ready=True, wrote=True)
    box._on_written(worker, written)
    return written


def test_the_sleep_button_starts_the_configured_timer_and_ends_a_running_one(box):
    box._handle(Sleep())
    assert box.sleep_timer is not None and 59.0 < box.sleep_left() <= 60.0
    box._handle(replace(KNOBS, mood=0.0))  # a turn during the timer: the wind-down starts from it
    assert box.sleep_timer.knobs.mood == 0.0
    box._handle(Sleep())
    assert box.sleep_timer is None and box.sleep_left() is None
    box._handle(Sleep(2.0))
    assert 119.0 < box.sleep_left() <= 120.0
    box._handle(Sleep(0))
    assert box.sleep_timer is None


def test_the_box_winds_down_ends_on_a_cadence_fades_and_pauses(box):
    box.player.set_volume(-3.0)
    box._handle(Sleep(1.0))
    start = box.sleep_timer.ends_at - 60.0
    box._wind_down(start + 30.0)  # half-way through the wind-down: softer
    assert -3.0 - 9.0 < box.player.volume_db < -3.0 - 1.0
    inner = _written(box, 0, Phrasing(0, 2))
    box._wind_down_bar(inner, start + 30.0)  # inside a phrase: nothing moves yet
    assert box.controls == KNOBS and box._last_bar is None
    cadence = _written(box, 1, Phrasing(1, 2), stretch=1.4)
    box._wind_down_bar(
        cadence, start + 40.0
    )  # a cadence with a phrase left: the knobs move, from the bar line
    assert box.controls.tempo_bpm < KNOBS.tempo_bpm and box.controls.mood < KNOBS.mood
    assert box._resume.from_bar >= 0 and box._resume.splice is None
    last = _written(box, 3, Phrasing(1, 2), stretch=1.4)
    bar_s = box.controls.bar_seconds(16) * 1.4
    ends = box.sleep_timer.ends_at
    box._wind_down(ends - bar_s - 1.0)
    box._wind_down_bar(last, ends - bar_s - 1.0)  # a cadence, ending a second before the timer: the last
    assert box._last_bar is not None
    box._wind_down(ends - bar_s - 1.0 + bar_s / 2)
    assert box.player.volume_db < -3.0 - 9.0 - 5.0  # fading
    box._wind_down(ends - 0.9)  # the bar is over: paused, the listener's volume back
    assert box.state is BoxState.PAUSED and box.player.paused and box.slept == "pause"
    assert box.sleep_timer is None and box.player.volume_db == pytest.approx(-3.0)


def test_a_timer_that_powers_off_stops_the_box(box):
    box.sleep_settings = box.sleep_settings._replace(then="poweroff")
    box._handle(Sleep(1.0))
    last = _written(box, 0, None)
    box._wind_down_bar(last, box.sleep_timer.ends_at - 0.5)  # no phrases known: any bar line
    box._wind_down(box.sleep_timer.ends_at + 5.0)
    assert box.state is BoxState.STOPPING and box.slept == "poweroff"


# ---- the control surfaces ---------------------------------------------------------------------------


def test_the_terminal_s_sleep_key(tmp_path):
    from rich.console import Console

    from musicbox.device import open_backend
    from musicbox.device.terminal import help_line

    path = tmp_path / "box.toml"
    path.write_text('[knobs]\nbackend = "terminal"\n')
    read_fd, write_fd = os.pipe()
    console = Console(file=open(os.devnull, "w"), force_terminal=True)  # noqa: SIM115
    backend = open_backend(load_config(path), ("a", "b"), input_fd=read_fd, console=console)
    pressed = []
    backend.on_button = pressed.append
    try:
        backend.press("z")
        assert pressed == [Button.SLEEP]  # the box starts [sleep] minutes, or ends a running timer
        assert "[z] sleep timer" in help_line()
    finally:
        backend.close()
        os.close(write_fd)


def test_the_remote_s_sleep_button_is_checked():
    from musicbox.remote.server import Refused, _sleep_of

    assert _sleep_of({"button": "sleep"}) == Sleep()
    assert _sleep_of({"button": "sleep", "minutes": 20}) == Sleep(20.0)
    assert _sleep_of({"button": "sleep", "minutes": 0}) == Sleep(0.0)
    for bad in (-1, 601, "ten", True):
        with pytest.raises(Refused, match="minutes"):
            _sleep_of({"button": "sleep", "minutes": bad})


# ---- the real box -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed")
def test_play_sleep_one_minute_ends_on_a_cadence_fades_pauses_and_saves_after(tmp_path):
    """The real `musicbox play --sleep 1` (the shipped bundle's chorale, its 2-bar phrases) in a pty on a
    JACK dummy device: it winds down, ends on a cadence in the last phrase of its minute with a fade,
    pauses with no underrun, and SAVE (the terminal's key) still writes the music after it."""
    import fcntl
    import json
    import struct
    import termios
    import threading
    import time

    import soundfile

    from musicbox.runtime.box.soak import JackDummy

    config = tmp_path / "box.toml"
    config.write_text(f'[recording]\nfolder = "{tmp_path}/rec"\n')
    stats = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--sleep", "1"]
    cmd += ["--seconds", "120", "--stats", str(stats), "--backend", "terminal"]
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 120, 0, 0))
    screen = bytearray()

    def drain():
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                return
            if not data:
                return
            screen.extend(data)

    volumes: list[float] = []  # the player's volume, once a second: the wind-down and the fade

    def read_stats() -> dict:
        try:
            data = json.loads(stats.read_text())
        except (OSError, ValueError):
            return {}
        volumes.append(data["volume_db"])
        return data

    def wait(condition, timeout_s: float) -> float:
        end = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < end, screen.decode("utf-8", "replace")[-3000:]
            time.sleep(0.2)
        return time.monotonic()

    with JackDummy(name=f"mbsleep{os.getpid()}"):
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} | {"TERM": "xterm"}
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=follower, stdout=follower, stderr=follower, env=env)
        os.close(follower)
        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            wait(lambda: b"sleep in 1 min" in screen, 60)
            paused = wait(lambda: read_stats().get("state") == "paused", 90)
            at_pause = read_stats()
            os.write(leader, b"r")  # SAVE, after the timer
            wait(lambda: read_stats().get("saves", 0) >= 1, 30)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            reader.join(timeout=5)
            os.close(leader)
    text = screen.decode("utf-8", "replace")
    assert proc.returncode == 0, text[-3000:]
    assert 40.0 <= paused - started <= 68.0, paused - started  # its last phrase, its minute (+ start-up)
    assert "is the last (a cadence), fading out" in text, text[-3000:]
    assert text.count("sleep: style") >= 2  # the knobs moved themselves toward calm
    assert at_pause["underruns"] == 0 and at_pause["controls"]["tempo_bpm"] < 100.0
    assert min(volumes) <= -20.0 and at_pause["volume_db"] == 0.0, volumes  # faded; the volume back
    assert any(-9.0 < v < -2.0 for v in volumes), volumes  # softer before the fade
    wav = next((tmp_path / "rec").glob("musicbox-*.wav"))  # saved after the timer
    assert soundfile.info(wav).duration > 40.0


def test_the_sleep_button_starts_the_configured_timer_and_a_second_press_ends_it():
    from pathlib import Path

    from musicbox.config import default_config
    from musicbox.runtime.box.player import PlayerSettings
    from musicbox.runtime.box.supervisor import Supervisor
    from musicbox.runtime.box.worker import WorkerSettings

    box = Supervisor(WorkerSettings(Path("/nonexistent"), default_config().synth), PlayerSettings(), None)
    try:
        box.post(Button.SLEEP)
        box._handle_events()
        left = box.sleep_left()
        assert left is not None and left == pytest.approx(box.sleep_settings.minutes * 60.0, abs=1.0)
        box.post(Button.SLEEP)
        box._handle_events()
        assert box.sleep_left() is None
    finally:
        box.ring.close()
