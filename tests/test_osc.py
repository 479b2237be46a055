"""OSC (remote/osc.py) over real UDP sockets: a client turns each knob and presses each button; bad
values are answered and change nothing; only LAN senders are heard; bar and beat go to subscribers."""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pythonosc")
from pythonosc.dispatcher import Dispatcher  # noqa: E402
from pythonosc.osc_server import ThreadingOSCUDPServer  # noqa: E402
from pythonosc.udp_client import SimpleUDPClient  # noqa: E402

from musicbox.config import default_config  # noqa: E402
from musicbox.remote.osc import OscServer, lan_only  # noqa: E402
from musicbox.runtime.controls import Button, ControlRanges, Controls  # noqa: E402

RANGES = ControlRanges(("chorale", "folk", "celtic"), 60.0, 160.0, ("4/4", "3/4"))


def _wait(q: queue.Queue, timeout_s: float = 5.0):
    return q.get(timeout=timeout_s)


@pytest.fixture
def box():
    """The box's side: the knobs now, and what OSC handed on."""
    state = {"controls": Controls(), "position": (-1, -1)}
    changes: queue.Queue = queue.Queue()
    presses: queue.Queue = queue.Queue()

    def on_controls(c):
        state["controls"] = c
        changes.put(c)

    config = default_config().osc.__class__(enabled=True, bind="127.0.0.1", port=0, send_to="")
    server = OscServer(
        config, RANGES, lambda: state["controls"], on_controls, presses.put, lambda: state["position"]
    )
    server.start()
    yield server, state, changes, presses
    server.close()


def test_osc_is_off_by_default():
    assert default_config().osc.enabled is False


def test_each_knob_and_button_by_its_address(box):
    server, _, changes, presses = box
    client = SimpleUDPClient("127.0.0.1", server.address[1])
    client.send_message("/musicbox/style", "folk")
    assert _wait(changes).style == 1.0
    client.send_message("/musicbox/tempo", 132.0)
    assert _wait(changes).tempo_bpm == 132.0
    client.send_message("/musicbox/mood", -0.5)
    assert _wait(changes).mood == -0.5
    client.send_message("/musicbox/variation", 0.9)
    assert _wait(changes).variation == pytest.approx(0.9, abs=1e-6)  # OSC floats are 32-bit
    client.send_message("/musicbox/meter", "3/4")
    last = _wait(changes)
    assert (last.meter, last.style, last.tempo_bpm, last.mood) == ("3/4", 1.0, 132.0, -0.5)
    client.send_message("/musicbox/key", "Eb")
    assert _wait(changes).key == "D#"
    for button in Button:
        client.send_message(f"/musicbox/{button.value}", [])
        assert _wait(presses) is button


def test_a_bad_value_is_answered_and_changes_nothing(box):
    server, state, changes, _ = box
    replies: queue.Queue = queue.Queue()
    dispatcher = Dispatcher()
    dispatcher.map("/musicbox/error", lambda address, message: replies.put(message))
    listener = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    try:
        # reply to the sender's own address: send from the listener's socket
        listener.socket.sendto(_message("/musicbox/tempo", 900.0), ("127.0.0.1", server.address[1]))
        assert "OSC /musicbox/tempo: got 900.0; allowed: a number from 60 to 160" in _wait(replies)
        assert changes.empty() and state["controls"] == Controls()
    finally:
        listener.shutdown()
        listener.server_close()


def _message(address: str, value) -> bytes:
    from pythonosc.osc_message_builder import OscMessageBuilder

    builder = OscMessageBuilder(address)
    builder.add_arg(value)
    return builder.build().dgram


def test_only_lan_senders_are_heard(box):
    server, *_ = box
    assert lan_only("127.0.0.1") and lan_only("192.168.1.20") and lan_only("10.0.0.3")
    assert lan_only("fe80::1") and not lan_only("8.8.8.8") and not lan_only("2001:4860::1")
    assert server.server.verify_request(None, ("192.168.1.20", 5000))
    assert not server.server.verify_request(None, ("8.8.8.8", 5000))
    assert "8.8.8.8" in server.refused


def test_bar_and_beat_go_to_subscribers(box):
    server, state, *_ = box
    got: queue.Queue = queue.Queue()
    dispatcher = Dispatcher()
    dispatcher.map("/musicbox/bar", lambda address, bar: got.put(("bar", bar)))
    dispatcher.map("/musicbox/beat", lambda address, beat: got.put(("beat", beat)))
    listener = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    try:
        listener.socket.sendto(_message("/musicbox/subscribe", 1), ("127.0.0.1", server.address[1]))
        end = time.monotonic() + 5
        while not server.subscribers and time.monotonic() < end:
            time.sleep(0.01)
        state["position"] = (3, 0)
        assert _wait(got) == ("bar", 3) and _wait(got) == ("beat", 0)
        state["position"] = (3, 1)
        assert _wait(got) == ("beat", 1)
    finally:
        listener.shutdown()
        listener.server_close()


# ---- the real `musicbox play` with OSC on ----------------------------------------------------------------


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats_when(proc, stats: Path, test, what: str, timeout_s: float = 30.0) -> dict:
    end = time.monotonic() + timeout_s
    data = None
    while time.monotonic() < end and proc.poll() is None:
        try:
            data = json.loads(stats.read_text())
        except (OSError, ValueError):
            data = None
        if data is not None and test(data):
            return data
        time.sleep(0.05)
    raise AssertionError(f"the box never showed {what}: {data}")


@pytest.mark.slow
def test_musicbox_play_hears_each_knob_and_button_over_osc_and_starts_the_sensors(tmp_path):
    """The real box on a JACK dummy server, OSC on 127.0.0.1 and a PIR sensor on a mock pin moving the
    mood: the sensor's idle value, then each knob and button from a python-osc client, shown by the box's
    --stats file; shutdown over OSC ends the box cleanly."""
    if shutil.which("jackd") is None:
        pytest.skip("jackd (jackd2) is not installed")
    from musicbox.runtime.box.soak import JackDummy

    port = _free_udp_port()
    config = tmp_path / "box.toml"
    config.write_text(
        f'[recording]\nfolder = "{tmp_path / "rec"}"\n[synth]\nexpression = 0.0\n'
        f'[osc]\nenabled = true\nbind = "127.0.0.1"\nport = {port}\n'
        '[sensors.motion]\nknob = "mood"\npin = 26\nidle = -0.6\nactive = 0.6\n'
    )
    stats = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--backend", "none"]
    cmd += ["--seconds", "120", "--stats", str(stats)]
    with JackDummy(name=f"mbosc{os.getpid()}"):  # sets JACK_DEFAULT_SERVER: the box plays to it
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            c = lambda s: s["controls"]  # noqa: E731
            first = _stats_when(
                proc, stats, lambda s: s["state"] == "playing" and c(s)["mood"] == -0.6, "the sensor's mood"
            )
            client = SimpleUDPClient("127.0.0.1", port)
            for address, value, field, want in [
                ("style", "folk", "style", 3.0),
                ("tempo", 120.0, "tempo_bpm", 120.0),
                ("mood", 0.5, "mood", 0.5),
                ("variation", 0.75, "variation", 0.75),
                ("meter", "3/4", "meter", "3/4"),
                ("key", "D", "key", "D"),
            ]:
                client.send_message(f"/musicbox/{address}", value)
                _stats_when(proc, stats, lambda s, f=field, w=want: c(s)[f] == w, f"{field} {want!r}")
            last = _stats_when(proc, stats, lambda s: True, "its stats")
            assert c(last)["style"] == 3.0 and c(last)["tempo_bpm"] == 120.0  # each knob kept the others

            presses = [
                ("next", lambda s, b: s["seed"] != b["seed"]),
                ("keep", lambda s, b: s["generation"] > b["generation"]),
                ("new", lambda s, b: s["generation"] > b["generation"]),
                ("save", lambda s, b: s["saves"] + s["save_failures"] > b["saves"] + b["save_failures"]),
                ("volume_down", lambda s, b: s["volume_db"] < b["volume_db"]),  # from 0 dB, the top
                ("volume_up", lambda s, b: s["volume_db"] > b["volume_db"]),
                ("play_pause", lambda s, b: s["state"] == "paused"),
                ("play_pause", lambda s, b: s["state"] == "playing"),
            ]
            for button, moved in presses:
                before = _stats_when(proc, stats, lambda s: True, "its stats")
                client.send_message(f"/musicbox/{button}", [])
                _stats_when(proc, stats, lambda s, m=moved, b=before: m(s, b), f"{button} pressed")
            pressed = {b for b, _ in presses} | {"shutdown"}
            # every button (sleep: test_sleep.py; preset: test_presets_on_box.py, nothing saved here)
            assert pressed == {b.value for b in Button} - {"sleep", "preset"}
            client.send_message("/musicbox/shutdown", [])
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, out
    assert f"OSC on udp://127.0.0.1:{port}" in out and "sensors: motion -> mood" in out
    assert first["controls"]["mood"] == -0.6
