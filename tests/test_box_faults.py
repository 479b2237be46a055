"""Faults of the playing box, through the real `musicbox play` on a real-time-paced JACK dummy device:
worker SIGKILL mid-bar and SIGSTOP (hang) with zero underruns, a bad config and a missing shard (exit 78),
and the audio device vanishing (the box exits 69 for systemd to restart it rather than hanging)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicbox.runtime.box.soak import JackDummy
from tests.helpers.synthetic_bundle import build_bundle

pytestmark = pytest.mark.skipif(
    shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed"
)


@pytest.fixture(scope="module")
def jack():
    with JackDummy(name=f"mbfaults{os.getpid()}") as server:
        yield server


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle"))


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "box.toml"
    path.write_text(f'[audio]\nbuffer_bars = 6\n[recording]\nfolder = "{tmp_path}/rec"\n{extra}')
    return path


def _play(tmp_path: Path, bundle: Path, seconds: float, extra: str = "") -> tuple[subprocess.Popen, Path]:
    stats = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(_config(tmp_path, extra))]
    cmd += ["--bundle", str(bundle), "--seconds", str(seconds), "--stats", str(stats), "--backend", "none"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), stats


def _wait_for(stats: Path, test, timeout_s: float) -> dict:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if stats.exists():
            data = json.loads(stats.read_text())
            if test(data):
                return data
        time.sleep(0.2)
    raise AssertionError(
        f"stats never satisfied the condition: {stats.read_text() if stats.exists() else None}"
    )


@pytest.mark.slow
def test_worker_killed_and_hung_keeps_playing_without_underruns(jack, bundle, tmp_path):
    proc, stats = _play(tmp_path, bundle, seconds=40)
    try:
        first = _wait_for(stats, lambda d: d["bars_played"] >= 1 and d["worker_pid"], 30)
        os.kill(first["worker_pid"], signal.SIGKILL)  # mid-bar: the worker is writing ahead
        killed = _wait_for(stats, lambda d: d["worker_restarts"] == 1 and d["last_recovery_s"], 20)
        os.kill(killed["worker_pid"], signal.SIGSTOP)  # a hang: alive, no heartbeat
        hung = _wait_for(stats, lambda d: d["worker_restarts"] == 2 and d["state"] == "playing", 25)
        assert hung["worker_pid"] != killed["worker_pid"]
        assert hung["underruns"] == 0  # xruns (PortAudio underflow flags) depend on host load, not on us
        print(
            f"recovery after kill -9: {killed['last_recovery_s']:.2f} s, after a hang {hung['last_recovery_s']:.2f} s"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    final = json.loads(stats.read_text())
    assert final["underruns"] == 0 and final["worker_restarts"] == 2 and final["bars_played"] >= 4


def test_bad_config_exits_78_naming_file_key_and_allowed_values(bundle, tmp_path):
    proc, _ = _play(tmp_path, bundle, seconds=5, extra='[knobs]\nbackend = "banana"\n')
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 78
    assert "box.toml" in out and "backend" in out and "terminal" in out


def test_missing_shard_exits_78_with_a_clear_error(jack, bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    next(broken.glob("fp32/denoiser*.onnx")).unlink()
    proc, _ = _play(tmp_path, broken, seconds=20)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 78, out
    assert "denoiser" in out


@pytest.mark.slow
def test_audio_device_vanishing_is_not_a_hang(bundle, tmp_path):
    server = JackDummy(name=f"mbvanish{os.getpid()}")
    server.start()
    try:
        proc, stats = _play(tmp_path, bundle, seconds=60)
        _wait_for(stats, lambda d: d["bars_played"] >= 1, 30)
        server.stop()  # the device vanishes under the playing box
        out = proc.communicate(timeout=30)[0]
    finally:
        server.stop()
    assert proc.returncode == 69, out
    assert "audio device lost" in out and "restarts" in out
