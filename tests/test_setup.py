"""scripts/setup.sh says what it is doing; the package builds without setuptools' license deprecation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_setup_says_each_step_before_it_runs(tmp_path):
    """It used to be silent for minutes while apt and pip worked. Run the real script in a copy of the
    repository with apt, dpkg and pip replaced by stand-ins that log their calls."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    (repo / ".venv" / "bin").mkdir(parents=True)
    stub = f'#!/bin/sh\necho "$(basename "$0") $*" >> {log}\n'
    for name, path in [("dpkg-query", bin_dir / "dpkg-query"), ("apt-get", bin_dir / "apt-get")]:
        path.write_text(stub + ("exit 1\n" if name == "dpkg-query" else ""))  # nothing installed yet
        path.chmod(0o755)
    (repo / ".venv" / "bin" / "python").write_text(stub)
    (repo / ".venv" / "bin" / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    if os.getuid() != 0:
        env["PATH"] = f"{bin_dir}:/nonexistent"  # no sudo: the script says what to install instead
    done = subprocess.run(
        ["bash", str(repo / "scripts" / "setup.sh"), "dev"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    steps = [
        "using the virtualenv .venv",
        "upgrading pip",
        "pip install -e '.[device,train,quantize,dev]'",
        "ready (dev)",
    ]
    if os.getuid() == 0:
        steps = ["apt-get update", "apt-get install python3-venv", *steps]
    said = [next(i for i, line in enumerate(lines) if step in line) for step in steps]
    assert said == sorted(said) and all(line.startswith("setup [") for line in lines)
    assert "pip install -q -e .[device,train,quantize,dev]" in log.read_text()
    assert done.stderr == "" and len(lines) == len(steps)  # nothing but its own steps: no pip chatter


def test_the_package_builds_without_license_deprecation_warnings(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(tmp_path),
        str(ROOT),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "project.license" not in done.stdout + done.stderr
    # Issue 32: ~45 lines of "Package 'musicbox.remote.static' is absent from the `packages` configuration"
    assert "BuildBackendWarning" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert list(tmp_path.glob("musicbox-*.whl"))
