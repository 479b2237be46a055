"""The sleep timer: the music winds down over its last minutes, ends on a cadence and fades to silence.

A timer of ``minutes`` (the config's ``[sleep]``, ``musicbox play --sleep MINUTES``, the terminal's key,
the web remote) runs from the moment it is set. Over its last ``wind_down_minutes`` the music is made
calmer by the knobs moving themselves (:meth:`SleepTimer.controls`): the tempo slides toward
``calm_bpm`` (slower; fewer notes, as the tempo knob's energy falls) and the mood toward ``calm_mood``
(darker, sparser), and the volume sinks by up to ``softer_db`` (:meth:`SleepTimer.softer_db`). The last
bar is the end of a phrase (a cadence: the form's phrase end, ``runtime/performance.py``'s
``Phrasing.cadence``) chosen so that the music ends within the timer's last phrase
(:meth:`SleepTimer.is_last_bar`); over that bar the volume fades to silence (:func:`fade_db`), then the
box pauses (``then = "pause"``) or powers off (``"poweroff"``). A turn of a knob during the wind-down is
where the pull toward calm starts from from then on.

Everything here is a pure function of the time left; the supervisor (``runtime/box/supervisor.py``)
applies it: controls at bar lines (a tempo move only renders again, a mood move rewrites from the next
beat line), the volume through ``Player.set_volume`` (the player ramps each change over one block).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

from musicbox.runtime.controls import Controls

if TYPE_CHECKING:
    from musicbox.config import SleepConfig

THEN = ("pause", "poweroff")
"""What the box does when a sleep timer has run out."""

SILENCE_DB = -60.0
"""The fade's end: the player's volume floor (``player.VOLUME_RANGE_DB``), silence."""


class SleepSettings(NamedTuple):
    """The config's ``[sleep]`` (``musicbox.config.SleepConfig``): minutes a timer runs (the key's, the
    button's and the remote's; ``--sleep`` gives its own), minutes of winding down at its end, where the
    knobs move to (BPM, mood), dB softer at the end of the wind-down, and what follows (:data:`THEN`)."""

    minutes: float = 30.0
    wind_down_minutes: float = 5.0
    calm_bpm: float = 66.0
    calm_mood: float = -0.4
    softer_db: float = 9.0
    then: str = "pause"

    @classmethod
    def of(cls, config: SleepConfig) -> SleepSettings:
        """The settings of the config's ``[sleep]`` table."""
        return cls(**{name: getattr(config, name) for name in cls._fields})


class Sleep(NamedTuple):
    """The event that sets a sleep timer (posted to the box like a button): ``minutes`` from now, 0 to
    end a running one; None is the sleep button (key, remote): the configured minutes, or, while a
    timer runs, end it."""

    minutes: float | None = None


@dataclass(frozen=True)
class SleepTimer:
    """A running timer: it ends at ``ends_at`` (``time.monotonic()`` seconds), winding down over its
    last ``wind_s`` seconds; ``knobs``: the controls the wind-down starts from (the listener's, at the
    start or at their last turn)."""

    settings: SleepSettings
    ends_at: float
    knobs: Controls
    wind_s: float

    @classmethod
    def start(cls, settings: SleepSettings, minutes: float, now: float, knobs: Controls) -> SleepTimer:
        if not (minutes > 0 and math.isfinite(minutes)):
            raise ValueError(f"a sleep timer needs a positive number of minutes, not {minutes!r}")
        wind_s = 60.0 * min(settings.wind_down_minutes, minutes)
        return cls(settings, now + 60.0 * minutes, knobs, wind_s)

    def left(self, now: float) -> float:
        """Seconds until the timer runs out (negative after)."""
        return self.ends_at - now

    def calm(self, now: float) -> float:
        """How far the wind-down has come, 0 (not begun) .. 1 (the end): smooth (a half cosine) over the
        last ``wind_down_minutes`` (all of a shorter timer)."""
        if self.wind_s <= 0.0:
            return 1.0 if self.left(now) <= 0.0 else 0.0
        x = min(max(1.0 - self.left(now) / self.wind_s, 0.0), 1.0)
        return 0.5 - 0.5 * math.cos(math.pi * x)

    def controls(self, now: float) -> Controls:
        """The knobs at ``now``: the listener's moved toward the calm setting (never faster nor brighter
        than the listener's own), tempo to the nearest BPM and mood to 0.05 so that the box rewrites a
        few times a minute, not every bar."""
        c, s, w = self.knobs, self.settings, self.calm(now)
        tempo = c.tempo_bpm + w * (min(s.calm_bpm, c.tempo_bpm) - c.tempo_bpm)
        mood = c.mood + w * (min(s.calm_mood, c.mood) - c.mood)
        return replace(c, tempo_bpm=float(round(tempo)), mood=round(mood * 20.0) / 20.0)

    def softer_db(self, now: float) -> float:
        """dB under the listener's volume at ``now`` (0 .. ``-softer_db``)."""
        return -self.settings.softer_db * self.calm(now)

    def is_last_bar(self, now: float, bar_s: float, cadence: bool, phrase_s: float) -> bool:
        """Whether the bar beginning at ``now``, ``bar_s`` seconds long, is the last: a cadence after
        which the timer has less than one more phrase (``phrase_s`` seconds) left; or, when a knob turn
        moved the phrases so that no cadence came in time, any bar that ends past the timer's end (the
        timer always stops)."""
        after = self.left(now) - bar_s
        return (cadence and after < phrase_s) or after < 0.0


def fade_db(fraction: float, start_db: float) -> float:
    """The volume over the last bar, ``fraction`` 0..1 through it: from ``start_db`` down to silence,
    linear in amplitude (the cadence heard, then gone)."""
    fraction = min(max(fraction, 0.0), 1.0)
    gain = 10.0 ** (start_db / 20.0) * (1.0 - fraction)
    return SILENCE_DB if gain <= 10.0 ** (SILENCE_DB / 20.0) else 20.0 * math.log10(gain)
