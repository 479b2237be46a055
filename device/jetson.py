"""Jetson knobs and buttons: Jetson.GPIO (BCM numbering) and spidev, imported only when selected.

gpiozero needs a Raspberry Pi revision and does not run on a Jetson, so this backend reads the MCP3008
over ``/dev/spidev<port>.<device>`` itself, decodes rotary encoders from edge interrupts, and polls the
buttons through :class:`~musicbox.device.buttons.ButtonTracker`. Jetson header pins have no internal
pull-ups: buttons need external 10 kOhm pull-ups to 3.3 V (firmware_config/WIRING.md).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from typing import Any

from musicbox.config import UNWIRED, BoxConfig
from musicbox.device.base import PollingBackend
from musicbox.device.buttons import PRESS_EVENTS, ButtonTracker
from musicbox.device.knobs import KNOBS, KnobMap, KnobProcessor
from musicbox.errors import HardwareError

SPI_HZ = 1_000_000  # MCP3008 clock at 3.3 V, Hz
# Gray-code transition (previous AB << 2 | new AB) -> count change; invalid jumps count 0.
_QUADRATURE = (0, -1, 1, 0, 1, 0, 0, -1, -1, 0, 0, 1, 0, 1, -1, 0)


def mcp3008_request(channel: int) -> list[int]:
    """The 3 bytes asking an MCP3008 for a single-ended reading of ``channel`` (0..7)."""
    return [1, (8 + channel) << 4, 0]


def mcp3008_value(reply: Sequence[int]) -> float:
    """An MCP3008's 3-byte reply -> reading 0..1 (10 bits)."""
    return (((reply[1] & 3) << 8) | reply[2]) / 1023.0


class Quadrature:
    """A rotary encoder's position from its A/B levels: 4 transitions per detent, ``steps`` detents
    from one end of the travel to the other; :attr:`position` is 0..1 and starts at 0.5."""

    def __init__(self, steps: int):
        self.limit = 2 * steps  # transitions from the middle to an end
        self.count = 0
        self.state = 0
        self._lock = threading.Lock()

    def update(self, a: int, b: int) -> None:
        """Feed the levels of A and B read at an edge on either."""
        with self._lock:
            new = (int(bool(a)) << 1) | int(bool(b))
            self.count += _QUADRATURE[(self.state << 2) | new]
            self.count = max(-self.limit, min(self.limit, self.count))
            self.state = new

    @property
    def position(self) -> float:
        """Knob position 0..1."""
        return 0.5 + self.count / (2.0 * self.limit)


def _import(module: str, fix: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise HardwareError(f"jetson knob backend: {module} is not importable ({exc}); {fix}") from None
    except Exception as exc:  # Jetson.GPIO raises a bare Exception when the board is not a Jetson
        raise HardwareError(f"jetson knob backend: {module} refuses this machine ({exc})") from None


class JetsonBackend(PollingBackend):
    """Knobs and buttons of ``config`` on a Jetson; ``HardwareError`` when they cannot be opened."""

    name = "jetson"

    def __init__(self, config: BoxConfig, knob_map: KnobMap, style_names: Sequence[str]):
        k, b = config.knobs, config.buttons
        super().__init__(
            knob_map,
            style_names,
            KnobProcessor(knob_map, k.smoothing, k.hysteresis, k.rate_limit),
            k.poll_interval,
        )
        self.gpio = _import("Jetson.GPIO", "`sudo pip install Jetson.GPIO` and add the user to group gpio")
        self.gpio.setmode(self.gpio.BCM)
        self.gpio.setwarnings(False)
        self._config = config
        self._tracker = ButtonTracker(b.hold_seconds, b.bounce_seconds)
        self._buttons = {n: getattr(b, n) for n in PRESS_EVENTS if getattr(b, n) != UNWIRED}
        self._spi: Any = None  # a spidev.SpiDev while open (spidev has no type information)
        self._encoders: dict[str, Quadrature] = {}
        try:
            self._open_knobs()
            for pin in self._buttons.values():
                self.gpio.setup(pin, self.gpio.IN)
        except (OSError, ValueError, RuntimeError) as exc:
            self.close()
            raise HardwareError(
                f"jetson knob backend: {exc}; enable SPI1/I2S with jetson-io and check "
                f"firmware_config/WIRING.md"
            ) from None

    def _open_knobs(self) -> None:
        k = self._config.knobs
        if k.input == "adc":
            spidev = _import("spidev", "`sudo pip install spidev` and enable SPI1 with jetson-io")
            self._spi = spidev.SpiDev()
            self._spi.open(k.adc.spi_port, k.adc.spi_device)
            self._spi.max_speed_hz = SPI_HZ
            self._spi.mode = 0
            return
        for name in KNOBS:
            a, b = getattr(k.encoder, name)
            decoder = self._encoders[name] = Quadrature(k.encoder.steps)
            for pin in (a, b):
                self.gpio.setup(pin, self.gpio.IN)
                self.gpio.add_event_detect(pin, self.gpio.BOTH, callback=self._edge_callback(decoder, a, b))

    def _edge_callback(self, decoder: Quadrature, a: int, b: int):
        return lambda _channel: decoder.update(self.gpio.input(a), self.gpio.input(b))

    def read_knobs(self) -> dict[str, float]:
        if self._spi is None:
            return {n: q.position for n, q in self._encoders.items()}
        adc = self._config.knobs.adc
        return {n: mcp3008_value(self._spi.xfer2(mcp3008_request(getattr(adc, n)))) for n in KNOBS}

    def poll(self, now: float) -> None:
        super().poll(now)
        low_means_pressed = self._config.buttons.pull_up
        for name, pin in self._buttons.items():
            pressed = (self.gpio.input(pin) == self.gpio.LOW) == low_means_pressed
            event = self._tracker.feed(name, pressed, now)
            if event is not None:
                self._emit_button(event)

    def close(self) -> None:
        super().close()
        if self._spi is not None:
            self._spi.close()
            self._spi = None
        pins = list(self._buttons.values()) + [
            p for n in self._encoders for p in getattr(self._config.knobs.encoder, n)
        ]
        if pins:
            self.gpio.cleanup(pins)
        self._buttons, self._encoders = {}, {}
