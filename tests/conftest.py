"""Suite-wide pytest hooks: the run's wall time, printed under pytest's summary."""

from __future__ import annotations

import time

BUDGET_S = 15 * 60  # the default run (the README's test command) stays well under this on 2 cores
_START = time.perf_counter()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    elapsed = time.perf_counter() - _START
    terminalreporter.write_sep(
        "=", f"suite wall time {elapsed:.1f} s (the default run's budget: {BUDGET_S} s on 2 cores)"
    )
