"""musicbox.device: hardware edges (knobs, buttons, audio sinks, board detection; never torch).

``open_backend(config, style_names, style_meters)`` picks the knob/button backend named by ``config.knobs.backend``:
``gpio`` (gpiozero: MCP3008 potentiometers or rotary encoders, buttons with hold), ``jetson``
(Jetson.GPIO + spidev), ``terminal`` (keys and a rich live view), ``scripted`` (a JSON file of timed
changes) or ``none``. ``auto`` tries the board's own backend, then the terminal when stdin is a TTY, then
``none``, logging each fallback. Hardware libraries are imported only by the backend that needs them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from musicbox.config import BoxConfig
from musicbox.device.base import Backend
from musicbox.device.buttons import Button
from musicbox.device.knobs import KnobMap
from musicbox.errors import ConfigError, HardwareError

__all__ = ["Backend", "Button", "KnobMap", "auto_candidates", "knob_map", "open_backend"]

log = logging.getLogger("musicbox.device")


def knob_map(
    config: BoxConfig, style_names: Sequence[str], style_meters: Sequence[Sequence[str]] = ()
) -> KnobMap:
    """The knob -> controls mapping of ``config`` for these styles and each style's meters (its own
    first; none: 4/4 alone)."""
    k = config.knobs
    meters = tuple(tuple(m) for m in style_meters)
    return KnobMap(
        max(1, len(style_names)), k.min_bpm, k.max_bpm, k.detent_width, k.variation, k.meter, meters
    )


def auto_candidates(config: BoxConfig, stdin_is_tty: bool | None = None) -> list[str]:
    """The backends ``auto`` tries, in order, on this board."""
    tty = sys.stdin is not None and sys.stdin.isatty() if stdin_is_tty is None else stdin_is_tty
    names = [config.board.backend] if config.board.known else []
    names += ["terminal"] if tty else []
    return names + ["none"]


def open_backend(
    config: BoxConfig, style_names: Sequence[str], style_meters: Sequence[Sequence[str]] = (), **options
) -> Backend:
    """Open the configured backend for these styles and their meters (:func:`knob_map`); ``options`` go
    to the terminal backend (``input_fd``, ``console``).

    An explicitly configured backend that cannot be opened raises HardwareError; ``auto`` falls back.
    """
    mapping = knob_map(config, style_names, style_meters)
    if config.knobs.backend != "auto":
        return _open(config.knobs.backend, config, mapping, style_names, options)
    for name in auto_candidates(config)[:-1]:
        try:
            backend = _open(name, config, mapping, style_names, options)
        except HardwareError as exc:
            log.warning("knob backend %s is not usable: %s; falling back", name, exc)
            continue
        log.info("knob backend: %s (auto on %s)", name, config.board.label)
        return backend
    log.info("knob backend: none (no GPIO board, no terminal): the box plays its default controls")
    return Backend(mapping, style_names)


def _open(
    name: str, config: BoxConfig, mapping: KnobMap, style_names: Sequence[str], options: dict
) -> Backend:
    if name == "gpio":
        from musicbox.device.gpio import GpioBackend

        return GpioBackend(config, mapping, style_names)
    if name == "jetson":
        from musicbox.device.jetson import JetsonBackend

        return JetsonBackend(config, mapping, style_names)
    if name == "terminal":
        from musicbox.device.terminal import TerminalBackend

        return TerminalBackend(config, mapping, style_names, **options)
    if name == "scripted":
        from musicbox.device.scripted import ScriptedBackend, load_script
        from musicbox.runtime.controls import ControlRanges

        if config.knobs.script is None:  # load_config refuses this; a BoxConfig built in code may not
            raise ConfigError(
                '[knobs] backend = "scripted" needs [knobs] script, a JSON file of knob changes'
            )
        ranges = ControlRanges(tuple(style_names), mapping.min_bpm, mapping.max_bpm, mapping.meters)
        return ScriptedBackend(load_script(config.knobs.script, ranges), mapping, style_names)
    return Backend(mapping, style_names)
