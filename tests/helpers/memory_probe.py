"""Run a bundle's denoiser twice in a fresh process and report its memory (for tests/test_bundle.py).

usage: python memory_probe.py BUNDLE BUDGET_MB|none OUT.npy
Prints one JSON line: ``baseline_mb`` (VmRSS after opening the bundle, before any session), ``peak_mb``
(VmHWM at the end), ``loads`` (sessions created) and ``mode``; saves the two outputs ``v`` to OUT.npy.
"""

import gc
import json
import sys

import numpy as np

from musicbox.runtime.bundle import Bundle, synthetic_feeds


def status(key: str) -> float:
    """A /proc/self/status memory figure in MiB."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(key + ":"))
    return int(line.split()[1]) / 1024


path, budget, out = sys.argv[1:4]
bundle = Bundle.open(path, precision="fp32", memory_budget_mb=None if budget == "none" else float(budget))
feeds = synthetic_feeds(bundle.variant.denoiser[0])
gc.collect()
base = status("VmRSS")
v = [bundle.run_denoiser(feeds) for _ in range(2)]
report = {
    "baseline_mb": base,
    "peak_mb": status("VmHWM"),
    "loads": bundle.sessions.loads,
    "mode": bundle.mode,
}
print(json.dumps(report))
np.save(out, np.stack(v))
