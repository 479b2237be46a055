"""The command line itself: global flags on either side of the command, style names in the help."""

from __future__ import annotations

import pytest

from musicbox.cli import build_parser, main


@pytest.mark.parametrize(
    "argv, verbose",
    [
        (["play", "-v", "--seconds", "1"], True),
        (["-v", "play", "--seconds", "1"], True),
        (["play", "--verbose"], True),
        (["play", "--seconds", "1"], False),
        (["render", "--seconds", "1", "--out", "a.wav", "-v"], True),
    ],
)
def test_verbose_before_or_after_the_command(argv, verbose):
    assert build_parser().parse_args(argv).verbose is verbose


@pytest.mark.parametrize("argv", [["--help"], ["render", "--help"], ["play", "--help"]])
def test_help_lists_the_shipped_styles(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "0 chorale, 1 renaissance, 2 quartet, 3 folk, 4 celtic" in out


def test_bench_table_gives_units_and_says_why_a_figure_fails(capsys, monkeypatch):
    from musicbox.commands import bench

    results = {
        "int8_speedup_per_bar": {"value": 1.66, "target": ">= 2.0", "ok": False},
        "peak_rss_mb": {"value": 120.0, "target": "<= 150.0", "ok": True},
        "knob_to_change_bars": {"value": None, "target": "<= 1.0", "ok": False},
    }
    assert bench.verdict("int8_speedup_per_bar", results["int8_speedup_per_bar"]) == (
        "NO: 1.66 is below the target 2 (off by 0.34)"
    )
    monkeypatch.setenv("COLUMNS", "250")
    bench._print_table({"results": results, "details": {"generation": {}}})
    out = capsys.readouterr().out
    assert "MiB" in out and "FP32 / INT8 seconds per bar" in out  # each row's unit
    assert "NO: 1.66 is below the target 2" in out and "NO: never happened" in out


@pytest.mark.parametrize("argv", [["--version"], ["bundle", "list"]])
def test_a_closed_pipe_ends_quietly(argv):
    """`musicbox --version | head -1` ended in a BrokenPipe traceback; the reader here is gone before
    the command writes a byte, so every run meets the closed pipe."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "musicbox.cli", *argv], stdout=write_end, stderr=subprocess.PIPE, text=True
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141 and result.stderr == "", result.stderr
