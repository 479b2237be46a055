"""One loudness for every style and mood (BS.1770, checked with pyloudnorm), peaks under -1 dBTP, and
the listener's volume: keys, config, and a smooth ramp in the audio callback."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import resample_poly

from musicbox.config import default_config
from musicbox.runtime.bundle import Bundle
from musicbox.runtime.controls import Controls
from musicbox.runtime.generator import Generator
from musicbox.runtime.loudness import DEFAULT_LEVEL, Leveler, k_weighted_power, lufs
from musicbox.runtime.render import Renderer

BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "bundle"
RATE = 44100


def true_peak_db(pcm: np.ndarray) -> float:
    """True peak (dBTP) the BS.1770-4 way: 4x oversampled absolute peak."""
    return float(20 * np.log10(np.abs(resample_poly(pcm, 4, 1, axis=0)).max()))


@pytest.mark.parametrize("freq", [30.0, 100.0, 1000.0, 5000.0])
def test_k_weighted_loudness_agrees_with_pyloudnorm(freq):
    t = np.arange(5 * RATE) / RATE
    pcm = np.stack([0.1 * np.sin(2 * np.pi * freq * t), 0.05 * np.sin(2 * np.pi * freq * t)], axis=1)
    assert lufs(k_weighted_power(pcm, RATE)) == pytest.approx(
        pyloudnorm.Meter(RATE).integrated_loudness(pcm), abs=0.05
    )


def test_the_leveler_brings_quiet_and_loud_music_to_the_target_without_steps():
    rng = np.random.default_rng(0)
    for scale in (0.01, 0.3):  # -34 and -4 LUFS
        leveler, bars = Leveler(RATE), []
        for _ in range(10):
            bars.append(leveler.process((scale * rng.standard_normal((2 * RATE, 2))).astype(np.float32)))
        pcm = np.concatenate(bars)
        assert pyloudnorm.Meter(RATE).integrated_loudness(pcm) == pytest.approx(
            DEFAULT_LEVEL.target_lufs, abs=0.5
        )
    quiet_then_loud = [0.01] * 6 + [0.1] * 6  # +20 dB at a bar line: the gain ramps down, never steps
    leveler = Leveler(RATE)
    applied = []
    for scale in quiet_then_loud:
        signs = np.sign(rng.standard_normal((RATE, 2))).astype(np.float32)
        applied.append(np.abs(leveler.process(scale * signs))[:, 0] / scale)
    gain_db = 20 * np.log10(np.concatenate(applied))
    assert np.max(np.abs(np.diff(gain_db))) < 0.001  # dB from one sample to the next, bar lines included
    assert gain_db[-1] < gain_db[6 * RATE - 1] - 15.0


def test_the_limiter_keeps_a_sudden_loud_bar_under_the_ceiling():
    leveler = Leveler(RATE)
    t = np.arange(2 * RATE) / RATE
    quiet = (0.01 * np.sin(2 * np.pi * 440 * t))[:, None].repeat(2, axis=1).astype(np.float32)
    leveler.process(quiet)  # a large leveling gain ...
    burst = quiet.copy()
    burst[RATE:] *= 100.0  # ... then +40 dB in the middle of a bar
    out = leveler.process(burst)
    assert np.abs(out).max() <= 10 ** (DEFAULT_LEVEL.ceiling_db / 20) + 1e-6
    assert true_peak_db(out) <= -1.0


def test_styles_and_moods_play_at_one_loudness_with_headroom():
    """Before: 10.7 LU between the quietest and loudest of these, -25.1 LUFS mean, peaks -10.5 dBFS."""
    bundle = Bundle.open(BUNDLE, precision="int8_dynamic")
    meter = pyloudnorm.Meter(RATE)
    results = {}
    for style in range(5):
        for mood in (-1.0, 1.0):
            gen = Generator(bundle, seed=0)
            renderer = Renderer(bundle.manifest.controls, default_config().synth, sample_rate=RATE)
            controls = Controls(float(style), 100.0, mood)
            bars = [gen.next_bar(controls) for _ in range(8)]
            pcm = np.concatenate([renderer.render_roll(b.roll, controls, b.meter) for b in bars])
            results[(style, mood)] = (meter.integrated_loudness(pcm), true_peak_db(pcm))
            renderer.close()
    loudness = np.array([v[0] for v in results.values()])
    assert np.all(np.abs(loudness - DEFAULT_LEVEL.target_lufs) <= 1.5), results
    assert max(v[1] for v in results.values()) <= -1.0, results


# ---- the listener's volume --------------------------------------------------------------------------


def test_a_volume_step_ramps_the_output_within_one_block():
    from musicbox.runtime.box.player import Player, PlayerSettings
    from musicbox.runtime.box.ring import BarRing

    ring = BarRing.create(n_slots=4, slot_frames=4096)
    try:
        for bar in range(3):
            ring.write_bar(bar, 0, np.full((4096, 2), 0.5, np.float32))
        player = Player(ring, PlayerSettings(fade_ms=1.0, volume_step_db=6.0))
        ok = SimpleNamespace(output_underflow=False)
        out = np.zeros((6 * 512, 2), np.float32)
        for i in range(6):
            if i == 2:
                assert player.step_volume(-1) == -6.0
            player._callback(out[i * 512 : (i + 1) * 512], 512, None, ok)
        level = out[:, 0] / 0.5
        after = 10 ** (-6 / 20)
        assert np.allclose(level[200:1024], 1.0) and np.allclose(level[1536:], after, atol=1e-6)
        ramp = level[1024:1536]
        assert np.all(np.diff(ramp) < 0) and np.max(np.abs(np.diff(ramp))) <= (1 - after) / 512 * 1.01
    finally:
        ring.close()


def test_volume_keys_config_and_the_box_event(tmp_path):
    import os

    from rich.console import Console

    from musicbox.config import load_config
    from musicbox.device import open_backend
    from musicbox.device.buttons import Button
    from musicbox.runtime.box.assemble import player_settings
    from musicbox.runtime.box.supervisor import Supervisor
    from musicbox.runtime.box.worker import WorkerSettings

    path = tmp_path / "box.toml"
    path.write_text('[audio]\nvolume_db = -12.0\nvolume_step_db = 2.0\n[knobs]\nbackend = "terminal"\n')
    config = load_config(path)
    settings = player_settings(config)
    assert (settings.volume_db, settings.volume_step_db) == (-12.0, 2.0)
    read_fd, _ = os.pipe()
    console = Console(file=open(os.devnull, "w"), force_terminal=True)  # noqa: SIM115
    backend = open_backend(config, ("a", "b"), input_fd=read_fd, console=console)
    pressed = []
    backend.on_button = pressed.append
    for key in "+=-":
        backend.press(key)
    assert pressed == [Button.VOLUME_UP, Button.VOLUME_UP, Button.VOLUME_DOWN]
    box = Supervisor(WorkerSettings(Path("/nonexistent"), config.synth), settings, None, min_bpm=120.0)
    try:
        assert box.player.volume_db == -12.0
        for event in (Button.VOLUME_UP, Button.VOLUME_UP, Button.VOLUME_DOWN):
            box.post(event)
        box._handle_events()
        assert box.player.volume_db == -10.0 and box.stats().volume_db == -10.0
        for _ in range(10):
            box.post(Button.VOLUME_UP)
        box._handle_events()
        assert box.player.volume_db == 0.0  # never above the leveled loudness
    finally:
        box.ring.close()


def test_a_bar_of_any_length_is_measured_at_a_fast_fft_length():
    from musicbox.runtime.loudness import fast_length, k_weighted_power

    def smooth(n: int) -> bool:
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in (1, 7, 1000, 105841, 88201, 131073):
        size = fast_length(n)
        assert size >= n and smooth(size)
        assert not any(smooth(m) for m in range(n, size))  # the smallest such length
    rng = np.random.default_rng(3)
    pcm = rng.standard_normal((105841, 2)).astype(np.float32) * 0.1
    padded = k_weighted_power(pcm, 44100)  # 105,841 = a prime times 1: padded to 108,000
    assert padded == pytest.approx(k_weighted_power(pcm[:105840], 44100), rel=0.01)
