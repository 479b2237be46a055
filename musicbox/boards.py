"""The boards the box runs on: their pin maps, and which one this is.

A board's pin map is ``firmware_config/boards/<name>.toml``: the BCM GPIO pins free for knobs and buttons,
the SPI buses for the ADC, what uses the other pins, the knob backend ``auto`` picks, and the device-tree
strings that identify the board. This machine's board is the one whose ``match``/``compatible`` lists meet
its device tree (``/proc/device-tree/model`` and ``compatible``); "none" when no board file does.

A board's memory class (:data:`MEMORY_CLASSES`, the one home of these numbers) is how much RAM it has and
how much of it the box may use: boards of one pin map come with different RAM (a Pi 4 with 1 to 8 GB, a
Zero 2 W with 512 MB on the Pi 4's header). ``[board] memory`` names the class ("auto": this machine's,
:func:`detect_memory_class`); the box's memory check (``runtime/buffering.py``) refuses a configuration
that needs more than the class allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from musicbox.firmware import fail, firmware_dir, read_toml, show

BOARD_NAMES = ("auto", "pi4", "pi5", "jetson-nano", "jetson-orin", "none")


@dataclass(frozen=True)
class MemoryClass:
    """Boards with ``ram_mb`` MiB of RAM, of which the box may use ``box_mb`` (the rest: the kernel, the
    GPU's share, systemd, journald, sshd, avahi and the page cache SAVE writes through). ``match``:
    device-tree model substrings that identify the class whatever MemTotal says."""

    name: str
    label: str
    ram_mb: int
    box_mb: int
    match: tuple[str, ...] = ()


MEMORY_CLASSES: tuple[MemoryClass, ...] = (
    MemoryClass(
        "512m", "512 MB (Raspberry Pi Zero 2 W, Pi 3 A+)", 512, 400, ("Raspberry Pi Zero 2", "Pi 3 Model A")
    ),
    MemoryClass("1g", "1 GB (Raspberry Pi 3 B/B+, Pi 4 1 GB)", 1024, 800),
    MemoryClass("2g", "2 GB (Raspberry Pi 4/5 2 GB, Jetson Nano 2 GB)", 2048, 1600),
    MemoryClass("4g", "4 GB (Raspberry Pi 4/5 4 GB, Jetson Nano 4 GB, Orin Nano 4 GB)", 4096, 3200),
    MemoryClass("8g", "8 GB (Raspberry Pi 4/5 8 GB, Jetson Orin Nano 8 GB)", 8192, 6400),
    MemoryClass("16g", "16 GB (Raspberry Pi 5 16 GB, Jetson Orin NX 16 GB)", 16384, 13000),
)
MEMORY_NAMES = ("auto", *(c.name for c in MEMORY_CLASSES), "none")
"""``[board] memory``: auto (this machine's class), a class, or none (no board budget: a build host)."""


@dataclass(frozen=True)
class BoardConfig:
    """A board's pin map (``firmware_config/boards/<name>.toml``), or the empty map of board "none".

    pins: BCM GPIO numbers free for knobs and buttons. spi: ``(port, chip select)`` pairs for the ADC.
    reserved: what uses the other pins (name -> pins). backend: the knob backend ``auto`` picks.
    match: substrings of the device tree's model string; compatible: device-tree compatible entries.
    """

    name: str
    label: str
    backend: str
    pins: tuple[int, ...] = ()
    spi: tuple[tuple[int, int], ...] = ()
    reserved: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    match: tuple[str, ...] = ()
    compatible: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        """True for a real board with a pin map (pins are then checked against it)."""
        return self.name != "none"


NO_BOARD = BoardConfig(name="none", label="no GPIO board", backend="terminal")


def load_board(name: str) -> BoardConfig:
    """The pin map of board ``name``; "auto" is this machine's board (:func:`detect_board_name`)."""
    if name == "auto":
        name = detect_board_name()
    if name == "none":
        return NO_BOARD
    return _load_board_file(firmware_dir() / "boards" / f"{name}.toml")


def memory_class(name: str, root: Path = Path("/")) -> MemoryClass | None:
    """The memory class called ``name`` ("auto": this machine's, :func:`detect_memory_class`; "none" or a
    machine larger than every class: None, no board budget)."""
    if name == "auto":
        return detect_memory_class(root)
    return next((c for c in MEMORY_CLASSES if c.name == name), None)


def detect_memory_class(root: Path = Path("/")) -> MemoryClass | None:
    """This machine's memory class: the one whose ``match`` meets the device tree's model, else the
    smallest whose RAM is at least MemTotal (which is a little less than the RAM fitted: the kernel's
    and the GPU's share are not in it); None without /proc/meminfo or above the largest class."""
    model = read_model(root)
    for c in MEMORY_CLASSES:
        if any(m in model for m in c.match):
            return c
    total_mb = mem_total_mb(root)
    if total_mb is None:
        return None
    return next((c for c in MEMORY_CLASSES if total_mb <= c.ram_mb), None)


def mem_total_mb(root: Path = Path("/")) -> float | None:
    """MemTotal of ``/proc/meminfo`` in MiB (None when unreadable)."""
    for line in read_text(root / "proc/meminfo").splitlines():
        key, _, value = line.partition(":")
        if key == "MemTotal" and value.split() and value.split()[0].isdigit():
            return int(value.split()[0]) / 1024
    return None


def board_files() -> list[Path]:
    """Every board pin map shipped in ``firmware_config/boards``."""
    return sorted((firmware_dir() / "boards").glob("*.toml"))


def detect_board_name(root: Path = Path("/")) -> str:
    """The name of the board file matching this device tree (or the one under ``root``), or "none"."""
    model, compatible = read_model(root), set(read_compatible(root))
    for path in board_files():
        board = load_board(path.stem)
        if any(m in model for m in board.match) or compatible & set(board.compatible):
            return board.name
    return "none"


def read_model(root: Path = Path("/")) -> str:
    """The device tree's model string ("Raspberry Pi 4 Model B Rev 1.4"), "" without a device tree."""
    for rel in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        text = read_text(root / rel).strip("\0\n ")
        if text:
            return text
    return ""


def read_compatible(root: Path = Path("/")) -> tuple[str, ...]:
    """The device tree's ``compatible`` entries ("brcm,bcm2711", "nvidia,tegra210", ...)."""
    for rel in ("proc/device-tree/compatible", "sys/firmware/devicetree/base/compatible"):
        text = read_text(root / rel)
        if text:
            return tuple(part for part in text.split("\0") if part)
    return ()


def read_text(path: Path) -> str:
    """A /proc or /sys file as text ("" when it cannot be read: not every machine has it)."""
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


@lru_cache(maxsize=16)
def _load_board_file(path: Path) -> BoardConfig:
    doc = read_toml(path)
    _require(path, doc, "name", str)
    _require(path, doc, "label", str)
    _require(path, doc, "backend", str)
    pins = _int_list(path, doc, "pins")
    spi = tuple(tuple(p) for p in _require(path, doc, "spi", list))
    reserved = _require(path, doc, "reserved", dict)
    return BoardConfig(
        name=doc["name"],
        label=doc["label"],
        backend=doc["backend"],
        pins=pins,
        spi=spi,
        reserved={k: _int_list(path, reserved, k, f"reserved.{k}") for k in reserved},
        match=tuple(_require(path, doc, "match", list)),
        compatible=tuple(_require(path, doc, "compatible", list)),
    )


def _require(path: Path, doc: dict, key: str, typ: type, label: str | None = None):
    if not isinstance(doc.get(key), typ):
        fail(path, label or key, f"got {show(doc.get(key))}", f"a {typ.__name__}")
    return doc[key]


def _int_list(path: Path, doc: dict, key: str, label: str | None = None) -> tuple[int, ...]:
    values = _require(path, doc, key, list, label)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        fail(path, label or key, f"got {show(values)}", "a list of BCM pin numbers")
    return tuple(values)
