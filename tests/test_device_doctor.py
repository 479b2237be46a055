"""`musicbox doctor`: every row present, every failing row explains its fix, JSON output, never a crash."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicbox.cli import main
from musicbox.config import load_config
from musicbox.device import doctor

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


def test_bundle_row_checks_every_file_with_the_typed_reader_and_no_onnxruntime(tmp_path):
    from tests.helpers.synthetic_bundle import build_bundle

    root = build_bundle(tmp_path / "bundle")
    box = tmp_path / "box.toml"
    box.write_text(f'[bundle]\npath = "{root}"\n')
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"  # any import of it now fails
        "from musicbox.config import load_config\nfrom musicbox.device.doctor import check_bundle\n"
        f"row = check_bundle(load_config({str(box)!r})); print(row.status, row.detail)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("ok ") and "sizes and sha256 match (digest " in out.stdout, out.stderr
    shard = next((root / "fp32").glob("denoiser*.onnx"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    row = doctor.check_bundle(load_config(box))
    assert row.status == "fail" and shard.name in row.detail and "sha256 differs" in row.detail
    (root / "manifest.json").write_text('{"format_version": 3}')
    row = doctor.check_bundle(load_config(box))
    assert row.status == "fail" and "$.model is missing" in row.detail


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


def _remote_row(config: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "musicbox.cli", "doctor", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return next(row for row in json.loads(out.stdout) if row["name"] == "remote")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed")
def test_doctor_shows_the_live_pairing_code_of_a_box_playing_with_remote(tmp_path):
    """Issue 32: with `play --remote` (the config leaves [remote] enabled off) doctor said "off" and showed
    no code. A real box plays under a JACK dummy server; doctor, another process, reads the code it shows."""
    from musicbox.runtime.box.soak import JackDummy
    from tests.helpers.synthetic_bundle import build_bundle

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = tmp_path / "st"
    config = tmp_path / "box.toml"
    config.write_text(
        f'[knobs]\nbackend = "none"\n[recording]\nfolder = "{tmp_path}/rec"\n'
        f'[bundle]\npath = "{build_bundle(tmp_path / "bundle")}"\n'
        f'[remote]\nbind = "127.0.0.1"\nport = {port}\nstate_dir = "{state}"\nstream = false\n'
    )
    assert "off" in _remote_row(config)["detail"]
    play = [
        sys.executable,
        "-m",
        "musicbox.cli",
        "play",
        "--remote",
        "--config",
        str(config),
        "--seconds",
        "60",
    ]
    with JackDummy(name=f"mbdoctor{os.getpid()}"):
        box = subprocess.Popen(play, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not (state / "pairing.json").exists():
                assert box.poll() is None and time.monotonic() < deadline, box.stderr.read()
                time.sleep(0.1)
            row = _remote_row(config)
            code = json.loads((state / "pairing.json").read_text())["code"]
            assert row["status"] == "ok", row
            assert (
                f"running (pid {box.pid}): open http://127.0.0.1:{port}/ and pair with code {code}"
                == row["detail"]
            )
        finally:
            box.terminate()
            box.communicate(timeout=30)
    assert "off" in _remote_row(config)["detail"]  # the box is gone: its file no longer counts


def test_a_running_box_whose_page_does_not_answer_is_a_warning_with_the_fix(tmp_path):
    """What PrivateNetwork=yes under the service looked like: the box runs, its port answers nobody."""
    from musicbox.remote.doctor import check_remote

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "pairing.json").write_text(
        json.dumps({"url": f"http://127.0.0.1:{port}/", "code": "123456", "pid": os.getpid()})
    )
    box = tmp_path / "box.toml"
    box.write_text(f'[remote]\nstate_dir = "{tmp_path / "st"}"\n')
    row = check_remote(load_config(box))
    assert row.status == "warn" and "code 123456" in row.detail and "does not answer" in row.detail
    assert "install-service" in row.fix
