"""OSC (remote/osc.py) over real UDP sockets: a client turns each knob and presses each button; bad
values are answered and change nothing; only LAN senders are heard; bar and beat go to subscribers."""

from __future__ import annotations

import queue
import threading
import time

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
