"""Which board this is, and what its CPU can do.

The board comes from the device tree (:func:`musicbox.boards.detect_board_name`); the CPU features from the
``Features`` (ARM) or ``flags`` (x86) line of ``/proc/cpuinfo``. ARM's dot-product extension (``asimddp``:
Cortex-A76 in the Pi 5, Orin's A78AE; not the Pi 4's A72 nor the Nano's A57) is what makes INT8 faster
than FP32 on these boards, so it decides the bundle precision that ``auto`` picks.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from musicbox.boards import detect_board_name, read_model, read_text
from musicbox.runtime.cpu import DOT_PRODUCT_FLAGS


@dataclass(frozen=True)
class BoardInfo:
    """What :func:`detect_board` found.

    name: pi4 | pi5 | jetson-nano | jetson-orin | none (no known GPIO board). model: the device tree's
    model string, or the platform's description. machine: ``uname -m``. cpu_features: the CPU flags.
    cores: logical CPUs.
    """

    name: str
    model: str
    machine: str
    cpu_features: frozenset[str]
    cores: int

    @property
    def is_arm(self) -> bool:
        """True when the CPU features are ARM ones (``asimd`` / ``neon``)."""
        return bool({"asimd", "neon"} & self.cpu_features)

    @property
    def dotprod(self) -> bool:
        """ARM dot-product instructions (``asimddp``, SDOT/UDOT): fast INT8 matrix products."""
        return "asimddp" in self.cpu_features

    @property
    def int8_fast(self) -> bool:
        """INT8 beats FP32 here: the CPU has int8 dot-product instructions (ARM ``asimddp``, x86 VNNI), the
        same flags ``Bundle.open(precision="auto")`` looks for before its self-benchmark."""
        return bool(set(DOT_PRODUCT_FLAGS) & self.cpu_features)

    @property
    def recommended_precision(self) -> str:
        """The bundle precision ``auto`` means on this CPU: "int8" or "fp32"."""
        return "int8" if self.int8_fast else "fp32"


def cpu_features(root: Path = Path("/")) -> frozenset[str]:
    """The CPU feature flags of the first CPU in ``/proc/cpuinfo`` (empty if unreadable)."""
    for line in read_text(root / "proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("features", "flags"):
            return frozenset(value.split())
    return frozenset()


def cpu_model(root: Path = Path("/")) -> str:
    """The CPU's name from ``/proc/cpuinfo`` ("model name" on x86, "Model" on a Pi), "" if absent."""
    for line in read_text(root / "proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return ""


def detect_board(root: Path = Path("/")) -> BoardInfo:
    """Board name, model, machine, CPU features and core count of this machine (or of a fake ``root``)."""
    return BoardInfo(
        name=detect_board_name(root),
        model=read_model(root) or cpu_model(root) or platform.platform(),
        machine=platform.machine(),
        cpu_features=cpu_features(root),
        cores=os.cpu_count() or 1,
    )
