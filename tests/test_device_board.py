"""Board detection from a fake /proc and /sys, CPU features, and the backend `auto` picks."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from musicbox.config import load_config
from musicbox.device import auto_candidates, open_backend
from musicbox.device.base import Backend
from musicbox.device.board import detect_board

PI4_CPUINFO = (
    "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "Model\t: Raspberry Pi 4 Model B Rev 1.4\n"
)
PI5_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
)


def fake_root(tmp_path: Path, model: str, compatible: str, cpuinfo: str) -> Path:
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(model.encode() + b"\0")
    (tmp_path / "proc/device-tree/compatible").write_bytes(compatible.encode())
    (tmp_path / "proc/cpuinfo").write_text(cpuinfo)
    return tmp_path


@pytest.mark.parametrize(
    "model, compatible, name",
    [
        ("Raspberry Pi 4 Model B Rev 1.4", "raspberrypi,4-model-b\0brcm,bcm2711\0", "pi4"),
        ("Raspberry Pi 5 Model B Rev 1.0", "raspberrypi,5-model-b\0brcm,bcm2712\0", "pi5"),
        (
            "NVIDIA Jetson Nano Developer Kit",
            "nvidia,p3450-0000\0nvidia,jetson-nano\0nvidia,tegra210\0",
            "jetson-nano",
        ),
        ("NVIDIA Jetson Orin Nano Developer Kit", "nvidia,p3767-0005\0nvidia,tegra234\0", "jetson-orin"),
        ("Some other SBC", "vendor,board\0", "none"),
    ],
)
def test_board_detection(tmp_path, model, compatible, name):
    assert detect_board(fake_root(tmp_path, model, compatible, PI4_CPUINFO)).name == name


def test_dot_product_decides_the_precision(tmp_path):
    pi4 = detect_board(fake_root(tmp_path / "a", "Raspberry Pi 4 Model B", "", PI4_CPUINFO))
    assert pi4.is_arm and not pi4.dotprod and pi4.recommended_precision == "fp32"
    pi5_cpuinfo = f"processor\t: 0\nFeatures\t: {PI5_FEATURES}\n"
    pi5 = detect_board(fake_root(tmp_path / "b", "Raspberry Pi 5 Model B", "", pi5_cpuinfo))
    assert pi5.dotprod and pi5.recommended_precision == "int8"
    x86 = detect_board(fake_root(tmp_path / "c", "", "", "processor : 0\nflags\t\t: fpu sse2 avx2\n"))
    assert not x86.is_arm and x86.recommended_precision == "fp32"  # no VNNI: as Bundle's auto decides
    vnni = detect_board(fake_root(tmp_path / "d", "", "", "processor : 0\nflags\t\t: avx2 avx512_vnni\n"))
    assert vnni.recommended_precision == "int8"
    assert detect_board().cores >= 1  # this machine: readable, whatever it is


def board_config(tmp_path, board, backend="auto"):
    path = tmp_path / "box.toml"
    path.write_text(f'[board]\nname = "{board}"\n[knobs]\nbackend = "{backend}"\n')
    return load_config(path)


def test_auto_candidates(tmp_path):
    assert auto_candidates(board_config(tmp_path, "pi5"), stdin_is_tty=True) == ["gpio", "terminal", "none"]
    assert auto_candidates(board_config(tmp_path, "jetson-orin"), stdin_is_tty=False) == ["jetson", "none"]
    assert auto_candidates(board_config(tmp_path, "none"), stdin_is_tty=False) == ["none"]


def test_auto_falls_back_with_a_log_and_explicit_choices_do_not(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "Jetson.GPIO", None)  # not a Jetson
    monkeypatch.setattr(sys, "stdin", None)
    with caplog.at_level(logging.WARNING, logger="musicbox.device"):
        backend = open_backend(board_config(tmp_path, "jetson-nano"), ["a", "b"])
    assert type(backend) is Backend and "knob backend jetson is not usable" in caplog.text
    got = []
    backend.start(got.append, got.append)
    assert got[0].style == 0.0  # the none backend still reports its (default) controls
    from musicbox.errors import HardwareError

    with pytest.raises(HardwareError):
        open_backend(board_config(tmp_path, "jetson-nano", backend="jetson"), ["a", "b"])


def test_device_never_imports_the_workstation_stack():
    modules = ["device", "device.terminal", "device.scripted", "device.gpio", "device.jetson", "device.board",
               "device.doctor", "config"]  # fmt: skip
    code = (
        "import sys, " + ", ".join(f"musicbox.{m}" for m in modules) + "; "
        "bad = {'torch', 'onnx', 'optimum', 'transformers', 'Jetson', 'spidev'}; "
        "print(sorted(bad & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
