"""What this CPU can do for INT8 (no onnxruntime here: the box's main process and ``doctor`` read it too).

ARM's dot-product extension (``asimddp``: Cortex-A76 in the Pi 5, Orin's A78AE; not the Pi 4's A72 nor the
Nano's A57) and x86's VNNI are what make INT8 MatMuls faster than FP32.
"""

from __future__ import annotations

from pathlib import Path

DOT_PRODUCT_FLAGS = ("asimddp", "dotprod", "avx512_vnni", "avx_vnni")


def cpu_dot_product(cpuinfo: str | None = None) -> str | None:
    """The int8 dot-product flag this CPU advertises in /proc/cpuinfo (``asimddp``, ``avx512_vnni``,
    ...), or None (Pi 4's Cortex-A72, older x86, or no /proc). ``cpuinfo``: that file's text, if read."""
    try:
        text = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return next((f for f in DOT_PRODUCT_FLAGS if f in flags), None)
