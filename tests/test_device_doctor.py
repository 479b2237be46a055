"""`musicbox doctor`: every row present, every failing row explains its fix, JSON output, never a crash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from musicbox.cli import main
from musicbox.config import load_config
from musicbox.device import doctor
from musicbox.errors import BundleError

ROWS = ["config", "board", "cpu", "audio", "soundfont", "knobs", "bundle", "memory", "disk", "service"]


def test_every_row_and_every_failure_has_a_fix(tmp_path):
    bad = tmp_path / "box.toml"
    bad.write_text("[knobs]\nspeed = 3\n")
    checks = doctor.run_checks(bad)
    assert [c.name for c in checks] == ROWS
    assert checks[0].status == "fail" and "knobs.speed" in checks[0].detail  # and the rest still ran
    for c in checks:
        assert c.status in ("ok", "warn", "fail")
        assert c.status == "ok" or c.fix or c.name == "memory", c


def test_json_output_and_exit_status(capsys, tmp_path):
    status = main(["doctor", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [*ROWS, "remote"]  # the command adds the web remote's row
    assert status == (1 if any(r["status"] == "fail" for r in rows) else 0)


def test_table_output(capsys):
    main(["doctor"])
    out = capsys.readouterr().out
    assert "musicbox doctor" in out and "[bundle]" in out or "bundle" in out


def write_bundle(root: Path, payload: bytes, sha: str) -> None:
    root.mkdir()
    (root / "fp32").mkdir()
    (root / "fp32/decoder.onnx").write_bytes(payload)
    manifest = {
        "variants": {"fp32": {"decoder": {"file": "fp32/decoder.onnx", "sha256": sha, "bytes": len(payload)}}}
    }
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_bundle_hashes_without_the_runtime(tmp_path):
    good = tmp_path / "good"
    write_bundle(good, b"onnx", hashlib.sha256(b"onnx").hexdigest())
    assert doctor._hash_manifest_files(good) == 1
    bad = tmp_path / "bad"
    write_bundle(bad, b"onnx", "0" * 64)
    with pytest.raises(BundleError, match="sha256 differs"):
        doctor._hash_manifest_files(bad)


def test_bundle_row_fails_with_its_fix(tmp_path):
    box = tmp_path / "box.toml"
    box.write_text(f'[bundle]\npath = "{tmp_path / "nowhere"}"\n')
    row = doctor.check_bundle(load_config(box))
    assert row.status == "fail" and "no manifest.json" in row.detail and "musicbox quantize" in row.fix


def test_memory_row_from_meminfo(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text("MemTotal: 262144 kB\nMemAvailable: 102400 kB\n")
    row = doctor.check_memory(load_config(Path(doctor.firmware_dir() / "musicbox.toml")), tmp_path)
    assert row.status == "fail" and "100 MiB available" in row.detail and "minutes_kept" in row.fix
    assert "SAVE buffer 101 MiB" in row.detail  # the 10 minutes SAVE keeps, as configured


def test_memory_row_fails_when_the_config_needs_more_than_the_unit_allows(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text("MemTotal: 8388608 kB\nMemAvailable: 8000000 kB\n")
    box = tmp_path / "box.toml"
    box.write_text("[audio]\nbuffer_bars = 64\n[knobs]\nmin_bpm = 20.0\n")
    row = doctor.check_memory(load_config(box), tmp_path)
    assert row.status == "fail" and "MemoryMax=512M" in row.detail and "bar ring 529 MiB" in row.detail


def test_a_crashing_check_is_a_failing_row():
    def broken():
        raise RuntimeError("boom")

    row = doctor._safely("audio", broken)
    assert (row.name, row.status) == ("audio", "fail") and "RuntimeError: boom" in row.detail
