"""runtime/heap.py: with reuse_freed, arrays of a bar's size freed and allocated again reuse the heap's
pages instead of faulting fresh ones in (a real process, its page faults read from /proc)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROUNDS = 20

# Three 2 MiB arrays a round (a bar's PCM and temporaries), each touched, all freed: glibc's adaptive
# thresholds trim the freed top of the heap every round, so each round faults its 6 MiB in again.
_SCRIPT = f"""
import sys
import numpy as np
from musicbox.runtime.heap import reuse_freed
if sys.argv[1] == "reuse":
    reuse_freed()
def faults():
    with open("/proc/self/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])
for _ in range(3):  # warm up: numpy's own first allocations, the heap grown once
    arrays = [np.ones(1 << 18) for _ in range(3)]
    del arrays
before = faults()
for _ in range({ROUNDS}):
    arrays = [np.ones(1 << 18) for _ in range(3)]
    del arrays
print(faults() - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads page faults from Linux's /proc")
def test_reuse_freed_keeps_a_bars_freed_arrays_for_the_next_bar():
    pages = ROUNDS * 3 * (2 << 20) // 4096  # what faulting every round in again costs
    default, reused = _faults("default"), _faults("reuse")
    assert reused < pages // 20, f"{reused} page faults over {ROUNDS} rounds with reuse_freed"
    assert default > pages // 4, f"glibc's defaults faulted only {default} (the test no longer tests)"
