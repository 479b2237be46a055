"""The box in a terminal: keys turn the three knobs and press the buttons; a rich live view shows the
knobs, the buttons and what is playing (style, BPM, mood, bar count, a small piano-roll).

Keys (:data:`KEYMAP`; the footer is made from it): ``q``/``a`` or →/← style up/down (a quarter of the
way to the next style, so every press is heard: the style knob's detents are stepped over, not into;
Q/A a whole style), ``w``/``s`` or ↑/↓ tempo (2 BPM; W/S 10 BPM), ``e``/``d`` mood (0.1; E/D 0.5);
``m`` the next of the style's meters (:data:`METER_KEY`), ``y`` the next key (:data:`KEY_KEY`: the
seed's, then C, C#, .. B; heard from the next phrase start); space play/pause, ``n`` next, ``r`` save,
``x`` shut down. The view shows the meter playing, and the bar's piano roll one column a step (12 for
3/4 and 6/8), its beats marked below it. Input is any file descriptor (stdin by
default; a pipe in tests); when it is a TTY it is put in cbreak mode and restored on close.

While the live view runs, the process's file descriptors 1 and 2 (stdout and stderr: log lines of this
process, of the worker processes started after it, and what C libraries print, such as libjack's info
lines on stdout) are a pipe that a thread reads and prints through the view's console, above the view;
the view writes to its own copy of the terminal. Nothing else writes to the terminal, so no output can
tear the view apart.
"""

from __future__ import annotations

import math
import os
import select
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from musicbox.config import BoxConfig
from musicbox.device.base import PollingBackend
from musicbox.device.buttons import Button
from musicbox.device.knobs import KNOBS, KnobMap, KnobProcessor
from musicbox.errors import HardwareError
from musicbox.runtime.controls import FIELDS, TONICS, VARIATION_RANGE, Controls, style_blend
from musicbox.runtime.meter import METERS

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
    "]": ("variation", 1, False),
    "[": ("variation", -1, False),
    "}": ("variation", 1, True),
    "{": ("variation", -1, True),
    " ": Button.PLAY_PAUSE,
    "n": Button.NEXT,
    "r": Button.SAVE,
    "k": Button.KEEP,
    "t": Button.NEW,
    "p": Button.PRESET,
    "x": Button.SHUTDOWN,
    "+": Button.VOLUME_UP,
    "=": Button.VOLUME_UP,
    "-": Button.VOLUME_DOWN,
}
METER_KEY = "m"
"""Steps the meter through the playing style's meters (``KnobMap.next_meter``)."""
KEY_KEY = "y"
"""Steps the key control: the seed's (""), then the tonics C, C#, .. B, then the seed's again."""
SLEEP_KEY = "z"
"""The sleep timer (``runtime/sleep.py``): starts ``[sleep] minutes``, or ends the running one."""
KNOB_STEPS = {"style": (0.25, 1.0), "tempo": (2.0, 10.0), "mood": (0.1, 0.5), "variation": (0.1, 0.5)}
"""Fine and coarse step of each knob's key, in its own unit (style position, BPM, mood, variation)."""
ARROW_GLYPHS = {"up": "↑", "down": "↓", "right": "→", "left": "←"}
TRACK_STYLES = ("bold magenta", "cyan", "green")  # melody, harmony, bass
STATE_ICONS = {"playing": "▶", "paused": "⏸"}
ROLL_ROWS = 8  # pitch bins in the piano-roll view (64 pitches / 8 = 8 semitones a row)


def help_line() -> str:
    """The footer, from :data:`KEYMAP`: each knob's keys up/down (fine, then coarse), then the buttons."""
    parts = []
    for knob, (fine, coarse) in KNOB_STEPS.items():
        keys: dict[tuple[int, bool], list[str]] = {}
        for key, action in KEYMAP.items():
            if isinstance(action, tuple) and action[0] == knob:
                keys.setdefault((action[1], action[2]), []).append(ARROW_GLYPHS.get(key, key))
        unit = " BPM" if knob == "tempo" else ""
        fine_keys, coarse_keys = (_key_pair(keys, coarse) for coarse in (False, True))
        parts.append(f"{knob}: {fine_keys} by {fine:g}{unit}, {coarse_keys} by {coarse:g}{unit}")
    buttons = {Button.PLAY_PAUSE: "play/pause", Button.NEXT: "next", Button.SAVE: "save"}
    buttons.update({Button.KEEP: "keep this phrase", Button.NEW: "new tune"})
    buttons.update(
        {Button.SHUTDOWN: "shut down", Button.VOLUME_UP: "volume up", Button.VOLUME_DOWN: "volume down"}
    )
    buttons[Button.PRESET] = "next preset"
    keys_of: dict[Button, list[str]] = {}
    for key, action in KEYMAP.items():
        if isinstance(action, Button):
            keys_of.setdefault(action, []).append("space" if key == " " else key)
    parts.append(f"[{METER_KEY}] meter")
    parts.append(f"[{KEY_KEY}] key")
    parts.append(f"[{SLEEP_KEY}] sleep timer")
    parts += [f"[{'/'.join(keys)}] {buttons[button]}" for button, keys in keys_of.items()]
    return " · ".join(parts)


def _key_pair(keys: dict, coarse: bool) -> str:
    up, down = ("/".join(keys[(direction, coarse)]) for direction in (1, -1))
    return f"{up} + {down} −"


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
    low, high, frac = style_blend(style, len(names))
    if frac < 0.005 or high == low:
        return names[low]
    return f"{names[low]} {round(100 * (1 - frac))}% + {names[high]} {round(100 * frac)}%"


class TerminalBackend(PollingBackend):
    """Keyboard knobs and a live view; ``input_fd`` (default stdin) and ``console`` (a rich Console)."""

    name = "terminal"
    draws = True

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
        self._output: OutputToConsole | None = None
        self._own_file = None  # the console's file, when start() made it
        self._tty_fd: int | None = None
        self._saved_tty: list | None = None  # termios attributes to restore
        self._draw_lock = threading.Lock()

    def read_knobs(self) -> dict[str, float]:
        return dict(self.raw)

    def start(self, on_controls, on_button) -> None:
        self._tty_fd, self._saved_tty = self.fd, _cbreak(self.fd)
        from rich.console import Console
        from rich.live import Live

        if self._console is None:  # the terminal on fd 1, through a copy of its own (fd 1 goes to the pipe)
            self._console = Console(file=os.fdopen(os.dup(1), "w", encoding="utf-8"))
            self._own_file = self._console.file
        console = self._console
        self._output = OutputToConsole(console, self._draw_lock)
        self._output.start()
        with self._draw_lock:
            self._live = Live(self.render(), console=console, auto_refresh=False, redirect_stdout=False)
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
        """Act on one key name (see :data:`KEYMAP` and :data:`METER_KEY`; others are ignored)."""
        action = KEYMAP.get(key)
        if key == METER_KEY:
            self.step_meter()
        elif key == KEY_KEY:
            self.step_key()
        elif key == SLEEP_KEY:
            self.on_button(Button.SLEEP)
        elif isinstance(action, Button):
            self.last_button = action
            self._emit_button(action)
        elif action is not None:
            self.turn(*action)
        self.redraw()

    def turn(self, knob: str, direction: int, coarse: bool) -> None:
        """Move ``knob`` one fine or coarse step (:data:`KNOB_STEPS`) up (+1) or down (-1), in the knob's
        own unit and onto a multiple of the step, so that every press changes the control."""
        m = self.knob_map
        step = KNOB_STEPS[knob][coarse]
        now = getattr(m.controls(self.raw), FIELDS[knob])
        value = (
            (math.floor(now / step + 1e-6) + 1) * step
            if direction > 0
            else (math.ceil(now / step - 1e-6) - 1) * step
        )
        if knob == "variation":  # no knob travel to map: the value is the position
            lo, hi = VARIATION_RANGE
            self.raw[knob] = min(hi, max(lo, round(value, 2)))
            return
        self.raw[knob] = m.raw_of(replace(m.controls(self.raw), **{FIELDS[knob]: value}))[knob]

    def step_meter(self) -> None:
        """Ask for the next of the style's meters (:meth:`KnobMap.next_meter`); sent with the next poll."""
        controls = self.processor.last or self.knob_map.controls(self.raw)
        self.processor.map = replace(self.processor.map, meter=self.processor.map.next_meter(controls))
        self.knob_map = self.processor.map

    def step_key(self) -> None:
        """Ask for the next key (:data:`KEY_KEY`); sent at once."""
        choices = ("", *TONICS)
        key = choices[(choices.index(self.processor.map.key) + 1) % len(choices)]
        self.processor.map = replace(self.processor.map, key=key)
        self.knob_map = self.processor.map
        controls = self.processor.last or self.knob_map.controls(self.raw)
        self._emit_controls(replace(controls, key=key))

    def follow(self, controls: Controls) -> None:
        """Move the key-driven knobs to ``controls`` (set on the web remote): the next key press goes on
        from there (keys move knobs relative to where they are, so every knob follows at once)."""
        self.raw = {**self.knob_map.raw_of(controls), "variation": controls.variation}
        self.processor.feed(self.raw, -math.inf)  # the filters take the new positions
        super().follow(controls)
        self.redraw()

    def poll(self, now: float) -> None:
        before = self.processor.last
        super().poll(now)
        if self.processor.last != before:
            self.redraw()

    def show(self, status: Mapping) -> None:
        """Draw ``status``: state (str), bar (int), style (knob position), tempo_bpm, mood, meter (the bar
        playing's, e.g. "3/4"), roll (uint8 [3, S, 64] cells 0 off / 1 held / 2 onset, the bar playing, S its
        meter's steps), message (str); missing keys are left out."""
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
        from rich.text import Text

        table = Table.grid(padding=(0, 1))
        table.add_row(self._status_line())
        table.add_row(self._knob_table())
        if self.status.get("roll") is not None:
            table.add_row(render_roll(self.status["roll"], self.status.get("meter", "4/4")))
        table.add_row(self._button_line())
        table.add_row(Text(help_line(), style="dim"))
        return Panel(table, title="musicbox")

    def _status_line(self):
        from rich.text import Text

        s = self.status
        state = str(s.get("state", "starting"))
        head = f"{STATE_ICONS.get(state, '·')} {state}"
        if "style" in s:
            head += f" {style_label(float(s['style']), self.style_names)}"
        parts = [head]
        if "bar" in s:
            parts.append(f"bar {s['bar']}")
        if "tempo_bpm" in s:
            parts.append(f"{float(s['tempo_bpm']):.0f} BPM")
        if "mood" in s:
            parts.append(f"mood {float(s['mood']):+.2f}")
        if "volume_db" in s:
            parts.append(f"volume {float(s['volume_db']):+.0f} dB")
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
            "variation": f"{controls.variation:.2f} {_variation_word(controls.variation)}",
        }
        table = Table.grid(padding=(0, 2))
        for name in (*KNOBS, "variation"):
            table.add_row(
                name, _gauge(controls.variation if name == "variation" else self.raw[name]), values[name]
            )
        playing = f"playing {self.status['meter']}" if self.status.get("meter") else ""
        table.add_row("meter", self._meter_choices(controls), playing)
        table.add_row("key", self.knob_map.key or "the seed's", "from the next phrase")
        return table

    def _meter_choices(self, controls: Controls) -> str:
        """The style's meters, the one asked for in brackets ("" asks for the style's own, the first)."""
        meters = self.knob_map.meters_of(controls.style)
        chosen = controls.meter or meters[0]
        return "  ".join(f"[{m}]" if m == chosen else f" {m} " for m in meters)

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
        if self._output is not None:
            self._output.stop()  # what is left in the pipe prints below the last view
            self._output = None
        if self._own_file is not None:
            self._own_file.close()
            self._own_file = self._console = None
        _restore(self._tty_fd, self._saved_tty)
        self._saved_tty = None


class OutputToConsole:
    """While started, file descriptors 1 and 2 are a pipe; a thread prints each line written to it
    through ``console`` (above a ``Live`` view). Processes started meanwhile inherit the pipe as their
    stdout and stderr. A descriptor the console itself writes to is left alone (its output would come
    back to it).

    ``lock`` is the one the view's redraws hold: a line printed while another thread redraws would
    move the cursor up by the height of the view before the redraw (rich's ``Live`` hook reads it
    unlocked), leaving a half-erased copy of the view on the screen."""

    def __init__(self, console, lock: threading.Lock):
        self.console = console
        self._lock = lock
        self._saved: dict[int, int] = {}  # redirected fd -> its saved copy
        self._read: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        fds = [fd for fd in (1, 2) if fd != _fileno(self.console.file)]
        if not fds:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        self._read, write = os.pipe()
        for fd in fds:
            self._saved[fd] = os.dup(fd)
            os.dup2(write, fd)
        os.close(write)
        self._thread = threading.Thread(
            target=self._pump, args=(self._read,), name="musicbox-output", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Give the descriptors back, then print what is left in the pipe."""
        if self._thread is None or self._read is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
            os.close(saved)
        self._saved = {}
        self._stop.set()
        self._thread.join(timeout=2.0)
        os.close(self._read)
        self._thread = self._read = None

    def _pump(self, fd: int) -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([fd], [], [], 0.05)
            data = os.read(fd, 65536) if ready else b""
            if not data and (self._stop.is_set() or ready):  # stopped and drained, or every writer gone
                break
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                self._print(line)
        if pending:
            self._print(pending)

    def _print(self, line: bytes) -> None:
        from rich.text import Text

        with self._lock:
            self.console.print(Text(line.decode("utf-8", "replace").rstrip("\r")), soft_wrap=True)


def _fileno(file) -> int | None:
    try:
        return file.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _mood_word(mood: float) -> str:
    return "bright" if mood > 0.15 else "dark" if mood < -0.15 else ""


def _variation_word(variation: float) -> str:
    return "literal returns" if variation < 0.05 else "ever new" if variation >= 1.0 else "varied returns"


def _gauge(raw: float, width: int = 24) -> str:
    filled = round(raw * width)
    return "█" * filled + "░" * (width - filled)


def render_roll(roll, meter: str = "4/4"):
    """A bar's roll (uint8 [3, S, 64] or [1, 3, S, 64], S its meter's steps: 16, or 12 for 3/4 and 6/8) as
    a small text piano-roll, high notes on top, one column a step, and below it a ruler marking the
    beats of ``meter`` (a name of ``runtime.meter.METERS``; the downbeat ``1``, other beats ``|``)."""
    from rich.text import Text

    roll = np.asarray(roll).reshape(-1, *np.asarray(roll).shape[-3:])[-1]
    tracks, steps, pitches = roll.shape
    rows = roll.reshape(tracks, steps, ROLL_ROWS, pitches // ROLL_ROWS).max(axis=3)  # [track, step, row]
    text = Text()
    for row in reversed(range(ROLL_ROWS)):
        for step in range(steps):
            text.append(*_cell(rows[:, step, row]))
        text.append("\n")
    beats = METERS[meter].beats if meter in METERS else ()
    text.append("".join("1 " if s == 0 else "| " if s in beats else "  " for s in range(steps)), "dim")
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
