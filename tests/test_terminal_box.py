"""The real `musicbox play` with the terminal box in a pty under a JACK dummy device: the volume keys
reach the audio callback, and the box's log lines come out through the live view."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from musicbox.runtime.box.soak import JackDummy
from tests.helpers.synthetic_bundle import build_bundle

pytestmark = pytest.mark.skipif(
    shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed"
)


ROWS, COLUMNS = 60, 120


def visible_screen(output: bytes) -> list[str]:
    """The lines a ROWS x COLUMNS terminal shows after ``output`` (pyte, a VT100 emulator)."""
    import pyte

    screen = pyte.Screen(COLUMNS, ROWS)
    pyte.ByteStream(screen).feed(output)
    return screen.display


def _wait_until(condition, timeout_s: float = 20.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def _wait_for(stats: Path, test, timeout_s: float) -> dict:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            data = json.loads(stats.read_text())
        except (OSError, ValueError):
            data = None
        if data is not None and test(data):
            return data
        time.sleep(0.2)
    raise AssertionError(
        f"stats never satisfied the condition: {stats.read_text() if stats.exists() else None}"
    )


@pytest.mark.slow
def test_volume_keys_and_logs_in_the_terminal_box(tmp_path):
    bundle = build_bundle(tmp_path / "bundle")
    config = tmp_path / "box.toml"
    config.write_text(f'[audio]\nvolume_db = -3.0\n[recording]\nfolder = "{tmp_path}/rec"\n')
    stats = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--bundle", str(bundle)]
    cmd += ["--seconds", "60", "--stats", str(stats), "--backend", "terminal"]
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    screen = bytearray()

    def drain():
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                return
            if not data:
                return
            screen.extend(data)

    with JackDummy(name=f"mbterm{os.getpid()}"):
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} | {"TERM": "xterm"}
        proc = subprocess.Popen(cmd, stdin=follower, stdout=follower, stderr=follower, env=env)
        os.close(follower)
        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            start = _wait_for(stats, lambda d: d["bars_played"] >= 1, 60)
            assert start["volume_db"] == -3.0  # from the config
            os.write(leader, b"--")
            _wait_for(stats, lambda d: d["volume_db"] == -9.0, 10)
            os.write(leader, b"+")
            _wait_for(stats, lambda d: d["volume_db"] == -6.0, 10)
            for n in range(1, 5):  # more log lines, from the box and its worker, between redraws
                os.write(leader, b"n")
                _wait_until(lambda n=n: bytes(screen).count(b"next:") >= n)
            _wait_until(
                lambda: b"\xe2\x95\xad" in bytes(screen).rpartition(b"next:")[2]
            )  # a redraw (its top, "╭") after them
            emulated = visible_screen(bytes(screen))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            reader.join(timeout=5)
            os.close(leader)
    text = screen.decode("utf-8", "replace")
    assert proc.returncode == 0, text[-3000:]
    assert "volume -9 dB" in text and "volume -6 dB" in text  # the box's INFO lines, through the view
    assert "[+/=]" in text and "volume up" in text and "musicbox" in text  # the view (its footer wraps)
    # What the terminal shows at the end: one whole view, the log lines above it (they used to tear it
    # into stacked, half-drawn copies).
    tops = [i for i, line in enumerate(emulated) if "╭" in line and "musicbox" in line]
    bottoms = [i for i, line in enumerate(emulated) if "╰" in line]
    assert len(tops) == 1 and len(bottoms) == 1 and tops[0] < bottoms[0], "\n".join(emulated)
    assert any("next:" in line for line in emulated[: tops[0]]), "\n".join(emulated)
