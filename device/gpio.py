"""Raspberry Pi knobs and buttons through gpiozero (any pin factory: lgpio on a Pi 5, RPi.GPIO, mock).

Knobs are potentiometers on an MCP3008 ADC (``knobs.input = "adc"``) or rotary encoders
(``"encoder"``); buttons are gpiozero ``Button``s between a pin and ground whose hold time gives
play_pause its SHUTDOWN long-press. Tests run it on gpiozero's ``MockFactory``.
"""

from __future__ import annotations

from collections.abc import Sequence

from musicbox.config import UNWIRED, BoxConfig
from musicbox.device.base import PollingBackend
from musicbox.device.buttons import PRESS_EVENTS, Button
from musicbox.device.knobs import KNOBS, KnobMap, KnobProcessor
from musicbox.errors import HardwareError

FIX = "install it with `pip install gpiozero` (and `sudo apt install python3-lgpio` on a Pi 5)"


def _gpiozero():
    try:
        import gpiozero
    except ImportError as exc:
        raise HardwareError(f"gpio knob backend: gpiozero is not importable ({exc}); {FIX}") from None
    return gpiozero


class GpioBackend(PollingBackend):
    """Knobs and buttons of ``config`` on gpiozero devices; ``HardwareError`` when they cannot be opened."""

    name = "gpio"

    def __init__(self, config: BoxConfig, knob_map: KnobMap, style_names: Sequence[str]):
        k = config.knobs
        processor = KnobProcessor(knob_map, k.smoothing, k.hysteresis, k.rate_limit)
        super().__init__(knob_map, style_names, processor, k.poll_interval)
        self._gz = _gpiozero()
        self._devices: list = []
        self._held = False
        self._encoders = k.input == "encoder"
        try:
            self._knobs = self._open_knobs(config)
            self._open_buttons(config)
        except self._gz.GPIOZeroError as exc:
            self.close()
            raise HardwareError(
                f"gpio knob backend: {type(exc).__name__}: {exc}; check the wiring, "
                f"`raspi-config` (SPI on) and firmware_config/WIRING.md"
            ) from None

    def _open_knobs(self, config: BoxConfig) -> dict:
        k = config.knobs
        if k.input == "adc":
            return {
                n: self._own(
                    self._gz.MCP3008(channel=getattr(k.adc, n), port=k.adc.spi_port, device=k.adc.spi_device)
                )
                for n in KNOBS
            }
        max_steps = max(1, k.encoder.steps // 2)
        return {
            n: self._own(self._gz.RotaryEncoder(*getattr(k.encoder, n), max_steps=max_steps)) for n in KNOBS
        }

    def _open_buttons(self, config: BoxConfig) -> None:
        b = config.buttons
        for name in PRESS_EVENTS:
            pin = getattr(b, name)
            if pin == UNWIRED:
                continue
            button = self._own(
                self._gz.Button(
                    pin, pull_up=b.pull_up, bounce_time=b.bounce_seconds or None, hold_time=b.hold_seconds
                )
            )
            if name == "play_pause":
                button.when_pressed = self._play_pressed
                button.when_held = self._play_held
                button.when_released = self._play_released
            else:
                button.when_pressed = lambda _dev, event=PRESS_EVENTS[name]: self._emit_button(event)

    def _own(self, device):
        self._devices.append(device)
        return device

    def _play_pressed(self, _device=None) -> None:
        self._held = False

    def _play_held(self, _device=None) -> None:
        self._held = True
        self._emit_button(Button.SHUTDOWN)

    def _play_released(self, _device=None) -> None:
        if not self._held:
            self._emit_button(Button.PLAY_PAUSE)

    def read_knobs(self) -> dict[str, float]:
        if self._encoders:
            return {n: (dev.value + 1.0) / 2.0 for n, dev in self._knobs.items()}
        return {n: dev.value for n, dev in self._knobs.items()}

    def close(self) -> None:
        super().close()
        while self._devices:
            self._devices.pop().close()
