"""The terminal backend driven by synthetic key presses through a pipe (and a pty for cbreak mode)."""

from __future__ import annotations

import io
import os
import termios
import time

import numpy as np
import pytest
from rich.console import Console

from musicbox.config import load_config
from musicbox.device import knob_map, open_backend
from musicbox.device.buttons import Button
from musicbox.device.terminal import KEYMAP, TerminalBackend, help_line, parse_keys, render_roll, style_label
from tests.helpers.callbacks import Recorder

STYLES = ("chorale", "folk", "renaissance", "quartet")


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "box.toml"
    path.write_text('[knobs]\nbackend = "terminal"\nrate_limit = 0.0\npoll_interval = 0.005\n')
    return load_config(path)


def open_terminal(config, fd):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=110, color_system=None)
    return open_backend(config, STYLES, input_fd=fd, console=console), out


def test_keys_turn_knobs_and_press_buttons(config):
    read_fd, write_fd = os.pipe()
    rec = Recorder()
    backend, out = open_terminal(config, read_fd)
    assert isinstance(backend, TerminalBackend)
    try:
        backend.start(rec.on_controls, rec.on_button)
        assert (
            rec.controls[0].style == 0.0
            and rec.controls[0].tempo_bpm == 100.0
            and rec.controls[0].mood == 0.0
        )
        os.write(write_fd, b"qqqq")  # four quarter-steps: the next style
        rec.wait_for(lambda r: r.controls[-1].style == 1.0)
        os.write(write_fd, b"qq")  # half-way: a blend of folk and renaissance
        rec.wait_for(lambda r: 1.0 < r.controls[-1].style < 2.0)
        os.write(write_fd, b"W\x1b[A")  # tempo +10 then +2 (arrow up)
        rec.wait_for(lambda r: r.controls[-1].tempo_bpm == 112.0)
        os.write(write_fd, b"ddd")  # mood -0.3
        rec.wait_for(lambda r: r.controls[-1].mood == pytest.approx(-0.3))
        os.write(write_fd, b" nrx")
        rec.wait_for(lambda r: len(r.buttons) == 4)
        assert rec.buttons == [Button.PLAY_PAUSE, Button.NEXT, Button.SAVE, Button.SHUTDOWN]
        roll = np.zeros((1, 3, 16, 64), np.uint8)
        roll[0, 0, 0, 40], roll[0, 0, 1:4, 40], roll[0, 2, 0, 5] = 2, 1, 2
        backend.show(
            {"state": "playing", "bar": 12, "style": 1.0, "tempo_bpm": 112, "mood": -0.3, "roll": roll}
        )
        screen = out.getvalue()
        assert "bar 12" in screen and "112 BPM" in screen and "folk" in screen and "██" in screen
        assert "last button: shutdown" in screen
    finally:
        backend.close()
        os.close(read_fd), os.close(write_fd)


def test_end_of_input_keeps_the_box_running(config):
    """Past the end of its input (stdin closed) the terminal box plays on: no button is pressed and the
    backend still polls, so a knob turned after that (here a key pressed in code) is still passed on."""
    read_fd, write_fd = os.pipe()
    backend, _ = open_terminal(config, read_fd)
    rec = Recorder()
    backend.start(rec.on_controls, rec.on_button)
    try:
        os.write(write_fd, b"e")
        os.close(write_fd)
        rec.wait_for(lambda r: r.controls[-1].mood == pytest.approx(0.1))
        deadline = time.monotonic() + 3.0
        while backend.fd is not None:  # the end of input is read
            assert time.monotonic() < deadline, "the backend never read the end of its input"
            time.sleep(0.005)
        backend.press("e")
        rec.wait_for(lambda r: r.controls[-1].mood == pytest.approx(0.2))
        assert rec.buttons == [] and backend.last_button is None
    finally:
        backend.close()
        os.close(read_fd)


def test_a_tty_is_put_in_cbreak_mode_and_restored(config):
    leader, follower = os.openpty()
    before = termios.tcgetattr(follower)
    backend, _ = open_terminal(config, follower)
    rec = Recorder()
    try:
        backend.start(rec.on_controls, rec.on_button)
        assert not termios.tcgetattr(follower)[3] & termios.ICANON
        os.write(leader, b"n")
        rec.wait_for(lambda r: r.buttons == [Button.NEXT])
    finally:
        backend.close()
    assert termios.tcgetattr(follower) == before
    os.close(leader), os.close(follower)


def test_key_parsing_labels_and_roll():
    assert parse_keys(b"q\x1b[Dx\x1bOA") == ["q", "left", "x", "up"]
    assert style_label(1.0, STYLES) == "folk"
    assert style_label(1.3, STYLES) == "folk 70% + renaissance 30%"
    text = render_roll(np.zeros((3, 16, 64), np.uint8)).plain
    assert text.count("\n") == 8 and "██" not in text
    assert text.splitlines()[-1].rstrip() == "1       |       |       |"  # the four beats of 4/4


@pytest.mark.parametrize("meter, ruler", [("3/4", "1       |       |"), ("6/8", "1           |")])
def test_the_roll_of_a_twelve_step_bar_has_twelve_columns_and_its_beats(meter, ruler):
    roll = np.zeros((1, 3, 12, 64), np.uint8)
    roll[0, 0, 11, 63] = 2  # the bar's last step, the top row
    lines = render_roll(roll, meter).plain.splitlines()
    assert [len(line) for line in lines[:-1]] == [24] * 8  # two characters a step
    assert lines[0].endswith("██") and lines[-1].rstrip() == ruler


METERS_OF = (("4/4",), ("4/4", "3/4"), ("4/4",), ("4/4", "3/4", "6/8"))  # chorale, folk, ..., quartet


def test_the_meter_key_steps_through_the_styles_meters(config):
    """``m``: the style's own ("") -> its other meters -> its own again; the view shows the choices."""
    read_fd, write_fd = os.pipe()
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=110, color_system=None)
    backend = open_backend(config, STYLES, METERS_OF, input_fd=read_fd, console=console)
    rec = Recorder()
    try:
        backend.start(rec.on_controls, rec.on_button)
        assert rec.controls[0].meter == ""
        os.write(write_fd, b"m")  # chorale plays 4/4 alone: stays the style's own
        os.write(write_fd, b"QQQ")  # to the quartet
        rec.wait_for(lambda r: r.controls[-1].style == 3.0)
        assert all(c.meter == "" for c in rec.controls)
        for want in ("3/4", "6/8", ""):
            os.write(write_fd, b"m")
            rec.wait_for(lambda r, want=want: r.controls[-1].meter == want)
        backend.show({"state": "playing", "style": 3.0, "meter": "6/8"})
        screen = out.getvalue()
        assert "[4/4]" in screen and " 6/8 " in screen and "playing 6/8" in screen
        assert "[m] meter" in help_line()
    finally:
        backend.close()
        os.close(read_fd), os.close(write_fd)


def test_knob_map_follows_the_config(config):
    m = knob_map(config, STYLES)
    assert (m.n_styles, m.min_bpm, m.max_bpm) == (4, 60.0, 160.0)


def test_every_style_key_press_changes_the_style(config):
    """The style knob's detent (half of each style's travel) used to swallow one fine press in four."""
    backend, _ = open_terminal(config, os.pipe()[0])
    seen = []
    for key in "qqqqqq":
        backend.press(key)
        seen.append(backend.knob_map.controls(backend.raw).style)
    assert seen == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    for key in "aaa":
        backend.press(key)
        seen.append(backend.knob_map.controls(backend.raw).style)
    assert seen[-3:] == [1.25, 1.0, 0.75]
    backend.press("Q")  # coarse: to the next whole style
    assert backend.knob_map.controls(backend.raw).style == 1.0
    backend.press("Q")
    assert backend.knob_map.controls(backend.raw).style == 2.0
    for key in "www":
        backend.press(key)
    assert backend.knob_map.controls(backend.raw).tempo_bpm == 106.0


def test_variation_keys_and_the_form_actions(config):
    read_fd, write_fd = os.pipe()
    rec = Recorder()
    backend, out = open_terminal(config, read_fd)
    try:
        backend.start(rec.on_controls, rec.on_button)
        assert rec.controls[0].variation == config.knobs.variation == 0.5
        os.write(write_fd, b"]")  # fine step up
        rec.wait_for(lambda r: r.controls[-1].variation == 0.6)
        os.write(write_fd, b"{{")  # coarse steps down, held at 0
        rec.wait_for(lambda r: r.controls[-1].variation == 0.0)
        os.write(write_fd, b"kt")
        rec.wait_for(lambda r: len(r.buttons) == 2)
        assert rec.buttons == [Button.KEEP, Button.NEW]
        backend.redraw()
        assert "literal returns" in out.getvalue()
    finally:
        backend.close()
        os.close(read_fd), os.close(write_fd)


def test_the_footer_says_what_each_key_does():
    line = help_line()
    for knob, (up, down) in {"style": ("q/→", "a/←"), "tempo": ("w/↑", "s/↓"), "mood": ("e", "d")}.items():
        assert f"{knob}: {up} + {down} −" in line
    assert "Q + A − by 1" in line and "W + S − by 10 BPM" in line and "E + D − by 0.5" in line
    assert KEYMAP["q"] == ("style", 1, False) and KEYMAP["right"] == ("style", 1, False)
    assert "[space] play/pause" in line and "[x] shut down" in line
    assert "variation: ] + [ − by 0.1" in line and "[k] keep this phrase" in line and "[t] new tune" in line


@pytest.mark.parametrize(
    "status, shown, not_shown",
    [
        ({"state": "paused", "style": 1.0}, "⏸ paused folk", "playing"),
        ({"state": "playing", "style": 1.5}, "▶ playing folk 50% + renaissance 50%", "paused"),
    ],
)
def test_the_status_line_names_the_state_and_the_blend(config, status, shown, not_shown):
    backend, _ = open_terminal(config, os.pipe()[0])
    backend.status = status
    line = backend._status_line().plain
    assert shown in line and not_shown not in line


def test_log_lines_go_through_the_live_console_not_around_it(config, capfd):
    import logging
    import subprocess
    import sys

    stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115 (fd 2 itself: pytest swaps sys.stderr)
    handler = logging.StreamHandler(stderr)  # as logging.basicConfig set it up before the view
    log = logging.getLogger("musicbox.test-terminal")
    log.addHandler(handler)
    read_fd, write_fd = os.pipe()
    backend, out = open_terminal(config, read_fd)
    try:
        backend.start(Recorder().on_controls, Recorder().on_button)
        log.warning("a log line from this process")
        subprocess.run(
            [sys.executable, "-c", "import os; os.write(2, b'a line from a child process\\n')"], check=True
        )
        os.write(1, b"a C library's line on stdout\n")  # as libjack prints its info lines
        end = time.monotonic() + 5  # fd 1 is read by the console's own thread: let it get there
        while "a C library's line" not in out.getvalue() and time.monotonic() < end:
            time.sleep(0.01)
        backend.redraw()
    finally:
        backend.close()
        log.removeHandler(handler)
        os.close(read_fd), os.close(write_fd)
    screen = out.getvalue()
    assert "a log line from this process" in screen and "a line from a child process" in screen
    last_view = screen.rindex("╭")  # the view is drawn again, whole, below the log lines
    assert screen.rindex("a line from a child process") < last_view and "╯" in screen[last_view:]
    assert screen.rindex("a C library's line on stdout") < last_view
    around = capfd.readouterr()  # nothing went around the console to the terminal
    assert "a log line" not in around.err and "a C library" not in around.out
