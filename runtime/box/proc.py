"""What the box's processes use, read from /proc (Linux): resident memory and CPU time of a process tree."""

from __future__ import annotations

import os
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int | None) -> float | None:
    """Resident set size of ``pid`` in MiB (from /proc; None if it is gone or never started)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 2)


def tree_cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) used by ``pid`` (default: this process) and all its descendants, the
    live ones and those already reaped (their time is in their parent's cutime/cstime): for the box, the
    main process, the fork server, the resource tracker and every worker that ever ran."""
    pid = os.getpid() if pid is None else pid
    total = 0.0
    stack = [pid]
    while stack:
        p = stack.pop()
        fields = _stat_fields(p)
        if fields is None:
            continue  # gone meanwhile: its time is in its parent's cutime once reaped
        total += sum(int(v) for v in fields[11:15]) * _TICK_S  # utime stime cutime cstime
        stack.extend(_children(p))
    return total


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (field 3 onwards), or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return out
