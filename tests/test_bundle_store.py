"""`musicbox bundle install/rollback/list` and `--version`: verified installs beside the current bundle, an
atomic switch, rollback, and a corrupted bundle refused while the box keeps playing the old one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from musicbox.cli import main
from musicbox.config import installed_bundle, resolve_bundle, shipped_bundle
from musicbox.runtime.box.soak import JackDummy
from tests.helpers.synthetic_bundle import build_bundle


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "store"
    monkeypatch.setenv("MUSICBOX_BUNDLE_STORE", str(path))
    return path


def _release(synthetic: Path, into: Path, checkpoint: str, trained: str = "2026-02-02") -> Path:
    """A copy of ``synthetic`` that names another checkpoint (another model release)."""
    root = into / checkpoint[:4]
    shutil.copytree(synthetic, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["model"]["provenance"].update(checkpoint_sha256=checkpoint, trained=trained)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _corrupt(root: Path) -> Path:
    """Flip one byte in the middle of the first denoiser shard (same size: only the sha256 can tell)."""
    manifest = json.loads((root / "manifest.json").read_text())
    shard = root / manifest["variants"]["fp32"]["denoiser"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    return shard


def test_install_switches_rollback_swaps_and_old_ones_are_pruned(synthetic, store, tmp_path, capsys):
    a, b, c = (_release(synthetic, tmp_path, ch * 64) for ch in "abc")
    assert main(["bundle", "install", str(a)]) == 0
    first = installed_bundle()
    assert first is not None and first.parent == store and resolve_bundle(None) == first
    assert oct((first / "manifest.json").stat().st_mode & 0o777) == "0o644"
    assert main(["bundle", "install", str(b)]) == 0
    second = installed_bundle()
    assert second != first and (store / "previous").resolve() == first
    assert main(["bundle", "rollback"]) == 0
    assert installed_bundle() == first and (store / "previous").resolve() == second
    assert main(["bundle", "install", str(c)]) == 0  # current (a) becomes previous; b is pruned
    assert not second.exists() and (store / "previous").resolve() == first
    assert not [p for p in store.iterdir() if p.name.startswith(".")]
    capsys.readouterr()
    assert main(["bundle", "list"]) == 0
    listing = capsys.readouterr().out
    assert "current" in listing and "previous" in listing and listing.count(str(store)) == 2


def test_corrupted_bundle_is_refused_and_nothing_changes(synthetic, store, tmp_path, capsys):
    assert main(["bundle", "install", str(_release(synthetic, tmp_path, "a" * 64))]) == 0
    before = sorted(os.listdir(store)), installed_bundle()
    bad = _release(synthetic, tmp_path, "b" * 64)
    shard = _corrupt(bad)
    assert main(["bundle", "install", str(bad)]) == 78
    err = capsys.readouterr().err
    assert shard.name in err and "sha256" in err
    assert (sorted(os.listdir(store)), installed_bundle()) == before


def test_archives_install_and_unsafe_members_are_refused(synthetic, store, tmp_path, capsys):
    archive = tmp_path / "release.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(_release(synthetic, tmp_path, "d" * 64), arcname="musicbox-bundle")
    assert main(["bundle", "install", str(archive)]) == 0
    installed = json.loads((installed_bundle() / "manifest.json").read_text())
    assert installed["model"]["provenance"]["checkpoint_sha256"] == "d" * 64
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../../etc/owned")
        tar.addfile(info)
    assert main(["bundle", "install", str(evil)]) == 78
    assert "refusing archive member" in capsys.readouterr().err
    assert main(["bundle", "rollback"]) == 0  # before it: the shipped bundle
    assert installed_bundle() is None and resolve_bundle(None) == shipped_bundle()
    assert main(["bundle", "rollback", "--shipped"]) == 78  # it is current already
    assert "is current already" in capsys.readouterr().err


def test_version_names_the_bundle_model_date_and_precision(synthetic, store, tmp_path, capsys):
    assert main(["bundle", "install", str(_release(synthetic, tmp_path, "e" * 64, "2026-03-04"))]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert out.startswith("musicbox ") and str(installed_bundle()) in out
    assert "synthetic" in out and "trained 2026-03-04" in out and "precision: auto (bundle holds fp32)" in out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed")
def test_box_keeps_playing_while_a_corrupted_bundle_is_refused(synthetic, store, tmp_path):
    assert main(["bundle", "install", str(_release(synthetic, tmp_path, "a" * 64))]) == 0
    playing = installed_bundle()
    config = tmp_path / "box.toml"
    config.write_text(f'[knobs]\nbackend = "none"\n[recording]\nfolder = "{tmp_path}/rec"\n')
    stats = tmp_path / "stats.json"
    with JackDummy(name=f"mbstore{os.getpid()}"):
        cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--seconds", "14"]
        play = subprocess.Popen(
            [*cmd, "--stats", str(stats)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 60
        while _bars_played(stats) < 1:
            assert time.monotonic() < deadline and play.poll() is None, "the box never played a bar"
            time.sleep(0.1)  # the box is playing when the bad bundle comes
        bad = _release(synthetic, tmp_path, "b" * 64)
        _corrupt(bad)
        refused = subprocess.run(
            [sys.executable, "-m", "musicbox.cli", "bundle", "install", str(bad)],
            capture_output=True,
            text=True,
        )
        out = play.communicate(timeout=60)[0]
    assert refused.returncode == 78, refused.stderr
    assert play.returncode == 0, out
    assert f"bundle {playing}" in out or str(playing) in out
    final = json.loads(stats.read_text())
    assert final["bars_played"] >= 4 and final["underruns"] == 0 and final["worker_restarts"] == 0, final
    assert installed_bundle() == playing


def _bars_played(stats: Path) -> int:
    """What the box's --stats file says it played so far (0 before it is written)."""
    try:
        return int(json.loads(stats.read_text())["bars_played"])
    except (OSError, ValueError, KeyError):
        return 0
