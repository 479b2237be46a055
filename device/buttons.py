"""The box's buttons: what a press means, and a software debouncer with hold detection.

gpiozero debounces and times holds itself; boards without gpiozero (Jetson) poll their pins and feed
:class:`ButtonTracker`, which gives the same events: NEXT and SAVE on press; PLAY_PAUSE on the release
of a short press of play; SHUTDOWN as soon as play has been held for ``hold_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass

from musicbox.runtime.controls import Button

PRESS_EVENTS = {b.value: (None if b is Button.PLAY_PAUSE else b) for b in Button if b is not Button.SHUTDOWN}
"""Config button name (a :class:`~musicbox.runtime.controls.Button` value) -> the action fired on press
(play_pause waits for release or hold: a short press plays or pauses, a hold is SHUTDOWN)."""


@dataclass
class _State:
    stable: bool = False
    candidate: bool = False
    since: float = 0.0
    pressed_at: float = 0.0
    held: bool = False


class ButtonTracker:
    """Debounce polled button states and turn them into :class:`Button` events.

    hold_seconds: holding play_pause this long means SHUTDOWN. bounce_seconds: a new state must last
    this long to count.
    """

    def __init__(self, hold_seconds: float, bounce_seconds: float = 0.0):
        self.hold_seconds = hold_seconds
        self.bounce_seconds = bounce_seconds
        self._states: dict[str, _State] = {}

    def feed(self, name: str, pressed: bool, now: float) -> Button | None:
        """Button ``name`` (a key of :data:`PRESS_EVENTS`) read ``pressed`` at ``now`` seconds."""
        state = self._states.setdefault(name, _State())
        if pressed != state.candidate:
            state.candidate, state.since = pressed, now
        if state.candidate != state.stable and now - state.since >= self.bounce_seconds:
            state.stable = state.candidate
            return self._edge(name, state, now)
        if (
            name == "play_pause"
            and state.stable
            and not state.held
            and now - state.pressed_at >= self.hold_seconds
        ):
            state.held = True
            return Button.SHUTDOWN
        return None

    def _edge(self, name: str, state: _State, now: float) -> Button | None:
        if state.stable:
            state.pressed_at, state.held = now, False
            return PRESS_EVENTS[name]
        if name == "play_pause" and not state.held:
            return Button.PLAY_PAUSE
        return None
