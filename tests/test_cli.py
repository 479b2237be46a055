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
