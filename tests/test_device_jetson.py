"""The Jetson backend against stand-ins for Jetson.GPIO and spidev (they only import on a Jetson)."""

from __future__ import annotations

import sys
import types

import pytest

from musicbox.config import load_config
from musicbox.device import knob_map
from musicbox.device.buttons import Button
from musicbox.device.jetson import JetsonBackend, Quadrature, mcp3008_request, mcp3008_value
from musicbox.errors import HardwareError

STYLES = ("chorale", "folk", "renaissance")


class FakeGPIO(types.ModuleType):
    """What the backend uses of Jetson.GPIO: BCM mode, inputs, edge callbacks."""

    BCM, IN, BOTH, LOW, HIGH = "BCM", "IN", "BOTH", 0, 1

    def __init__(self):
        super().__init__("Jetson.GPIO")
        self.levels, self.callbacks, self.cleaned = {}, {}, []

    def setmode(self, mode):
        assert mode == self.BCM

    def setwarnings(self, flag):
        pass

    def setup(self, pin, direction):
        self.levels.setdefault(pin, self.HIGH)  # external pull-ups

    def input(self, pin):
        return self.levels[pin]

    def add_event_detect(self, pin, edge, callback):
        self.callbacks[pin] = callback

    def set(self, pin, level):
        self.levels[pin] = level
        if pin in self.callbacks:
            self.callbacks[pin](pin)

    def cleanup(self, pins):
        self.cleaned += list(pins)


class FakeSpiDev:
    values = [0] * 8  # raw 0..1023 per MCP3008 channel

    def open(self, port, device):
        assert (port, device) == (0, 0)

    def xfer2(self, data):
        value = self.values[(data[1] >> 4) - 8]
        return [0, value >> 8, value & 0xFF]

    def close(self):
        pass


@pytest.fixture
def fake_jetson(monkeypatch):
    gpio = FakeGPIO()
    package = types.ModuleType("Jetson")
    package.GPIO = gpio
    monkeypatch.setitem(sys.modules, "Jetson", package)
    monkeypatch.setitem(sys.modules, "Jetson.GPIO", gpio)
    monkeypatch.setitem(sys.modules, "spidev", types.SimpleNamespace(SpiDev=FakeSpiDev))
    return gpio


def jetson_config(tmp_path, extra=""):
    path = tmp_path / "box.toml"
    path.write_text(
        '[board]\nname = "jetson-nano"\n[knobs]\nbackend = "jetson"\nsmoothing = 0.0\nrate_limit = 0.1\n'
        + extra
        + "[buttons]\nhold_seconds = 1.0\nbounce_seconds = 0.02\n"
    )
    return load_config(path)


def test_knobs_and_buttons(tmp_path, fake_jetson):
    config = jetson_config(tmp_path)
    FakeSpiDev.values[:3] = [0, 0, 1023]
    controls, buttons = [], []
    backend = JetsonBackend(config, knob_map(config, STYLES), STYLES)
    backend.on_controls, backend.on_button = controls.append, buttons.append
    backend.poll(0.0)
    assert controls == [controls[0]] and (controls[0].style, controls[0].tempo_bpm, controls[0].mood) == (
        0,
        60,
        1,
    )
    FakeSpiDev.values[:3] = [1023, 1023, 0]
    backend.poll(0.05)  # within the rate limit: held back
    backend.poll(0.11)
    assert (controls[-1].style, controls[-1].tempo_bpm, controls[-1].mood) == (2, 160, -1) and len(
        controls
    ) == 2
    t = 0.2
    for pin, hold in ((6, 0.1), (13, 0.1), (5, 0.1), (5, 1.5)):  # next, save, play short, play held
        fake_jetson.levels[pin] = FakeGPIO.LOW
        for _ in range(int(hold / 0.02) + 2):
            t += 0.02
            backend.poll(t)
        fake_jetson.levels[pin] = FakeGPIO.HIGH
        for _ in range(3):
            t += 0.02
            backend.poll(t)
    assert buttons == [Button.NEXT, Button.SAVE, Button.PLAY_PAUSE, Button.SHUTDOWN]
    backend.close()
    assert sorted(fake_jetson.cleaned) == [5, 6, 13]


def test_encoders_decode_edges(tmp_path, fake_jetson):
    config = jetson_config(tmp_path, 'input = "encoder"\n')
    backend = JetsonBackend(config, knob_map(config, STYLES), STYLES)
    a, b = config.knobs.encoder.tempo
    fake_jetson.levels[a] = fake_jetson.levels[b] = 0
    for _ in range(5):  # five detents clockwise
        for pin, level in ((a, 1), (b, 1), (a, 0), (b, 0)):
            fake_jetson.set(pin, level)
    assert backend.read_knobs()["tempo"] == pytest.approx(0.5 + 5 / 40)
    backend.close()


def test_quadrature_and_mcp3008_protocol():
    q = Quadrature(steps=4)  # 4 detents over the travel: 2 from the middle to an end
    for a, b in [
        (1, 0),
        (1, 1),
        (0, 1),
        (0, 0),
    ] * 3:  # 3 detents clockwise: clamped at the end
        q.update(a, b)
    assert q.position == 1.0
    for a, b in [(0, 1), (1, 1), (1, 0), (0, 0)]:  # one detent back
        q.update(a, b)
    assert q.position == 0.75
    q.update(1, 1)  # an impossible jump (both changed) counts nothing
    assert q.position == 0.75
    assert mcp3008_request(2) == [1, 0xA0, 0] and mcp3008_value([0, 3, 255]) == 1.0


def test_missing_jetson_gpio_is_a_hardware_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "Jetson.GPIO", None)
    config = jetson_config(tmp_path)
    with pytest.raises(HardwareError, match="Jetson.GPIO is not importable"):
        JetsonBackend(config, knob_map(config, STYLES), STYLES)
