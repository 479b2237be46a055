"""The README's first command on a machine with no sound card: within 2 s the box says what is wrong and
what to do, in the terminal view and on stderr (the journal under systemd), and keeps running, trying
for a device (issue 32 item 1). The real `musicbox play` with the terminal box in a pty."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

from musicbox.device.audio import no_audio_device_hint
from tests.test_terminal_box import COLUMNS, ROWS, visible_screen

HINT_START = "no sound card: the box keeps trying"


def test_the_hint_names_the_checks_and_the_ways_to_listen():
    hint = no_audio_device_hint()
    for what in ("aplay -l", "jack_lsp", "musicbox play --remote", "musicbox render --seconds 60 --out"):
        assert what in hint
    assert "plays to the web remote's page" in no_audio_device_hint(remote=True)


def test_no_sound_card_is_said_within_two_seconds_in_the_view_and_the_log_and_the_box_keeps_trying(tmp_path):
    config = tmp_path / "box.toml"  # a device no machine has: the same as no sound card at all
    config.write_text(
        f'[audio]\ndevice = "no-such-device-anywhere"\n[recording]\nfolder = "{tmp_path}/rec"\n'
    )
    stats = tmp_path / "stats.json"
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--backend", "terminal"]
    cmd += ["--stats", str(stats)]
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

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env |= {"TERM": "xterm", "JACK_DEFAULT_SERVER": f"nosuchserver{os.getpid()}"}
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        said = None
        while said is None and time.monotonic() - start < 10:
            if HINT_START.encode() in bytes(screen):
                said = time.monotonic() - start
            time.sleep(0.02)
        assert said is not None, bytes(screen).decode("utf-8", "replace")[-3000:]
        lost = set()  # the box keeps going without a device: stats rewritten every second, still "lost"
        while len(lost) < 4:
            assert proc.poll() is None and time.monotonic() - start < 30, bytes(screen).decode()[-3000:]
            try:
                data = json.loads(stats.read_text())
            except (OSError, ValueError):
                data = {}
            if data.get("audio_state") == "lost":
                lost.add(stats.stat().st_mtime_ns)
            time.sleep(0.05)
        still_running = proc.poll() is None
        emulated = visible_screen(bytes(screen))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=5)
        os.close(leader)
    text = screen.decode("utf-8", "replace")
    assert said < 2.0, f"said after {said:.2f} s"
    assert still_running and proc.returncode == 0, text[-3000:]
    assert "waiting for the audio device" in text and "musicbox play --remote" in text  # the journal's line
    view = " ".join(line.strip() for line in emulated)
    assert HINT_START in view and "aplay -l" in view, "\n".join(emulated)  # in the view, not scrolled away
