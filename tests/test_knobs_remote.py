"""Knobs and buttons through the web remote: a page turning tempo and mood 20 times a second for 30 s, or
pressing NEXT once a second for 20 s, never silences the real box (`musicbox play --remote` on a JACK dummy
device), and the box plays on after it."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from musicbox.remote.auth import COOKIE, CSRF_HEADER
from musicbox.runtime.box.soak import JackDummy

BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "bundle"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or being replaced
        return {}


def _until(test, timeout_s: float, what: str):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = test()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _post(url: str, body: dict, headers: dict) -> int:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST", headers=headers)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@contextlib.contextmanager
def _paired_box(tmp_path: Path, seconds: int):
    """The real box with its web remote, playing on a JACK dummy server: yields (base URL, the paired
    page's headers, the stats file) once two bars have played; stops it after and checks it exited 0."""
    port = _free_port()
    stats, state = tmp_path / "stats.json", tmp_path / "state"
    config = tmp_path / "box.toml"
    config.write_text(
        f'[recording]\nfolder = "{tmp_path / "rec"}"\n'
        f'[remote]\nbind = "127.0.0.1"\nport = {port}\nstate_dir = "{state}"\n'
    )
    with JackDummy(name=f"mbremote{os.getpid()}"):
        cmd = [sys.executable, "-m", "musicbox.cli", "play", "--remote", "--backend", "none"]
        cmd += ["--config", str(config), "--bundle", str(BUNDLE), "--seconds", str(seconds)]
        cmd += ["--stats", str(stats)]
        with open(tmp_path / "play.log", "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            _until(lambda: _stats(stats).get("bars_played", 0) >= 2, 40, "the first bars")
            code = json.loads((state / "pairing.json").read_text())["code"]
            pair = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/pair",
                json.dumps({"code": code}).encode(),
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(pair, timeout=5) as response:
                cookie = response.headers["Set-Cookie"].split(";")[0]
                csrf = json.loads(response.read())["csrf"]
            assert cookie.startswith(COOKIE)
            yield f"http://127.0.0.1:{port}", {"Cookie": cookie, CSRF_HEADER: csrf}, stats
        finally:
            proc.terminate()
            proc.wait(30)
    log_text = (tmp_path / "play.log").read_text()
    assert proc.returncode == 0, log_text[-3000:]


def test_a_page_turning_tempo_and_mood_twenty_times_a_second_never_silences_the_box(tmp_path):
    with _paired_box(tmp_path, 75) as (base, headers, stats):
        rng = random.Random(3)
        before = _stats(stats)
        statuses = []
        start = time.monotonic()
        while time.monotonic() - start < 30.0:
            body = {"tempo_bpm": round(rng.uniform(60, 160), 1), "mood": round(rng.uniform(-1, 1), 2)}
            statuses.append(_post(f"{base}/api/controls", body, headers))
            time.sleep(max(0.0, start + 0.05 * len(statuses) - time.monotonic()))
        turned = _stats(stats)
        time.sleep(15.0)
        after = _stats(stats)
    assert len(statuses) >= 550 and statuses.count(200) >= 100, sorted(set(statuses))
    assert set(statuses) <= {200, 429}  # beyond the page's rate the remote says so; nothing else
    assert turned["bars_played"] - before["bars_played"] >= 10  # bars played all through the turning
    assert after["bars_played"] > turned["bars_played"]  # and after it
    assert after["underruns"] == 0 and after["silence_s"] <= 0.5, after
    assert after["generation"] > before["generation"] + 20  # the turns reached the box


def test_next_pressed_once_a_second_for_twenty_seconds_never_silences_the_box(tmp_path):
    """Each NEXT is new noise from the next beat line (the music goes on, differently): 20 of them, one a
    second, are all heard (the generation moves on with each) with no underrun and no silence."""
    with _paired_box(tmp_path, 60) as (base, headers, stats):
        before = _stats(stats)
        statuses = []
        start = time.monotonic()
        while len(statuses) < 20:
            time.sleep(max(0.0, start + len(statuses) - time.monotonic()))
            statuses.append(_post(f"{base}/api/button", {"button": "next"}, headers))
        pressed = _stats(stats)
        time.sleep(8.0)
        after = _stats(stats)
    assert statuses == [200] * 20
    assert pressed["bars_played"] - before["bars_played"] >= 6  # bars played all through the presses
    assert after["bars_played"] > pressed["bars_played"]  # and after them
    assert after["underruns"] == 0 and after["silence_s"] <= 0.5, after
    assert after["generation"] >= before["generation"] + 20, (before["generation"], after["generation"])
