"""The project's own habits hold: one version, one test command (README, CI and pre-commit agree)."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

import musicbox

ROOT = Path(__file__).resolve().parent.parent


def readme_test_command() -> str:
    """The README's second shell block: the test command."""
    blocks = re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    return blocks[1].strip()


def test_one_version():
    """pyproject reads the version from musicbox.__version__; the installed metadata and the CLI agree."""
    assert importlib.metadata.version("musicbox") == musicbox.__version__
    out = subprocess.run(
        [sys.executable, "-m", "musicbox.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.splitlines()[0].split() == ["musicbox", musicbox.__version__]  # then the bundle
    assert f"## [{musicbox.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_ci_runs_the_readme_test_command_verbatim():
    command = readme_test_command()
    assert f"bash -c {shlex.quote(command)}" in (ROOT / ".ci/run").read_text()


def test_pre_commit_runs_the_static_checks_of_the_test_command():
    steps = readme_test_command().split(" && ")
    assert steps[0] == "scripts/setup.sh dev" and steps[-1] == ".venv/bin/pytest"
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert [hook["entry"] for hook in hooks] == steps[1:-1]
    assert all(not hook["pass_filenames"] and hook["always_run"] for hook in hooks)  # the whole tree, always


def test_mypy_checks_every_package():
    """The test command's type check (scripts/typecheck.py reads pyproject's [tool.mypy] files) covers
    every folder that installs as a package."""
    from scripts.typecheck import package_dirs, tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        checked = [(ROOT / folder).resolve() for folder in tomllib.load(f)["tool"]["mypy"]["files"]]
    unchecked = [str(p) for p in package_dirs() if not any(p.is_relative_to(c) for c in checked)]
    assert not unchecked, f"not type-checked: {unchecked}"
    assert "scripts/typecheck.py" in readme_test_command()
