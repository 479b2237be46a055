"""The status LED (device/led.py) on gpiozero's MockFactory with PWM pins: breathing while playing, a
blink per save, fault flashes for a worker restart and for a lost device, and `[board] led_pin`."""

from __future__ import annotations

import time

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from musicbox.config import load_config
from musicbox.device.led import FAULT_FLASHES, PAUSED_LEVEL, LedState, StatusLed
from musicbox.errors import ConfigError, HardwareError

PIN = 12


@pytest.fixture
def factory():
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


@pytest.fixture
def led(factory):
    light = StatusLed(PIN, pin_factory=factory)
    yield light
    light.close()


def mark(pin) -> int:
    """Where the pin's history stands now (gpiozero's mock pins keep every value they were set to)."""
    return len(pin.states)


def values_since(pin, since: int) -> list[float]:
    return [s.state for s in list(pin.states)[since:]]


def wait_for(test, timeout_s: float = 5.0):
    end = time.monotonic() + timeout_s
    while True:
        result = test()
        if result:
            return result
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def breathing(pin, t0: int) -> bool:
    """The light rose through intermediate levels and fell again since mark ``t0``."""
    v = [x for x in values_since(pin, t0) if 0.0 < x < 1.0]
    peak = v.index(max(v)) if v else 0
    return len(v) > 10 and v[0] < v[peak] and v[-1] < v[peak] and peak < len(v) - 3


def flashes(pin, t0: int) -> int:
    """Full on -> off cycles since mark ``t0``."""
    v = values_since(pin, t0)
    return sum(1 for a, b in zip(v[:-1], v[1:], strict=True) if a == 1.0 and b == 0.0)


def _pin(factory):
    return factory.pin(PIN)


def test_no_led_does_nothing():
    light = StatusLed(-1)
    light.show(LedState.PLAYING)
    light.show(LedState.SAVED)
    assert light.state is LedState.PLAYING
    light.close()


def test_playing_breathes_and_paused_is_steady_and_dim(led, factory):
    pin = _pin(factory)
    t0 = mark(pin)
    led.show(LedState.PLAYING)
    wait_for(lambda: breathing(pin, t0), 6.0)
    led.show(LedState.PAUSED)
    wait_for(lambda: pin.state == PAUSED_LEVEL)
    led.show(LedState.OFF)
    assert pin.state == 0.0


def test_a_save_blinks_once_and_the_breathing_comes_back(led, factory):
    pin = _pin(factory)
    led.show(LedState.PLAYING)
    t0 = mark(pin)
    led.show(LedState.SAVED)
    wait_for(lambda: flashes(pin, t0) == 1)
    after = mark(pin)
    wait_for(lambda: breathing(pin, after), 6.0)
    assert flashes(pin, t0) == 1 and led.state is LedState.PLAYING


def test_a_worker_restart_flashes_the_fault_pattern_then_playing_again(led, factory):
    pin = _pin(factory)
    led.show(LedState.PLAYING)
    t0 = mark(pin)
    led.show(LedState.WORKER_RESTARTED)
    wait_for(lambda: flashes(pin, t0) >= FAULT_FLASHES)
    after = mark(pin)
    wait_for(lambda: breathing(pin, after), 6.0)
    assert flashes(pin, t0) == FAULT_FLASHES


def test_a_lost_device_flashes_until_it_is_back(led, factory):
    pin = _pin(factory)
    led.show(LedState.PLAYING)
    t0 = mark(pin)
    led.show(LedState.DEVICE_LOST)
    wait_for(lambda: flashes(pin, t0) >= FAULT_FLASHES + 2)  # more than an event's: it lasts
    led.show(LedState.SAVED)  # a save meanwhile blinks, then the fault pattern comes back
    t1 = mark(pin)
    wait_for(lambda: flashes(pin, t1) >= 4)
    led.show(LedState.PLAYING)
    after = mark(pin)
    wait_for(lambda: breathing(pin, after), 6.0)
    assert led.state is LedState.PLAYING


def test_a_pin_without_pwm_is_a_clear_error():
    factory = MockFactory()  # plain pins: no PWM
    try:
        with pytest.raises(HardwareError, match=r"\[board\] led_pin = 12: cannot drive the status LED"):
            StatusLed(PIN, pin_factory=factory)
    finally:
        factory.reset()


def test_led_pin_in_the_board_section(tmp_path, factory):
    box = tmp_path / "box.toml"
    box.write_text("")
    assert load_config(box).led_pin == -1  # the default: no LED
    box.write_text("[board]\nled_pin = 12\n")
    config = load_config(box)
    assert config.led_pin == 12
    light = StatusLed.from_config(config, pin_factory=factory)
    light.show(LedState.PLAYING)
    wait_for(lambda: 0.0 < _pin(factory).state < 1.0)
    light.close()
    box.write_text('[board]\nname = "pi4"\nled_pin = 17\n[buttons]\nsave = 17\n')
    with pytest.raises(ConfigError, match="pin 17 is also"):
        load_config(box)
    box.write_text('[board]\nled_pin = "thirteen"\n')
    with pytest.raises(ConfigError, match="board.led_pin"):
        load_config(box)
    assert Device.pin_factory is None or Device.pin_factory is not factory  # no global factory left behind


def test_the_led_follows_the_box_status(led, factory, monkeypatch):
    shown = []
    real = led.show
    monkeypatch.setattr(led, "show", lambda state: (shown.append(state), real(state)))
    led.follow("starting", "running", 0, 0)
    led.follow("playing", "running", 0, 0)  # already breathing: nothing new
    led.follow("playing", "running", 1, 0)  # a save landed
    led.follow("playing", "running", 1, 1)  # a worker was replaced
    led.follow("playing", "lost", 1, 1)  # the audio device went away
    led.follow("paused", "running", 1, 1)
    led.follow("stopping", "closed", 1, 1)
    assert shown == [
        LedState.PLAYING,
        LedState.SAVED,
        LedState.WORKER_RESTARTED,
        LedState.DEVICE_LOST,
        LedState.PAUSED,
        LedState.OFF,
    ]
    assert led.state is LedState.OFF
