"""The box in a terminal: keys turn the three knobs and press the buttons; a rich live view shows the
knobs, the buttons and what is playing (style, BPM, mood, bar count, a small piano-roll).

Keys: ``q``/``a`` or →/← style up/down (a quarter of a style; Q/A a whole style), ``w``/``s`` or ↑/↓
tempo (2 BPM; W/S 10 BPM), ``e``/``d`` mood (0.1; E/D 0.5); space play/pause, ``n`` next, ``r`` save,
``x`` shut down. Input is any file descriptor (stdin by default; a pipe in tests); when it is a TTY it is
put in cbreak mode and restored on close.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from musicbox.config import BoxConfig
from musicbox.device.base import PollingBackend
from musicbox.device.buttons import Button
from musicbox.device.knobs import KNOBS, KnobMap, KnobProcessor
from musicbox.errors import HardwareError
from musicbox.runtime.controls import Controls

if TYPE_CHECKING:
    from rich.live import Live

ARROWS = {
    b"\x1b[A": "up",
    b"\x1b[B": "down",
    b"\x1b[C": "right",
    b"\x1b[D": "left",
    b"\x1bOA": "up",
    b"\x1bOB": "down",
    b"\x1bOC": "right",
    b"\x1bOD": "left",
}
# key -> (knob, direction, coarse) or a Button
KEYMAP: dict[str, tuple[str, int, bool] | Button] = {
    "q": ("style", 1, False),
    "a": ("style", -1, False),
    "Q": ("style", 1, True),
    "A": ("style", -1, True),
    "right": ("style", 1, False),
    "left": ("style", -1, False),
    "w": ("tempo", 1, False),
    "s": ("tempo", -1, False),
    "W": ("tempo", 1, True),
    "S": ("tempo", -1, True),
    "up": ("tempo", 1, False),
    "down": ("tempo", -1, False),
    "e": ("mood", 1, False),
    "d": ("mood", -1, False),
    "E": ("mood", 1, True),
    "D": ("mood", -1, True),
    " ": Button.PLAY_PAUSE,
    "n": Button.NEXT,
    "r": Button.SAVE,
    "x": Button.SHUTDOWN,
}
HELP = "[q/a ←/→] style  [w/s ↑/↓] tempo  [e/d] mood  [space] play/pause  [n] next  [r] save  [x] shut down"
TRACK_STYLES = ("bold magenta", "cyan", "green")  # melody, harmony, bass
STATE_ICONS = {"playing": "▶", "paused": "⏸"}
ROLL_ROWS = 8  # pitch bins in the piano-roll view (64 pitches / 8 = 8 semitones a row)


def parse_keys(data: bytes) -> list[str]:
    """Split bytes read from a terminal into key names (single characters, or up/down/left/right)."""
    keys, i = [], 0
    while i < len(data):
        seq = data[i : i + 3]
        if seq in ARROWS:
            keys.append(ARROWS[seq])
            i += 3
            continue
        keys.append(chr(data[i]))
        i += 1
    return keys


def style_label(style: float, names: Sequence[str]) -> str:
    """ "chorale" at a detent, "chorale 70% + folk 30%" between two."""
    if not names:
        return f"{style:.2f}"
    k = min(int(style), len(names) - 1)
    frac = style - k
    if frac < 0.005 or k + 1 >= len(names):
        return names[k]
    return f"{names[k]} {round(100 * (1 - frac))}% + {names[k + 1]} {round(100 * frac)}%"


class TerminalBackend(PollingBackend):
    """Keyboard knobs and a live view; ``input_fd`` (default stdin) and ``console`` (a rich Console)."""

    name = "terminal"

    def __init__(
        self,
        config: BoxConfig,
        knob_map: KnobMap,
        style_names: Sequence[str],
        *,
        input_fd: int | None = None,
        console=None,
    ):
        processor = KnobProcessor(knob_map, 0.0, 0.0, config.knobs.rate_limit)
        super().__init__(knob_map, style_names, processor, config.knobs.poll_interval)
        self.fd: int | None = _stdin_fd() if input_fd is None else input_fd
        self.raw = knob_map.raw_of(Controls())
        self.status: dict = {}
        self.last_button: Button | None = None
        self._console = console
        self._live: Live | None = None
        self._tty_fd: int | None = None
        self._saved_tty: list | None = None  # termios attributes to restore
        self._draw_lock = threading.Lock()

    def read_knobs(self) -> dict[str, float]:
        return dict(self.raw)

    def start(self, on_controls, on_button) -> None:
        self._tty_fd, self._saved_tty = self.fd, _cbreak(self.fd)
        from rich.console import Console
        from rich.live import Live

        console = self._console or Console()
        self._live = Live(self.render(), console=console, auto_refresh=False, redirect_stderr=False)
        self._live.start()
        super().start(on_controls, on_button)

    def wait(self, timeout: float) -> None:
        if self.fd is None:
            super().wait(timeout)
            return
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            data = os.read(self.fd, 64)
            if not data:
                self.fd = None  # end of input: keep playing with the knobs where they are
            for key in parse_keys(data):
                self.press(key)

    def press(self, key: str) -> None:
        """Act on one key name (see :data:`KEYMAP`; others are ignored)."""
        action = KEYMAP.get(key)
        if isinstance(action, Button):
            self.last_button = action
            self._emit_button(action)
        elif action is not None:
            knob, direction, coarse = action
            self.raw[knob] = min(1.0, max(0.0, self.raw[knob] + direction * self._step(knob, coarse)))
        self.redraw()

    def _step(self, knob: str, coarse: bool) -> float:
        m = self.knob_map
        if knob == "style":
            return 1.0 / max(1, m.n_styles) / (1 if coarse else 4)
        if knob == "tempo":
            return (10.0 if coarse else 2.0) / (m.max_bpm - m.min_bpm)
        return 0.25 if coarse else 0.05

    def poll(self, now: float) -> None:
        before = self.processor.last
        super().poll(now)
        if self.processor.last != before:
            self.redraw()

    def show(self, status: Mapping) -> None:
        """Draw ``status``: state (str), bar (int), style (name), tempo_bpm, mood, roll (uint8 [3,16,64]
        cells 0 off / 1 held / 2 onset, the bar playing), message (str); missing keys are left out."""
        self.status = dict(status)
        self.redraw()

    def redraw(self) -> None:
        """Redraw the live view now (no-op before start / after close)."""
        with self._draw_lock:
            if self._live is not None:
                self._live.update(self.render(), refresh=True)

    def render(self):
        """The live view as a rich renderable."""
        from rich.panel import Panel
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        table.add_row(self._status_line())
        table.add_row(self._knob_table())
        if self.status.get("roll") is not None:
            table.add_row(render_roll(self.status["roll"]))
        table.add_row(self._button_line())
        from rich.text import Text

        return Panel(table, title="musicbox", subtitle=Text(HELP), subtitle_align="left")

    def _status_line(self):
        from rich.text import Text

        s = self.status
        state = str(s.get("state", "starting"))
        parts = [f"{STATE_ICONS.get(state, '·')} {state}"]
        if "bar" in s:
            parts.append(f"bar {s['bar']}")
        if "style" in s:
            parts.append(f"playing {s['style']}")
        if "tempo_bpm" in s:
            parts.append(f"{float(s['tempo_bpm']):.0f} BPM")
        if "mood" in s:
            parts.append(f"mood {float(s['mood']):+.2f}")
        if s.get("message"):
            parts.append(str(s["message"]))
        return Text("   ".join(parts), style="bold")

    def _knob_table(self):
        from rich.table import Table

        controls = self.processor.last or self.knob_map.controls(self.raw)
        values = {
            "style": style_label(controls.style, self.style_names),
            "tempo": f"{controls.tempo_bpm:.0f} BPM",
            "mood": f"{controls.mood:+.2f} {_mood_word(controls.mood)}",
        }
        table = Table.grid(padding=(0, 2))
        for name in KNOBS:
            table.add_row(name, _gauge(self.raw[name]), values[name])
        return table

    def _button_line(self):
        from rich.text import Text

        last = self.last_button.name.lower().replace("_", "/") if self.last_button else "-"
        return Text(f"last button: {last}", style="dim")

    def close(self) -> None:
        super().close()
        with self._draw_lock:
            if self._live is not None:
                self._live.stop()
                self._live = None
        _restore(self._tty_fd, self._saved_tty)
        self._saved_tty = None


def _mood_word(mood: float) -> str:
    return "bright" if mood > 0.15 else "dark" if mood < -0.15 else ""


def _gauge(raw: float, width: int = 24) -> str:
    filled = round(raw * width)
    return "█" * filled + "░" * (width - filled)


def render_roll(roll):
    """A bar's roll (uint8 [3, 16, 64] or [1, 3, 16, 64]) as a small text piano-roll, high notes on top."""
    from rich.text import Text

    roll = np.asarray(roll).reshape(-1, *np.asarray(roll).shape[-3:])[-1]
    tracks, steps, pitches = roll.shape
    rows = roll.reshape(tracks, steps, ROLL_ROWS, pitches // ROLL_ROWS).max(axis=3)  # [track, step, row]
    text = Text()
    for row in reversed(range(ROLL_ROWS)):
        for step in range(steps):
            text.append(*_cell(rows[:, step, row]))
        if row:
            text.append("\n")
    return text


def _cell(cells) -> tuple[str, str]:
    for track, value in enumerate(cells):
        if value:
            return ("██" if value >= 2 else "▒▒"), TRACK_STYLES[track % len(TRACK_STYLES)]
    return "· ", "dim"


def _stdin_fd() -> int:
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError) as exc:
        raise HardwareError(
            f"terminal knob backend: stdin is not a file ({exc}); run it in a terminal"
        ) from None


def _cbreak(fd: int | None):
    """Put a TTY in cbreak mode (keys arrive one by one, no echo); return what to restore, or None."""
    if fd is None or not os.isatty(fd):
        return None
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    return saved


def _restore(fd: int | None, saved) -> None:
    if fd is not None and saved is not None:
        import termios

        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
