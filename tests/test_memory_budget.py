"""The memory budget per board class: the class is read from the device tree or MemTotal (or set in
``[board] memory``), the box's need is estimated from the configuration and the bundle, and `play` refuses
(exit 78, one line saying what, where and what to do) a configuration that cannot fit its board."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from musicbox.boards import MEMORY_CLASSES, detect_memory_class, memory_class
from musicbox.config import load_config
from musicbox.errors import ConfigError
from musicbox.runtime.buffering import SIDE_S, check_memory, memory_need, model_mb, stage_bytes
from musicbox.runtime.manifest import load_manifest

BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "bundle"


def _machine(tmp_path: Path, model: str = "", mem_total_kb: int | None = None) -> Path:
    root = tmp_path / "machine"
    (root / "proc/device-tree").mkdir(parents=True)
    if model:
        (root / "proc/device-tree/model").write_text(model + "\0")
    if mem_total_kb is not None:
        (root / "proc/meminfo").write_text(f"MemTotal: {mem_total_kb} kB\nMemAvailable: 1000 kB\n")
    return root


def _config(tmp_path: Path, text: str):
    path = tmp_path / "box.toml"
    path.write_text(text)
    return load_config(path)


def test_the_class_comes_from_the_device_tree_else_from_memtotal(tmp_path):
    zero = _machine(tmp_path / "a", "Raspberry Pi Zero 2 W Rev 1.0", 8 * 2**20)  # the model wins
    assert detect_memory_class(zero).name == "512m"
    pi4 = _machine(tmp_path / "b", "Raspberry Pi 4 Model B Rev 1.4", 3_884_000)  # a 4 GB Pi 4
    assert detect_memory_class(pi4).name == "4g"
    assert detect_memory_class(_machine(tmp_path / "c", "", 900_000)).name == "1g"
    assert detect_memory_class(_machine(tmp_path / "d", "", 64 * 2**20)) is None  # a build host
    assert detect_memory_class(_machine(tmp_path / "e")) is None  # no /proc/meminfo
    assert memory_class("none") is None and memory_class("2g").ram_mb == 2048
    assert all(c.box_mb < c.ram_mb for c in MEMORY_CLASSES)


def test_the_estimate_adds_what_the_configuration_and_the_bundle_hold(tmp_path):
    manifest = load_manifest(BUNDLE / "manifest.json")
    ten = _config(tmp_path, "[recording]\nminutes_kept = 10\n[remote]\nenabled = false\n")
    thirty = _config(tmp_path, "[recording]\nminutes_kept = 30\n[remote]\nenabled = true\nstream = true\n")
    a, b = memory_need(ten, 60.0, 160.0, manifest), memory_need(thirty, 60.0, 160.0, manifest)
    assert a.recording_mb == pytest.approx(10 * 60 * 44100 * 2 * 2 / 2**20)  # int16 stereo
    assert b.recording_mb == pytest.approx(3 * a.recording_mb)
    assert a.side_mb == b.side_mb == pytest.approx(SIDE_S * 44100 * 4 / 2**20)
    assert a.remote_mb == 0.0 and b.remote_mb > 10.0
    assert b.total_mb - a.total_mb == pytest.approx(b.recording_mb - a.recording_mb + b.remote_mb)
    fp32 = sum(stage_bytes(f) for f in manifest.variants["fp32"].files()) / 2**20
    int8 = _config(tmp_path, '[bundle]\nprecision = "int8"\n')
    assert model_mb(ten, manifest) >= 2 * fp32 - 1e-6  # auto may pick any variant: the largest counts
    assert model_mb(int8, manifest) < model_mb(ten, manifest) / 2
    assert memory_need(ten, 60.0, 160.0).model_mb == 0.0  # no bundle known yet
    assert "SAVE buffer 101 MiB" in a.describe() and "model" in a.describe()


def test_settings_that_cannot_fit_the_board_are_refused_and_the_defaults_fit_a_zero(tmp_path):
    manifest = load_manifest(BUNDLE / "manifest.json")
    zero = _machine(tmp_path, "Raspberry Pi Zero 2 W Rev 1.0", 436_000)
    defaults = _config(tmp_path, "[remote]\nenabled = true\n")
    check_memory(defaults, memory_need(defaults, 40.0, 200.0, manifest), zero)  # fits: no error
    big = _config(tmp_path, "[recording]\nminutes_kept = 20\n")
    with pytest.raises(ConfigError) as refused:
        check_memory(big, memory_need(big, 40.0, 200.0, manifest), zero)
    text = str(refused.value)
    assert "\n" not in text and str(tmp_path / "box.toml") in text and "minutes_kept = 20" in text
    assert "512 MB (Raspberry Pi Zero 2 W" in text and "'Raspberry Pi Zero 2 W Rev 1.0'" in text
    assert "lower minutes_kept" in text
    # a class set in the configuration is checked on any machine (here one larger than every class)
    host = _machine(tmp_path / "host", "", 64 * 2**20)
    check_memory(big, memory_need(big, 40.0, 200.0, manifest), host)
    pinned = _config(tmp_path, '[recording]\nminutes_kept = 20\n[board]\nmemory = "512m"\n')
    with pytest.raises(ConfigError, match=r'\[board\] memory = "512m"'):
        check_memory(pinned, memory_need(pinned, 40.0, 200.0, manifest), host)
    roomy = _config(tmp_path, '[recording]\nminutes_kept = 20\n[board]\nmemory = "1g"\n')
    check_memory(roomy, memory_need(roomy, 40.0, 200.0, manifest), host)


def test_a_wrong_memory_class_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"board.memory: got .256k.*512m"):
        _config(tmp_path, '[board]\nmemory = "256k"\n')


def test_play_refuses_a_configuration_its_board_class_cannot_hold_with_exit_78(tmp_path):
    config = tmp_path / "box.toml"
    config.write_text(
        f'[recording]\nfolder = "{tmp_path / "rec"}"\nminutes_kept = 40\n[board]\nmemory = "512m"\n'
        '[knobs]\nbackend = "none"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--seconds", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JACK_DEFAULT_SERVER": f"mbnone{os.getpid()}"},
    )
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    assert "minutes_kept = 40" in result.stderr and '[board] memory = "512m"' in result.stderr
