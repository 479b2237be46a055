"""The gpio backend on gpiozero's MockFactory: an MCP3008 SPI slave, rotary encoders, buttons with hold."""

from __future__ import annotations

import time

import pytest
from gpiozero import Button as GzButton
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockSPIDevice

from musicbox.config import load_config
from musicbox.device import knob_map, open_backend
from musicbox.device.buttons import Button
from musicbox.device.gpio import GpioBackend
from musicbox.errors import HardwareError
from musicbox.runtime.controls import Controls
from tests.helpers.callbacks import Recorder

STYLES = ("chorale", "folk", "renaissance", "quartet")
CLOCK, MOSI, MISO, CE0 = 11, 10, 9, 8  # SPI0 on the header


class MockMCP3008(MockSPIDevice):
    """The slave side of an MCP3008: after start bit, mode and 3 channel bits, reply 10 bits of data."""

    def __init__(self):
        super().__init__(CLOCK, MOSI, MISO, CE0)
        self.values = [0] * 8  # raw 0..1023 per channel

    def on_bit(self):
        if self.rx_bit == 12:  # 7 zero bits, start, single-ended, 3 channel bits
            self.tx_word(self.values[self.rx_word() & 7], 12)


@pytest.fixture
def mock_pins():
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = None


@pytest.fixture
def adc(mock_pins):
    slave = MockMCP3008()
    slave.values[:3] = [0, 512, 512]  # style fully left, tempo and mood centred
    yield slave
    slave.close()


def box_config(tmp_path, extra=""):
    text = (
        '[board]\nname = "pi4"\n[knobs]\nbackend = "gpio"\nsmoothing = 0.0\nhysteresis = 0.01\n'
        "rate_limit = 0.05\npoll_interval = 0.005\n"
        + extra
        + "[buttons]\nhold_seconds = 0.2\nbounce_seconds = 0.0\n"
    )
    path = tmp_path / "box.toml"
    path.write_text(text)
    return load_config(path)


def press(pins, pin, seconds=0.0):
    pins.pin(pin).drive_low()  # pull-up: pressed = low
    time.sleep(seconds)
    pins.pin(pin).drive_high()
    time.sleep(0.05)  # a finger lets go before it presses again (two presses never merge)


def test_turn_every_knob_and_press_every_button(tmp_path, mock_pins, adc):
    rec = Recorder()
    with open_backend(box_config(tmp_path), STYLES) as backend:
        assert isinstance(backend, GpioBackend)
        backend.start(rec.on_controls, rec.on_button)
        assert rec.controls[0].style == 0.0 and rec.controls[0].tempo_bpm == 110.0
        adc.values[:3] = [1023, 1023, 0]  # style fully right, tempo fastest, mood darkest
        rec.wait_for(
            lambda r: (r.controls[-1].style, r.controls[-1].tempo_bpm, r.controls[-1].mood) == (3, 160, -1)
        )
        adc.values[0] = 480  # between folk and renaissance: a blend
        rec.wait_for(lambda r: 1 < r.controls[-1].style < 2)
        for pin in (6, 13, 5):  # next, save, play (short press)
            press(mock_pins, pin)
        press(mock_pins, 5, seconds=0.8)  # held well past hold_seconds (0.2 s), even on a loaded host
        rec.wait_for(lambda r: len(r.buttons) == 4)
    assert rec.buttons == [Button.NEXT, Button.SAVE, Button.PLAY_PAUSE, Button.SHUTDOWN]


def _polled_backend(tmp_path, rec):
    """A gpio backend the test polls itself (no thread), reporting to ``rec``."""
    config = box_config(tmp_path)
    backend = GpioBackend(config, knob_map(config, STYLES), STYLES)
    backend.on_controls, backend.on_button = rec.on_controls, rec.on_button
    return backend


def _poll_until(backend, t0, seconds, step=0.01):
    t = t0
    while t < t0 + seconds:
        backend.poll(t)
        t += step
    return t


def test_a_turn_changes_controls_within_the_rate_limit_and_jitter_does_not(tmp_path, mock_pins, adc):
    rec = Recorder()
    backend = _polled_backend(tmp_path, rec)
    try:
        backend.poll(0.0)
        assert len(rec.controls) == 1
        for i, t in enumerate(range(1, 60)):  # ADC noise: +-3 LSB around the centre for 0.6 s
            adc.values[1] = 512 + (3 if i % 2 else -3)
            backend.poll(t / 100)
        assert len(rec.controls) == 1
        adc.values[1] = 900  # a real turn of the tempo knob
        backend.poll(0.6)
        assert rec.controls[-1].tempo_bpm == pytest.approx(60 + 900 / 1023 * 100, abs=1)
        for i in range(1, 40):  # keep turning fast: at most one change per rate_limit (0.05 s)
            adc.values[1] = 900 - 20 * i
            backend.poll(0.6 + i * 0.005)
        assert len(rec.controls) <= 2 + 0.2 / 0.05 + 1
        _poll_until(backend, 0.8, 0.1)
        assert rec.controls[-1].tempo_bpm == pytest.approx(60 + 120 / 1023 * 100, abs=1)  # the final position
    finally:
        backend.close()


def test_rotary_encoders(tmp_path, mock_pins):
    config = box_config(tmp_path, 'input = "encoder"\n')
    rec = Recorder()
    with open_backend(config, STYLES) as backend:
        backend.start(rec.on_controls, rec.on_button)
        assert rec.controls[0].mood == 0.0  # encoders start in the middle
        a, b = (mock_pins.pin(p) for p in config.knobs.encoder.mood)
        for _ in range(4):  # four detents clockwise from rest (pulled up): A leads B
            a.drive_low(), b.drive_low(), a.drive_high(), b.drive_high()
        # 40 detents over the travel: 4 detents = 4/20 of the mood axis (-1..1)
        rec.wait_for(lambda r: r.controls[-1].mood == pytest.approx(4 / 20, abs=0.02))


def test_unusable_pins_are_a_hardware_error(tmp_path, mock_pins):
    config = box_config(tmp_path)
    blocker = GzButton(5)  # the play pin is already in use
    try:
        with pytest.raises(HardwareError, match="gpio knob backend"):
            open_backend(config, STYLES)
    finally:
        blocker.close()


def test_a_change_from_the_web_remote_holds_until_that_knob_is_turned(tmp_path, mock_pins, adc):
    """Last writer wins, knob by knob: the page's values stay until a pot is turned, and turning the
    tempo pot takes over the tempo only (style and mood keep the page's values)."""
    rec = Recorder()
    backend = _polled_backend(tmp_path, rec)
    try:
        backend.poll(0.0)
        page = Controls(style=2.0, tempo_bpm=150.0, mood=0.8, variation=0.9)
        backend.follow(page)
        t = _poll_until(backend, 0.1, 0.3)
        assert rec.controls[-1] != page and len(rec.controls) == 1  # the pots did not snap it back
        adc.values[1] = 100  # the tempo pot turned
        _poll_until(backend, t, 0.3)
        turned = rec.controls[-1]
        assert turned.tempo_bpm == pytest.approx(60 + 100 / 1023 * 100, abs=1)
        assert (turned.style, turned.mood, turned.variation) == (2.0, 0.8, 0.9)
    finally:
        backend.close()
