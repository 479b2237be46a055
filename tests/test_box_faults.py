"""Faults of the playing box, through the real `musicbox play` on a real-time-paced JACK dummy device:
worker SIGKILL mid-bar and SIGSTOP (hang) with zero underruns, also of a just-restarted worker and at
300 BPM with one bar buffered; a bad config, a missing shard and a missing shipped bundle (exit 78); the
audio device vanishing (exit 69 for systemd to restart it rather than hanging) and missing at start
(waited for); a second `play` (exit 75); SAVE onto a full or read-only disk; a save's leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicbox.runtime.box.proc import _children
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


def _config(
    tmp_path: Path, extra: str = "", audio: str = "buffer_bars = 6", folder: Path | None = None
) -> Path:
    path = tmp_path / "box.toml"
    path.write_text(f'[audio]\n{audio}\n[recording]\nfolder = "{folder or tmp_path / "rec"}"\n{extra}')
    return path


def _play(
    tmp_path: Path,
    bundle: Path,
    seconds: float,
    extra: str = "",
    backend: str = "none",
    env=None,
    audio: str = "buffer_bars = 6",
    folder: Path | None = None,
) -> tuple[subprocess.Popen, Path]:
    stats = tmp_path / "s.json"
    config = _config(tmp_path, extra, audio, folder)
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config)]
    cmd += ["--bundle", str(bundle), "--seconds", str(seconds), "--stats", str(stats), "--backend", backend]
    env = {**os.environ, **(env or {})}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env), stats


def _workers(main_pid: int) -> list[int]:
    """The worker processes of the box ``main_pid``: children of its fork server (a child of the box)."""
    return [w for child in _children(main_pid) for w in _children(child)]


def _new_worker(main_pid: int, old: int, timeout_s: float) -> int:
    """The first worker pid other than ``old`` to appear (polled every 10 ms)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        fresh = [w for w in _workers(main_pid) if w != old]
        if fresh:
            return fresh[0]
        time.sleep(0.01)
    raise AssertionError(f"no new worker within {timeout_s} s")


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
        _wait_for(stats, lambda d: d["bars_played"] >= 4, 20)
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


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        "",  # the defaults: 4 bars, 6 s buffered
        pytest.param('[knobs]\nmax_bpm = 300.0\nbackend = "scripted"\nscript = "{script}"\n', id="300bpm"),
    ],
)
def test_a_just_restarted_worker_that_freezes_is_replaced_within_8_s_without_silence(
    jack, bundle, tmp_path, extra
):
    if extra:  # 300 BPM (0.8 s bars) and buffer_bars = 1: the buffer is sized in seconds, not bars
        script = tmp_path / "fast.json"
        script.write_text('[{"at": 0, "tempo": 300}]')
        extra = extra.format(script=script)
    audio = "buffer_bars = 1" if extra else ""
    proc, stats = _play(tmp_path, bundle, 60, extra, "scripted" if extra else "none", audio=audio)
    try:
        first = _wait_for(stats, lambda d: d["bars_played"] >= 2 and d["worker_pid"], 40)
        os.kill(first["worker_pid"], signal.SIGKILL)
        fresh = _new_worker(proc.pid, first["worker_pid"], 10)
        os.kill(fresh, signal.SIGSTOP)  # frozen before it wrote (or even loaded) anything
        frozen_at = time.monotonic()
        replaced = _wait_for(
            stats, lambda d: d["worker_restarts"] == 2 and d["worker_pid"] not in (None, fresh), 20
        )
        replaced_s = time.monotonic() - frozen_at
        played = _wait_for(stats, lambda d: d["bars_played"] >= replaced["bars_played"] + 3, 30)
        print(f"frozen worker replaced after {replaced_s:.1f} s: {replaced['last_recovery']}")
        assert replaced_s < 8.0
        assert played["underruns"] == 0 and played["silence_s"] == 0.0, played
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out


@pytest.mark.slow
def test_the_watchdog_stops_being_fed_when_no_music_comes_out(jack, bundle, tmp_path):
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(0.01)
    env = {"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "2000000"}  # ping every 1 s while healthy
    proc, stats = _play(tmp_path, bundle, 90, env=env, audio="")
    pings, frozen, silence_start = [], set(), None
    try:
        _wait_for(stats, lambda d: d["bars_played"] >= 1, 40)
        end = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                if b"WATCHDOG=1" in sock.recv(4096):
                    pings.append(time.monotonic())
            for pid in set(_workers(proc.pid)) - frozen:  # every worker freezes: the music runs out
                with contextlib.suppress(ProcessLookupError):  # reaped since it was listed
                    os.kill(pid, signal.SIGSTOP)
                frozen.add(pid)
            data = json.loads(stats.read_text())
            if silence_start is None and data["silence_s"] > 0:
                silence_start = time.monotonic() - 1.0 - data["silence_s"]  # stats are <= 1 s old
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
        sock.close()
    assert silence_start is not None, out
    before = [t for t in pings if t < silence_start]
    after = [t for t in pings if t > silence_start + 2.0]  # the interval (WATCHDOG_USEC) after silence began
    assert len(before) >= 3 and not after, (len(before), [t - silence_start for t in after])
    assert "giving up" in out  # the workers kept freezing: the box exits for systemd to restart it


@pytest.fixture
def tiny_mount(tmp_path):
    """A 2 MiB tmpfs (mounting needs root): returns a function that mounts it, with options, at a path."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = []

    def mount(options: str) -> Path:
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=2m,{options}", "tmpfs", str(where)], check=True)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize("options,save_at,expect", [("rw", 14, "is full"), ("ro", 4, "not writable")])
def test_save_onto_a_full_or_read_only_disk_is_counted_in_one_line(
    jack, bundle, tmp_path, tiny_mount, options, save_at, expect
):
    folder = tiny_mount(options)  # 2 MiB: 14 s of audio (2.4 MiB) do not fit; read-only: nothing does
    script = tmp_path / "save.json"
    script.write_text(f'[{{"at": {save_at}, "button": "save"}}]')
    extra = f'[knobs]\nscript = "{script}"\n'
    proc, stats = _play(tmp_path, bundle, save_at + 8, extra, "scripted", audio="", folder=folder)
    out = proc.communicate(timeout=90)[0]
    assert proc.returncode == 0, out
    final = json.loads(stats.read_text())
    assert final["save_failures"] == 1 and final["saves"] == 0, final
    failures = [line for line in out.splitlines() if "save failed, playing on" in line]
    assert len(failures) == 1 and expect in failures[0] and "[recording]" in failures[0], out
    assert "Traceback" not in out and "LibsndfileError" not in out
    assert not [p for p in folder.iterdir() if p.name != ".musicbox.lock"]  # no partial file
    assert final["bars_played"] * 2.4 > save_at + 4  # it played on after the failed save


@pytest.mark.slow
def test_a_second_play_exits_75_and_the_first_cleans_a_killed_saves_leftover(jack, bundle, tmp_path):
    leftover = tmp_path / "rec" / ".musicbox-20260101-120000.wav.tmp"  # SIGKILL during a save leaves this
    leftover.parent.mkdir()
    leftover.write_bytes(b"RIFF half a save")
    first, stats = _play(tmp_path, bundle, 40)
    try:
        _wait_for(stats, lambda d: d["bars_played"] >= 1, 40)
        assert not leftover.exists()
        second = subprocess.run(
            [sys.executable, "-m", "musicbox.cli", "play", "--config", str(tmp_path / "box.toml")]
            + ["--bundle", str(bundle), "--seconds", "5", "--backend", "none"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 75, second.stderr
        assert f"already playing (pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert first.poll() is None  # the first box plays on
    finally:
        first.send_signal(signal.SIGTERM)
        out = first.communicate(timeout=30)[0]
    assert first.returncode == 0 and "unfinished save" in out, out


def test_a_missing_shipped_bundle_exits_78(tmp_path):
    firmware = tmp_path / "firmware_config"  # a copy of the defaults with no assets/bundle beside it
    shutil.copytree(Path(__file__).resolve().parent.parent / "firmware_config", firmware)
    config = _config(tmp_path, '[knobs]\nbackend = "none"\n')
    result = subprocess.run(
        [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--seconds", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MUSICBOX_FIRMWARE_DIR": str(firmware)},
    )
    assert result.returncode == 78, result.stderr
    assert "no bundle shipped" in result.stderr and "--bundle" in result.stderr


def test_a_config_that_needs_more_memory_than_the_unit_allows_exits_78_with_numbers(bundle, tmp_path):
    extra = "[knobs]\nmin_bpm = 20.0\n"
    proc, _ = _play(tmp_path, bundle, 5, extra, audio="buffer_bars = 64")
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 78, out
    assert "buffer_bars = 64" in out and "min_bpm = 20" in out and "MemoryMax=512M" in out
    assert "bar ring 529 MiB (131 bars of up to 12.0 s)" in out


@pytest.mark.slow
def test_a_missing_audio_device_is_waited_for_and_played_when_it_comes(bundle, tmp_path):
    name = f"mblate{os.getpid()}"
    proc, stats = _play(tmp_path, bundle, 60, env={"JACK_DEFAULT_SERVER": name})
    server = JackDummy(name=name)
    try:
        time.sleep(12)  # unplugged: no device at all (before, the box exited 69 within a second)
        assert proc.poll() is None, proc.communicate()[0]
        waiting = _wait_for(stats, lambda d: d["audio_state"] == "lost", 5)
        assert waiting["bars_played"] == 0
        server.start()  # plugged back in
        back = _wait_for(stats, lambda d: d["bars_played"] >= 2, 30)
        assert back["audio_state"] == "running"
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
        server.stop()
    assert proc.returncode == 0, out
    assert "waiting for the audio device" in out and "audio device back" in out


def _unit_restart_settings() -> dict[str, str]:
    """The shipped unit's restart settings (the last value of each key)."""
    unit = Path(__file__).resolve().parent.parent / "firmware_config" / "systemd" / "musicbox.service"
    keys = ("Restart", "RestartSec", "RestartPreventExitStatus", "StartLimitIntervalSec", "StartLimitBurst")
    found = {}
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key in keys:
            found[key] = value.strip()
    assert set(found) == set(keys), found
    return found


@pytest.mark.soak
def test_with_the_units_restart_settings_a_device_gone_2_minutes_plays_again_without_help(bundle, tmp_path):
    """systemd's restart logic walked with the unit's own settings around the real `play`: the device (a
    JACK server) vanishes under the playing box, stays away 2 minutes, comes back."""
    unit = _unit_restart_settings()
    assert unit["Restart"] == "on-failure"
    prevent = {int(c) for c in unit["RestartPreventExitStatus"].split()}
    interval, burst = float(unit["StartLimitIntervalSec"]), int(unit["StartLimitBurst"])
    name = f"mbunplug{os.getpid()}"
    starts: list[float] = []
    exits: list[int] = []
    box: list[subprocess.Popen] = []
    stats = tmp_path / "s.json"

    def start() -> None:
        recent = [t for t in starts if t > time.monotonic() - interval]
        assert len(recent) < burst, f"start limit hit: systemd gives up (exits {exits})"
        starts.append(time.monotonic())
        stats.unlink(missing_ok=True)
        box.append(_play(tmp_path, bundle, 600, env={"JACK_DEFAULT_SERVER": name})[0])

    def service(until: float) -> None:
        """Restart=on-failure with RestartSec= and the start limit, until ``until`` (monotonic)."""
        while time.monotonic() < until:
            code = box[-1].poll()
            if code is not None:
                exits.append(code)
                assert code != 0 and code not in prevent, box[-1].communicate()[0]
                time.sleep(float(unit["RestartSec"]))
                start()
            time.sleep(0.2)

    server = JackDummy(name=name)
    server.start()
    try:
        start()
        _wait_for(stats, lambda d: d["bars_played"] >= 2, 40)
        server.stop()  # unplugged while playing
        service(time.monotonic() + 120)
        assert box[-1].poll() is None  # the service is up, waiting for the device
        server.start()  # plugged back in
        end = time.monotonic() + 40
        while time.monotonic() < end and not (
            stats.exists() and json.loads(stats.read_text())["bars_played"] >= 2
        ):
            service(time.monotonic() + 1)
        final = json.loads(stats.read_text())
        assert final["bars_played"] >= 2 and final["audio_state"] == "running", final
        print(f"starts: {len(starts)}, exits: {exits}")
        assert len(starts) <= 2 and exits == [69]
    finally:
        for proc in box:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=30)
        server.stop()
