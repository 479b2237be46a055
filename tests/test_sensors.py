"""Input sensors on gpiozero's mock pins move the knob the config maps them to (device/sensors.py)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from gpiozero.pins.mock import MockFactory

from musicbox.config import default_config
from musicbox.device.sensors import SensorKnobs
from musicbox.errors import ConfigError
from musicbox.runtime.controls import ControlRanges, Controls

RANGES = ControlRanges(("chorale", "folk", "celtic"), 60.0, 160.0)


def _config(**motion):
    sensors = default_config().sensors
    return replace(sensors, motion=replace(sensors.motion, **motion))


def _until(knobs, seen: list, n: int, timeout_s: float = 5.0) -> Controls:
    """Poll until the ``n``-th change was handed on (gpiozero samples the pin on its own thread)."""
    end = time.monotonic() + timeout_s
    while len(seen) < n and time.monotonic() < end:
        knobs.poll()
        time.sleep(0.01)
    assert len(seen) >= n, seen
    return seen[n - 1]


def test_motion_on_a_mock_pin_moves_its_knob():
    factory = MockFactory()
    state = {"c": Controls(mood=0.0)}
    seen = []

    def on_controls(c):
        state["c"] = c
        seen.append(c)

    knobs = SensorKnobs(
        _config(knob="mood", pin=17, idle=-0.5, active=0.8), RANGES, lambda: state["c"], on_controls, factory
    )
    try:
        assert _until(knobs, seen, 1).mood == pytest.approx(-0.5)  # nobody there: the idle value
        factory.pin(17).drive_high()
        moved = _until(knobs, seen, 2)
        assert moved.mood == pytest.approx(0.8) and moved.tempo_bpm == Controls().tempo_bpm
        factory.pin(17).drive_low()
        assert _until(knobs, seen, 3).mood == pytest.approx(-0.5)
        knobs.poll()
        assert len(seen) == 3  # no change, nothing handed on
    finally:
        knobs.close()


def test_a_sensor_value_outside_its_knob_range_is_refused_at_start():
    with pytest.raises(
        ConfigError, match=r"\[sensors.motion\] active: got 300; allowed: a number from 60 to 160"
    ):
        SensorKnobs(
            _config(knob="tempo", pin=17, idle=80, active=300),
            RANGES,
            Controls,
            lambda c: None,
            MockFactory(),
        )


def test_no_sensor_is_fitted_by_default():
    knobs = SensorKnobs(default_config().sensors, RANGES, Controls, lambda c: None, MockFactory())
    assert knobs.sensors == []
