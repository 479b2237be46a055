"""The player's callback (driven directly, as PortAudio would) and a real stream on a JACK dummy device."""

from __future__ import annotations

import os
import time
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from musicbox.runtime.box.player import PlayedLog, Player, PlayerSettings, StreamState
from musicbox.runtime.box.ring import BarRing

OK = SimpleNamespace(output_underflow=False)
BAR = 300  # frames per test bar


@pytest.fixture
def ring():
    r = BarRing.create(n_slots=6, slot_frames=BAR)
    yield r
    r.close()


def _bar(start: float) -> np.ndarray:
    """A bar whose left channel counts up from ``start`` by 1e-4 per frame (continuous across bars)."""
    ramp = start + 1e-4 * np.arange(BAR, dtype=np.float32)
    return np.stack([ramp, -ramp], axis=1).astype(np.float32)


def _play(player: Player, blocks: int, frames: int = 128) -> np.ndarray:
    out = np.zeros((blocks * frames, 2), np.float32)
    for i in range(blocks):
        player._callback(out[i * frames : (i + 1) * frames], frames, None, OK)
    return out


def test_bars_play_back_to_back_without_a_seam(ring):
    for b in range(3):
        ring.write_bar(b, 0, _bar(b * BAR * 1e-4 + 0.1))
    player = Player(ring, PlayerSettings(fade_ms=1.0))
    out = _play(player, 7)[: 3 * BAR, 0]  # 896 frames requested, 900 available
    fade = player._fade_frames
    np.testing.assert_allclose(np.diff(out[fade:]), 1e-4, atol=1e-6)
    assert player.underruns == 0 and ring.bars_played == 3


def test_underrun_fades_out_counts_once_and_fades_back_in(ring):
    ring.write_bar(0, 0, _bar(0.5))
    player = Player(ring, PlayerSettings(fade_ms=1.0))
    out = _play(player, 6)[:, 0]  # 768 frames: the bar ends at 300, then nothing
    fade = player._fade_frames
    tail = out[BAR - 1 : BAR + fade + 2]
    assert np.all(np.diff(tail) <= 0) and np.max(np.abs(np.diff(tail))) < 0.6 / fade * 1.5
    assert np.all(out[BAR + fade :] == 0.0)
    assert player.underruns == 1
    ring.write_bar(1, 0, _bar(0.5))
    again = _play(player, 1)[:, 0]
    assert again[0] < 0.1 and abs(again[fade] - 0.5 - fade * 1e-4) < 1e-3
    assert player.underruns == 1


def test_pause_keeps_the_place_and_is_not_an_underrun(ring):
    ring.write_bar(0, 0, _bar(0.0))
    player = Player(ring, PlayerSettings(fade_ms=1.0))
    _play(player, 1)
    player.pause()
    assert np.all(_play(player, 2)[-128:] == 0.0)
    player.resume()
    resumed = _play(player, 1)[:, 0]
    assert abs(resumed[-1] - (255 * 1e-4)) < 1e-5  # continues at frame 128 of the bar
    assert player.underruns == 0


def test_callback_allocates_no_buffers(ring):
    for b in range(6):
        ring.write_bar(b, 0, _bar(0.0))
    player = Player(ring)
    frames = PlayerSettings().blocksize  # a block-sized temporary would be 8 KiB, far above other threads
    out = np.zeros((frames, 2), np.float32)
    player._callback(out, frames, None, OK)
    tracemalloc.start()
    for i in range(40):  # crosses bar lines and runs dry (fade + silence); volume ramps and holds
        if i % 10 == 5:
            player.step_volume(-1)
        player._callback(out, frames, None, OK)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < out.nbytes / 2, f"the callback allocated {peak} bytes (a block is {out.nbytes})"


@pytest.mark.slow
def test_real_stream_on_jack_dummy_is_paced(jack_server, ring):
    for b in range(6):
        ring.write_bar(b, 0, _bar(0.0))
    player = Player(ring, PlayerSettings(blocksize=512, latency=0.05))
    player.open()
    try:
        assert "JACK" in player.describe() or "system" in player.describe()
        _wait_until(lambda: player.callbacks >= 1)
        t0, first = time.monotonic(), player.callbacks
        _wait_until(lambda: player.callbacks >= first + 40)
        # 40 blocks of 512 frames are 0.46 s of audio at 44.1 kHz: a paced stream takes about that long
        # (a free-running one microseconds); half of it allows for the server's bursts of callbacks.
        assert time.monotonic() - t0 >= 0.5 * 40 * 512 / 44100
        assert player.check() is StreamState.RUNNING
        assert ring.bars_played == 6  # the 6 bars of the ring played (40 blocks are 68 bars' frames)
    finally:
        player.close()


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


@pytest.fixture(scope="module")
def jack_server():
    from musicbox.runtime.box.soak import JackDummy

    with JackDummy(name=f"mbplayer{os.getpid()}") as server:
        yield server


def test_a_device_at_another_rate_is_a_config_error_naming_its_rate(ring):
    """A JACK server at 48 kHz refuses a 44.1 kHz stream: say which rate to set, do not wait for a
    device that is there (it used to wait, then exit with "the JACK server went away")."""
    from musicbox.errors import ConfigError
    from musicbox.runtime.box.soak import JackDummy

    with JackDummy(name=f"mbrate{os.getpid()}", sample_rate=48000):
        player = Player(ring, PlayerSettings(sample_rate=44100, blocksize=512))
        with pytest.raises(ConfigError, match=r"sample_rate = 48000"):
            player.start()
        assert player.state is StreamState.CLOSED


def test_no_such_device_names_this_python_to_list_devices(tmp_path):
    """The hint must work as typed: a venv's `python` is not on PATH, so it names this interpreter. The
    box waits for the device and stops after --seconds (exit 0); no JACK server is reachable for it, so
    the outcome does not depend on whether another test's server runs."""
    import subprocess
    import sys

    config = tmp_path / "box.toml"
    config.write_text(
        f'[audio]\ndevice = "no-such-device-xyz"\n[knobs]\nbackend = "none"\n[recording]\nfolder = "{tmp_path}"\n'
    )
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--seconds", "2"]
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"musicbox-absent-{os.getpid()}", "JACK_NO_START_SERVER": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "waiting for the audio device" in result.stderr
    assert f"`{sys.executable} -m sounddevice` lists" in result.stderr


def test_the_played_log_reads_back_what_was_appended_across_its_wrap():
    log, rng = PlayedLog(1000, 2), np.random.default_rng(0)
    appended = np.zeros((0, 2), np.float32)
    for _ in range(12):
        n = int(rng.integers(1, 700))
        block = rng.standard_normal((n, 2)).astype(np.float32)
        log.append(block, n)
        appended = np.concatenate([appended, block])
        for start in range(max(0, log.written - 1000), log.written + 1, 53):
            for stop in (start, start + 1, log.written):
                got = log.read(start, min(stop, log.written))
                assert np.array_equal(got, appended[start : min(stop, log.written)]), (start, stop)
