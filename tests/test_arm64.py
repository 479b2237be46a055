"""The ARM64 check (``scripts/arm64_check.sh``) on a bundle of the tiny checkpoint, under qemu-aarch64, run
with the arm64 Debian package's contents (built first, ~3 minutes) on Cortex-A53/A72/A76/A57.

Needs root (or sudo) for apt-get/debootstrap on the first run and network access to the Debian mirror
and PyPI; the sysroot and wheels are cached under ~/.cache/musicbox/arm64 (cold ~45 s to prepare, then
~35 s per emulated core)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from musicbox.quantize.bundle import BuildSettings, build_bundle
from musicbox.quantize.calibrate import CalibrationGrid
from musicbox.quantize.validate import ValidationPlan
from tests.helpers.debian import build_deb
from tests.helpers.tiny_model import tiny_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "arm64_check.sh"
GRID = CalibrationGrid(styles=(0.0, 0.5, 4.0), tempos=(60.0, 160.0), moods=(-1.0, 1.0), seeds=(0,), bars=2)


@pytest.mark.arm64
def test_runtime_on_emulated_arm64_matches_x86(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt", full_size=True)
    settings = BuildSettings(grid=GRID, plan=ValidationPlan(seeds=(0,), bars=2, repeats=10))
    bundle = build_bundle(checkpoint, tmp_path / "bundle", settings).path
    out = tmp_path / "arm64"
    env = {**os.environ, "MUSICBOX_ARM64_DEB": str(build_deb("arm64"))}  # the package's aarch64 contents
    cmd = [str(SCRIPT), str(bundle), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "arm64_check.json").read_text())
    assert report["ok"] and set(report["cpus"]) == {"cortex-a53", "cortex-a72", "cortex-a76", "cortex-a57"}
    assert report["package"].endswith("_arm64.deb")
    for cpu, result in report["cpus"].items():
        assert result["fp32"]["same_notes"]
        assert result["int8"]["note_f1_vs_x86"] >= 0.9
        print(f"\n{cpu}: {result['seconds']} s, int8 note F1 vs x86 {result['int8']['note_f1_vs_x86']}")
