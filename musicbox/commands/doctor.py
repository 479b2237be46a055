"""`musicbox doctor`: one table saying whether this machine is ready to be a music box, with fixes.

Rows: config, board, CPU features (dot-product -> INT8 or FP32), audio devices, SoundFont, knob backend,
bundle files and hashes, free memory, free disk, systemd service, the web remote (its pairing code). Exit status 0 when no row fails
(warnings allowed), 1 otherwise. ``--json`` prints the rows as a JSON list instead.
"""

from __future__ import annotations

STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def register(sub):
    p = sub.add_parser(
        "doctor", help="check this machine: board, CPU, audio, SoundFont, knobs, bundle, service"
    )
    p.add_argument("--config", metavar="FILE", help="musicbox.toml to check (default: the usual search)")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    import json

    from musicbox.device.doctor import FAIL, run_checks
    from musicbox.remote.doctor import check_remote

    checks = run_checks(args.config, more=[("remote", check_remote)])
    if args.json:
        print(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        _print_table(checks)
    return 1 if any(c.status == FAIL for c in checks) else 0


def _print_table(checks) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="musicbox doctor")
    table.add_column("check", style="bold")
    table.add_column("status")
    table.add_column("found", overflow="fold")
    table.add_column("fix", overflow="fold")
    for c in checks:  # Text, not markup: details and fixes contain [section] names
        table.add_row(c.name, Text(c.status, style=STATUS_STYLE[c.status]), Text(c.detail), Text(c.fix))
    Console().print(table)
