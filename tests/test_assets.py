"""The weights in the repository: the shipped bundle and checkpoint only, each file listed with its sha256
in assets/SHA256SUMS, no torch pickle anywhere, and assets/ small enough for every clone
(docs/design.md, "Weights in the repository")."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
SHIPPED = ("bundle", "checkpoint")
MAX_TRACKED_MB = 60


def sums(text: str) -> dict[str, str]:
    """``sha256sum`` output -> {path relative to assets/: hex digest}."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        assert sep and len(digest) == 64, f"assets/SHA256SUMS:{n}: not a sha256sum line: {line!r}"
        out[name] = digest
    return out


def tracked(*paths: str) -> list[str]:
    cmd = ["git", "ls-files", "-z", "--", *paths]
    return [
        p
        for p in subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
        if p
    ]


def problems(assets: Path) -> list[str]:
    """What in ``assets`` disagrees with its SHA256SUMS: files not listed, listed files missing, changed."""
    listed = sums((assets / "SHA256SUMS").read_text())
    present = {
        p.relative_to(assets).as_posix() for d in SHIPPED for p in (assets / d).rglob("*") if p.is_file()
    }
    out = [f"not listed: {n}" for n in sorted(present - set(listed))]
    out += [f"listed, missing: {n}" for n in sorted(set(listed) - present)]
    changed = [n for n in sorted(present & set(listed))
               if hashlib.sha256((assets / n).read_bytes()).hexdigest() != listed[n]]  # fmt: skip
    return out + [f"changed: {n}" for n in changed]


def test_sha256sums_lists_every_shipped_file_with_its_hash():
    assert not problems(ASSETS), "assets/SHA256SUMS disagrees with the files; rewrite it (docs/design.md)"


def test_a_changed_an_unlisted_and_a_missing_file_are_named(tmp_path):
    listed = sums((ASSETS / "SHA256SUMS").read_text())
    keep = ("checkpoint/config.json", "bundle/manifest.json")
    for name in keep:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((ASSETS / name).read_bytes())
    lines = [f"{listed[n]}  {n}" for n in (*keep, "bundle/fp32/encoder.onnx")]
    (tmp_path / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    assert problems(tmp_path) == ["listed, missing: bundle/fp32/encoder.onnx"]
    data = bytearray((tmp_path / keep[0]).read_bytes())
    data[-1] ^= 1
    (tmp_path / keep[0]).write_bytes(bytes(data))
    (tmp_path / "bundle/extra.onnx").write_bytes(b"x")
    assert problems(tmp_path) == [
        "not listed: bundle/extra.onnx",
        "listed, missing: bundle/fp32/encoder.onnx",
        "changed: checkpoint/config.json",
    ]


def test_git_tracks_only_the_shipped_weights_and_no_pickles():
    assets = tracked("assets")
    assert all(p == "assets/SHA256SUMS" or p.split("/")[1] in SHIPPED for p in assets), assets
    assert not tracked("*.pt", "*.pth", "*.ckpt", "*.pkl")
    size = sum((ROOT / p).stat().st_size for p in assets if (ROOT / p).exists())
    assert size <= MAX_TRACKED_MB * 2**20, f"assets/ holds {size / 2**20:.0f} MiB (at most {MAX_TRACKED_MB})"


def test_git_ignores_runs_outputs_pickles_and_other_asset_folders():
    probes = ["runs/x/state.pt", "out/bundle/manifest.json", "model.pt", "assets/candidate/model.safetensors"]
    ignored = subprocess.run(
        ["git", "check-ignore", *probes], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert ignored.split() == probes
    kept = subprocess.run(["git", "check-ignore", "assets/bundle/manifest.json", "assets/checkpoint/config.json"],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert kept.returncode == 1 and not kept.stdout  # 1: none of them is ignored
