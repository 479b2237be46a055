"""Input sensors moving knobs, for exhibitions (``[sensors]``, docs/rig.md): a PIR motion sensor
(gpiozero ``MotionSensor``), an HC-SR04 distance sensor (``DistanceSensor``: near = 1) and a light
sensor (``LightSensor``, an LDR and a capacitor: bright = 1), each mapped onto one knob.

A sensor's reading ``v`` in 0..1 sets its knob to ``idle + v * (active - idle)``; both ends are checked
against the knob's range when the box starts (``ControlRanges``, the one check), so a sensor can never
ask for a value the box refuses. Readings are polled (``poll_s``) and a change is handed on only when
the knob moves by more than ``hysteresis`` of its range.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from musicbox.runtime.controls import FIELDS, ControlRanges, Controls

log = logging.getLogger("musicbox.sensors")
KINDS = ("motion", "distance", "light")


class SensorKnobs:
    """The fitted sensors of ``config`` (``config.sensors``) turning knobs: ``controls()`` gives the knobs
    now, ``on_controls(Controls)`` takes the new ones. ``pin_factory``: gpiozero's (MockFactory in tests)."""

    def __init__(
        self,
        config,
        ranges: ControlRanges,
        controls: Callable[[], Controls],
        on_controls: Callable[[Controls], None],
        pin_factory=None,
        poll_s: float = 0.05,
        hysteresis: float = 0.01,
    ):
        self.controls, self.on_controls = controls, on_controls
        self.poll_s, self.hysteresis = poll_s, hysteresis
        self.sensors: list[tuple[str, object, str, float, float, float]] = []
        for kind in KINDS:
            s = getattr(config, kind)
            if not s.knob:
                continue
            where = f"[sensors.{kind}]"
            idle = ranges.check(s.knob, s.idle, f"{where} idle")
            active = ranges.check(s.knob, s.active, f"{where} active")
            lo, hi = ranges.limits(s.knob)
            self.sensors.append((kind, _open(kind, s, pin_factory), s.knob, idle, active, hi - lo))
        self._last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="musicbox-sensors", daemon=True)

    def start(self) -> None:
        if self.sensors:
            self._thread.start()
            log.info("sensors: %s", ", ".join(f"{k} -> {knob}" for k, _, knob, *_ in self.sensors))

    def poll(self) -> None:
        """Read every sensor once and hand on the knobs that moved."""
        for kind, device, knob, idle, active, span in self.sensors:
            value = idle + reading(kind, device) * (active - idle)
            if abs(value - self._last.get(kind, float("inf"))) > self.hysteresis * span:
                self._last[kind] = value
                turned: dict[str, float] = {
                    FIELDS[knob]: value
                }  # a number field: style, tempo, mood, variation
                self.on_controls(replace(self.controls(), **turned))  # type: ignore[arg-type]

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def close(self) -> None:
        self._stop.set()
        for _, device, *_ in self.sensors:
            device.close()  # type: ignore[attr-defined]


def reading(kind: str, device) -> float:
    """A sensor's reading 0..1: motion 0/1, distance 1 (touching) .. 0 (its max distance or farther),
    light 0 (dark) .. 1 (bright)."""
    if kind == "distance":
        return 1.0 - min(max(device.distance / device.max_distance, 0.0), 1.0)
    return min(max(float(device.value), 0.0), 1.0)


def _open(kind: str, s, pin_factory):
    from gpiozero import DistanceSensor, LightSensor, MotionSensor

    if kind == "motion":
        return MotionSensor(s.pin, pin_factory=pin_factory)
    if kind == "light":
        return LightSensor(s.pin, pin_factory=pin_factory)
    return DistanceSensor(echo=s.pin, trigger=s.trigger, max_distance=2.0, pin_factory=pin_factory)
