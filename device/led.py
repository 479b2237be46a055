"""The box's status LED: one light on a PWM-capable pin that tells a maker what the box is doing.

``[board] led_pin`` (a BCM pin through a resistor to GND; -1 = no LED). :class:`StatusLed` drives it with
gpiozero's ``PWMLED``; the box tells it what happens with :meth:`StatusLed.show`:

==========================  =====================================================================
``LedState``                the light
==========================  =====================================================================
``OFF``                     off (stopped)
``PAUSED``                  steady and dim
``PLAYING``                 breathing (a slow fade in and out, :data:`BREATH_S` each way)
``DEVICE_LOST``             a fault: fast flashes (:data:`FAULT_FLASH_S`) for as long as it lasts
``SAVED``                   one bright blink, then back to what it showed before
``WORKER_RESTARTED``        a fault: :data:`FAULT_FLASHES` fast flashes, then back
==========================  =====================================================================

``OFF``, ``PAUSED``, ``PLAYING`` and ``DEVICE_LOST`` are lasting states; ``SAVED`` and
``WORKER_RESTARTED`` are events shown over the lasting state, which comes back when they are done.
gpiozero's background thread runs the patterns; :meth:`show` returns at once and may be called from any
thread. Tests run it on gpiozero's ``MockFactory``.
"""

from __future__ import annotations

import enum
import threading
from typing import Any

from musicbox.errors import HardwareError

BREATH_S = 1.5
"""Seconds of one fade in (and of one fade out) while playing."""
PAUSED_LEVEL = 0.1
"""Brightness (0..1) while paused."""
BLINK_S = 0.15
"""On and off time of the blink per save, seconds."""
FAULT_FLASH_S = 0.08
"""On and off time of a fault's flashes, seconds."""
FAULT_FLASHES = 6
"""Flashes for a worker restart."""
NO_LED = -1


class LedState(enum.Enum):
    """What the LED shows (see the module's table)."""

    OFF = "off"
    PAUSED = "paused"
    PLAYING = "playing"
    DEVICE_LOST = "device_lost"
    SAVED = "saved"
    WORKER_RESTARTED = "worker_restarted"

    @property
    def lasting(self) -> bool:
        """True for a state that stays until the next one; False for an event shown once."""
        return self not in (LedState.SAVED, LedState.WORKER_RESTARTED)


class StatusLed:
    """The status LED on BCM ``pin`` (``-1``: none, every call does nothing).

    pin_factory: a gpiozero pin factory (tests pass ``MockFactory(pin_class=MockPWMPin)``); None = the
    board's. Raises HardwareError when the pin cannot be opened.
    """

    def __init__(self, pin: int, pin_factory: Any = None):
        self.pin = pin
        self.state = LedState.OFF
        """The lasting state shown (or shown again once an event is done)."""
        self._lock = threading.Lock()
        self._back: threading.Timer | None = None
        self._seen: tuple[int, int] | None = None  # (saves, worker restarts) :meth:`follow` saw last
        self._led: Any = None
        if pin == NO_LED:
            return
        try:
            from gpiozero import PWMLED

            self._led = PWMLED(pin, pin_factory=pin_factory)
        except Exception as exc:  # gpiozero raises its own BadPinFactory / PinPWMUnsupported / GPIOPinInUse
            raise HardwareError(
                f"[board] led_pin = {pin}: cannot drive the status LED ({type(exc).__name__}: {exc}); "
                "use a free GPIO pin (firmware_config/WIRING.md), or -1 for no LED"
            ) from None

    @classmethod
    def from_config(cls, config, pin_factory: Any = None) -> StatusLed:
        """The LED of ``config`` (``[board] led_pin``)."""
        return cls(config.led_pin, pin_factory)

    def show(self, state: LedState) -> None:
        """Show ``state``: a lasting state replaces the one shown; an event plays once, then the lasting
        state comes back."""
        with self._lock:
            if self._back is not None:
                self._back.cancel()
                self._back = None
            if state.lasting:
                self.state = state
            if self._led is None:
                return
            seconds = self._start(state)
            if not state.lasting:
                self._back = threading.Timer(seconds, self._resume)
                self._back.daemon = True
                self._back.start()

    def follow(self, state: str, audio_state: str, saves: int, worker_restarts: int) -> None:
        """Show what the box's status says (``BoxStatus``'s fields, once a second): playing, paused, the
        audio device lost, stopped; a blink for each new save and the fault flashes for a new worker
        restart."""
        if audio_state == "lost":
            lasting = LedState.DEVICE_LOST
        elif state in ("playing", "starting", "recovering"):
            lasting = LedState.PLAYING
        elif state == "paused":
            lasting = LedState.PAUSED
        else:
            lasting = LedState.OFF
        seen = self._seen
        self._seen = (saves, worker_restarts)
        if seen is not None and worker_restarts > seen[1]:
            self.state = lasting  # the fault flashes, then the state now
            self.show(LedState.WORKER_RESTARTED)
        elif seen is not None and saves > seen[0]:
            self.state = lasting
            self.show(LedState.SAVED)
        elif lasting is not self.state:
            self.show(lasting)

    def _resume(self) -> None:
        with self._lock:
            self._back = None
            if self._led is not None:
                self._start(self.state)

    def _start(self, state: LedState) -> float:
        """Start ``state``'s pattern on the LED; returns how long an event's pattern lasts."""
        led = self._led
        if state is LedState.OFF:
            led.off()
        elif state is LedState.PAUSED:
            led.value = PAUSED_LEVEL
        elif state is LedState.PLAYING:
            led.pulse(fade_in_time=BREATH_S, fade_out_time=BREATH_S, background=True)
        elif state is LedState.DEVICE_LOST:
            led.blink(on_time=FAULT_FLASH_S, off_time=FAULT_FLASH_S, background=True)
        elif state is LedState.SAVED:
            led.blink(on_time=BLINK_S, off_time=BLINK_S, n=1, background=True)
            return 2 * BLINK_S
        else:  # WORKER_RESTARTED
            led.blink(on_time=FAULT_FLASH_S, off_time=FAULT_FLASH_S, n=FAULT_FLASHES, background=True)
            return 2 * FAULT_FLASH_S * FAULT_FLASHES
        return 0.0

    def close(self) -> None:
        """Turn the LED off and free its pin (idempotent)."""
        with self._lock:
            if self._back is not None:
                self._back.cancel()
                self._back = None
            led, self._led = self._led, None
        if led is not None:
            led.close()
