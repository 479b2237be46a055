"""Timed knob changes from a JSON file, for tests, demos and ``musicbox render --script``.

The file is a list of events, each at a time in seconds from the start with one or more knob values::

    [{"at": 0, "style": "chorale", "tempo": 90, "mood": -0.5},
     {"at": 20, "style": 1.5},
     {"at": 40, "mood": 0.8, "button": "next"},
     {"at": 60, "variation": 0.0, "button": "keep"},
     {"at": 80, "meter": "3/4"},
     {"at": 90, "key": "D"}]

``style`` is a position 0..n_styles-1 or a style name; ``tempo`` BPM; ``mood`` -1..1; ``variation``
0..1 (how far returning sections depart from their first playing); ``meter`` "" (the style's own) or a
meter such as "3/4" or "6/8"; ``key`` "" (the seed's) or a tonic, "C" .. "B" (from the next phrase
start); each checked against the caller's
:class:`~musicbox.runtime.controls.ControlRanges` (``render``: the manifest's; the box: its knobs'); the
optional ``button`` is play_pause, next, save, keep, new, volume_up, volume_down or shutdown. Values are
exact: no smoothing, no rate limit.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from musicbox.device.base import Backend
from musicbox.device.buttons import Button
from musicbox.device.knobs import KnobMap
from musicbox.errors import ConfigError
from musicbox.runtime.controls import FIELDS, KNOBS, ControlRanges, Controls

EVENT_KEYS = ("at", *KNOBS, "meter", "key", "button")


@dataclass(frozen=True)
class ScriptEvent:
    """One scripted change at ``at`` seconds: new knob values, meter and key (None = unchanged) and/or a
    button."""

    at: float
    style: float | None = None
    tempo_bpm: float | None = None
    mood: float | None = None
    variation: float | None = None
    button: Button | None = None
    meter: str | None = None
    key: str | None = None

    def apply(self, controls: Controls) -> Controls:
        """``controls`` with this event's knob values set."""
        fields = (*FIELDS.values(), "meter", "key")
        changes = {k: getattr(self, k) for k in fields if getattr(self, k) is not None}
        return replace(controls, **changes)


def load_script(path: str | Path, ranges: ControlRanges) -> list[ScriptEvent]:
    """Read and check a script file; ConfigError naming the file and the entry when it is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the knob script: {exc}") from None
    return parse_script(data, ranges, source=str(path))


def parse_script(data, ranges: ControlRanges, source: str = "<script>") -> list[ScriptEvent]:
    """Check decoded JSON ``data`` (a list of event objects); events sorted by time."""
    if not isinstance(data, list):
        raise ConfigError(f'{source}: expected a JSON list of events like {{"at": 0, "tempo": 90}}')
    events = [_parse_event(item, i, ranges, source) for i, item in enumerate(data)]
    return sorted(events, key=lambda e: e.at)


def _parse_event(item, index: int, ranges: ControlRanges, source: str) -> ScriptEvent:
    where = f"{source}: [{index}]"
    if not isinstance(item, dict):
        raise ConfigError(f'{where}: expected an object with "at" and a knob or button')
    unknown = set(item) - set(EVENT_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(EVENT_KEYS)}")
    at = _number(item, "at", 0.0, math.inf, where)
    if len(item) < 2 or at is None:
        raise ConfigError(f'{where}: needs "at" (seconds) and at least one of {", ".join(EVENT_KEYS[1:])}')
    return ScriptEvent(
        at=at,
        style=_knob(item, "style", ranges, where),
        tempo_bpm=_knob(item, "tempo", ranges, where),
        mood=_knob(item, "mood", ranges, where),
        variation=_knob(item, "variation", ranges, where),
        button=_button(item.get("button"), where),
        meter=None if item.get("meter") is None else ranges.check_meter(item["meter"], f"{where}.meter"),
        key=None if item.get("key") is None else ranges.check_key(item["key"], f"{where}.key"),
    )


def _number(item: dict, key: str, lo: float, hi: float, where: str) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(f"{where}.{key}: got {value!r}; allowed: a number from {lo:g} to {hi:g}")
    return float(value)


def _knob(item: dict, key: str, ranges: ControlRanges, where: str) -> float | None:
    value = item.get(key)
    return None if value is None else ranges.check(key, value, f"{where}.{key}")


def _button(value, where: str) -> Button | None:
    if value is None:
        return None
    try:
        return Button(value)
    except ValueError:
        allowed = ", ".join(b.value for b in Button)
        raise ConfigError(f"{where}.button: got {value!r}; allowed: one of {allowed}") from None


class ScriptedBackend(Backend):
    """Plays ``events`` against the clock from :meth:`start` on a thread (``speed`` x real time)."""

    name = "scripted"

    def __init__(
        self, events: Sequence[ScriptEvent], knob_map: KnobMap, style_names: Sequence[str], speed: float = 1.0
    ):
        super().__init__(knob_map, style_names)
        self.events = list(events)
        self.speed = speed
        self.controls = knob_map.controls(knob_map.raw_of(Controls()))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_controls, on_button) -> None:
        self.on_controls, self.on_button = on_controls, on_button
        t0 = time.monotonic()
        for event in self.events:  # the knobs' position at the start; buttons at 0 fire on the thread
            if event.at <= 0:
                self.controls = event.apply(self.controls)
        self._emit_controls(self.controls)
        self._thread = threading.Thread(target=self._run, args=(t0,), name="musicbox-scripted", daemon=True)
        self._thread.start()

    def _run(self, t0: float) -> None:
        for event in self.events:
            if self._stop.wait(max(0.0, t0 + event.at / self.speed - time.monotonic())):
                return
            self._fire(event)

    def _fire(self, event: ScriptEvent) -> None:
        new = event.apply(self.controls)
        if new != self.controls:
            self.controls = new
            self._emit_controls(new)
        if event.button is not None:
            self._emit_button(event.button)

    def follow(self, controls: Controls) -> None:
        """Controls set elsewhere (the web remote): the script's next event changes only its own knobs."""
        self.controls = controls

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None
