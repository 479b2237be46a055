"""The small interface every knob/button backend has, and the polling loop most of them share.

A backend calls ``on_controls(Controls)`` once from :meth:`Backend.start` with the knobs' current
position, then whenever the knobs change (at most once per ``knobs.rate_limit`` seconds), and
``on_button(Button)`` when a button is pressed. Callbacks run on a backend thread; an exception in one
is logged, never fatal to the backend.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from musicbox.device.buttons import Button
from musicbox.device.knobs import KnobMap, KnobProcessor
from musicbox.runtime.controls import Controls

log = logging.getLogger("musicbox.device")

OnControls = Callable[[Controls], None]
OnButton = Callable[[Button], None]


class Backend:
    """Knobs and buttons that do nothing: the ``none`` backend (the box plays its default controls).

    ``knob_map`` turns raw positions into controls; ``style_names`` label the style knob's detents.
    """

    name = "none"
    draws = False
    """Whether :meth:`show` draws the status (the box then hands it the playing bar's roll too)."""

    def __init__(self, knob_map: KnobMap, style_names: Sequence[str]):
        self.knob_map = knob_map
        self.style_names = tuple(style_names)
        self.on_controls: OnControls = _ignore
        self.on_button: OnButton = _ignore

    def start(self, on_controls: OnControls, on_button: OnButton) -> None:
        """Begin delivering events; the current controls are delivered before this returns."""
        self.on_controls, self.on_button = on_controls, on_button
        self._emit_controls(self.knob_map.controls(self.knob_map.raw_of(Controls())))

    def show(self, status: Mapping) -> None:
        """Display what the box is doing (only the terminal backend draws; see ``terminal.py``)."""

    def follow(self, controls: Controls) -> None:
        """The box's controls were set elsewhere (the web remote): knobs that are not physical
        positions (the terminal's keys) continue from ``controls``; a potentiometer keeps its place and
        takes over again when turned (last writer wins). Any thread."""

    def close(self) -> None:
        """Stop delivering events and release the hardware; safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _emit_controls(self, controls: Controls) -> None:
        _call(self.on_controls, controls)

    def _emit_button(self, button: Button) -> None:
        log.debug("button %s", button.name)
        _call(self.on_button, button)


def _ignore(_event) -> None:
    return None


def _call(callback: Callable, event) -> None:
    try:
        callback(event)
    except Exception:
        log.exception("knob/button callback failed on %r", event)


class PollingBackend(Backend):
    """A backend whose knobs are read every ``poll_interval`` seconds on a thread.

    Subclasses implement :meth:`read_knobs` (raw positions 0..1 by knob name) and may extend
    :meth:`poll` (buttons) and :meth:`wait` (what to do between polls).
    """

    def __init__(
        self, knob_map: KnobMap, style_names: Sequence[str], processor: KnobProcessor, poll_interval: float
    ):
        super().__init__(knob_map, style_names)
        self.processor = processor
        self.poll_interval = poll_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def read_knobs(self) -> dict[str, float]:
        """Raw positions 0..1 of ``style``, ``tempo`` and ``mood``."""
        raise NotImplementedError

    def start(self, on_controls: OnControls, on_button: OnButton) -> None:
        self.on_controls, self.on_button = on_controls, on_button
        self.poll(time.monotonic())
        self._thread = threading.Thread(target=self._run, name=f"musicbox-{self.name}", daemon=True)
        self._thread.start()

    def poll(self, now: float) -> None:
        """Read the knobs once and pass on new controls (``now``: monotonic seconds)."""
        controls = self.processor.feed(self.read_knobs(), now)
        if controls is not None:
            self._emit_controls(controls)

    def wait(self, timeout: float) -> None:
        """Pause ``timeout`` seconds between polls (returns early when closing)."""
        self._stop.wait(timeout)

    def follow(self, controls: Controls) -> None:
        """Each knob keeps the value set elsewhere until it is turned (:meth:`KnobProcessor.follow`)."""
        self.processor.follow(controls)
        self.knob_map = self.processor.map

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wait(self.poll_interval)
            if self._stop.is_set():
                break
            self._poll_safely()

    def _poll_safely(self) -> None:
        try:
            self.poll(time.monotonic())
        except Exception as exc:
            if not self._failing:
                log.error("%s backend: reading the knobs failed (%s); retrying every poll", self.name, exc)
            self._failing = True
        else:
            if self._failing:
                log.info("%s backend: knobs readable again", self.name)
            self._failing = False
