"""`musicbox bundle pack` -> `install` -> install of a changed manifest -> `rollback` -> back to the shipped
bundle, each step checked by what the box would open; and every bad input to `install` one line with
exit 78 and the store as it was (issue 32 item 4, issue 33 item 3)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from musicbox.cli import main
from musicbox.config import installed_bundle, resolve_bundle, shipped_bundle
from musicbox.runtime.bundle_files import verify_bundle
from musicbox.runtime.manifest import load_manifest
from tests.helpers.synthetic_bundle import build_bundle


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "store"
    monkeypatch.setenv("MUSICBOX_BUNDLE_STORE", str(path))
    return path


def _playing() -> tuple[Path, str]:
    """The folder a plain `musicbox play` opens and its manifest's dataset (what tells the bundles apart),
    after checking every file of it."""
    root = resolve_bundle(None)
    check = verify_bundle(root)
    return root, check.manifest.model.provenance.dataset


def _state(store: Path) -> tuple[list[str], Path | None]:
    return sorted(os.listdir(store)) if store.exists() else [], installed_bundle()


def test_pack_install_a_changed_manifest_rollback_and_back_to_the_shipped_bundle(
    synthetic, store, tmp_path, capsys
):
    archive = tmp_path / "musicbox-bundle.tar.gz"
    assert main(["bundle", "pack", str(synthetic), "--out", str(archive)]) == 0
    assert f"-> {archive}" in capsys.readouterr().out
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert {m.uid for m in members} == {0} and all(m.isfile() or m.isdir() for m in members)
    assert members[0].name == "synthetic" and all(m.name.startswith("synthetic") for m in members)

    shipped = _playing()
    assert main(["bundle", "install", str(archive)]) == 0
    first = _playing()
    assert (
        first[0].parent == store
        and first[1] == load_manifest(synthetic / "manifest.json").model.provenance.dataset
    )
    assert "installed" in capsys.readouterr().out

    assert main(["bundle", "install", str(archive)]) == 0  # the very same bundle: said, not silently skipped
    assert "is the current bundle already" in capsys.readouterr().out and _playing() == first

    changed = tmp_path / "changed"
    shutil.copytree(synthetic, changed)
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["model"]["provenance"]["dataset"] = "another-dataset"  # same checkpoint, a new manifest
    (changed / "manifest.json").write_text(json.dumps(manifest))
    assert main(["bundle", "install", str(changed)]) == 0
    second = _playing()
    assert second[1] == "another-dataset" and second[0] != first[0]
    assert "installed" in capsys.readouterr().out

    assert main(["bundle", "rollback"]) == 0
    assert _playing() == first
    assert main(["bundle", "rollback", "--shipped"]) == 0
    assert _playing() == shipped and shipped[0] == shipped_bundle() and installed_bundle() is None
    assert "the shipped bundle" in capsys.readouterr().out
    assert main(["bundle", "rollback"]) == 0  # and back again: previous is the one left
    assert _playing() == first
    capsys.readouterr()
    assert main(["bundle", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert (
        [line.split()[0] for line in listing if line.split()[0] in ("current", "previous")]
        == [
            "current",
            "previous",
        ]
        and "(shipped with musicbox)" in listing[-1]
        and listing[-1].split()[0] == "previous"
    )


def _truncated(synthetic: Path, tmp_path: Path, mode: str) -> Path:
    archive = tmp_path / f"bundle.{mode or 'tar'}"
    with tarfile.open(archive, f"w:{mode}") as tar:
        tar.add(synthetic, arcname="bundle")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    return archive


def _with(synthetic: Path, tmp_path: Path, what: str) -> Path:
    folder = tmp_path / f"with-{what}"
    shutil.copytree(synthetic, folder)
    outside = tmp_path / "secret.txt"
    outside.write_text("not the bundle's")
    if what == "symlink-out":
        (folder / "fp32" / "notes.txt").symlink_to(outside)
    elif what == "fifo":
        os.mkfifo(folder / "pipe")
    elif what == "hardlink":
        os.link(outside, folder / "secret.txt")
    elif what == "symlinked-folder":
        (folder / "more").symlink_to(tmp_path, target_is_directory=True)
    return folder


BAD = {
    "truncated .tar": (lambda s, t: _truncated(s, t, ""), "damaged or truncated"),
    "truncated .tar.gz": (lambda s, t: _truncated(s, t, "gz"), "damaged or truncated"),
    "missing path": (lambda s, t: t / "no-such-bundle.tar.gz", "no such file or folder"),
    "folder with a link out": (lambda s, t: _with(s, t, "symlink-out"), "a symbolic link"),
    "folder with a linked folder": (lambda s, t: _with(s, t, "symlinked-folder"), "a symbolic link"),
    "folder with a FIFO": (lambda s, t: _with(s, t, "fifo"), "a special file"),
    "folder with a hard link": (lambda s, t: _with(s, t, "hardlink"), "a hard link"),
    "not a bundle": (lambda s, t: Path("/dev/null"), "neither a bundle folder nor"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_every_bad_input_is_one_line_exit_78_and_the_store_is_untouched(
    synthetic, store, tmp_path, capsys, case
):
    assert main(["bundle", "install", str(synthetic)]) == 0
    before = _state(store)
    capsys.readouterr()
    make, says = BAD[case]
    source = make(synthetic, tmp_path)
    assert main(["bundle", "install", str(source)]) == 78
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("musicbox: error: ") and says in lines[0], out.err
    assert _state(store) == before


def test_the_command_itself_prints_no_traceback(synthetic, store, tmp_path):
    archive = _truncated(synthetic, tmp_path, "gz")
    result = subprocess.run(
        [sys.executable, "-m", "musicbox.cli", "bundle", "install", str(archive)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 78 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "damaged or truncated" in result.stderr


def test_a_store_it_cannot_write_is_a_clear_error(synthetic, store, capsys):
    if os.geteuid() == 0:
        store.parent.joinpath("file").write_text("")
        os.environ["MUSICBOX_BUNDLE_STORE"] = str(store.parent / "file" / "store")  # monkeypatch restores
    else:
        store.mkdir()
        store.chmod(0o555)
    assert main(["bundle", "install", str(synthetic)]) == 78
    assert "cannot write there" in capsys.readouterr().err
