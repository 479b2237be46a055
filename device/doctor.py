"""`musicbox doctor`: is this machine ready to be a music box? One check per row, each with its fix.

Every check returns a :class:`Check` (ok / warn / fail, what was found, how to fix it); a check that
crashes becomes a failing row naming the exception, so the doctor always finishes its table.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from musicbox.config import BoxConfig, installed_bundle, load_config, shipped_bundle
from musicbox.device.board import BoardInfo, detect_board
from musicbox.errors import AudioDeviceError, MusicBoxError
from musicbox.firmware import firmware_dir
from musicbox.runtime.cpu import DOT_PRODUCT_FLAGS

OK, WARN, FAIL = "ok", "warn", "fail"
WAITS = " (a playing box waits for it, retrying, and plays as soon as it appears)"
SERVICE_FILES = (
    "/etc/systemd/system/musicbox.service",
    "/lib/systemd/system/musicbox.service",
    "/usr/lib/systemd/system/musicbox.service",
    "~/.config/systemd/user/musicbox.service",
)


@dataclass(frozen=True)
class Check:
    """One row: ``name`` of the check, ``status`` ok | warn | fail, ``detail`` found, ``fix`` if not ok."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def run_checks(
    config_path: str | os.PathLike | None = None,
    root: Path = Path("/"),
    more: Sequence[tuple[str, Callable[[BoxConfig], Check]]] = (),
) -> list[Check]:
    """All checks, in table order. ``config_path``: the box's file (None = the usual search). ``more``:
    (name, check(config)) rows of layers above this one (the web remote's), run last."""
    config_check, config = check_config(config_path)
    board = detect_board(root)
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("board", lambda: check_board(board, config)),
        ("cpu", lambda: check_cpu(board, config)),
        ("audio", lambda: check_audio(config)),
        ("soundfont", lambda: check_soundfont(config)),
        ("knobs", lambda: check_knobs(config)),
        ("bundle", lambda: check_bundle(config)),
        ("memory", lambda: check_memory(config, root)),
        ("disk", lambda: check_disk(config)),
        ("service", check_service),
    ]
    checks += [(name, functools.partial(check, config)) for name, check in more]
    return [config_check] + [_safely(name, check) for name, check in checks]


def _safely(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except Exception as exc:  # a doctor reports every failure as a row, never a traceback
        return Check(
            name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}", "report this as a bug"
        )


def check_config(path) -> tuple[Check, BoxConfig]:
    """The configuration loads; on error the row explains it and the defaults are used for the rest."""
    try:
        config = load_config(path)
    except MusicBoxError as exc:
        fix = "fix that key; firmware_config/musicbox.toml documents every key and its allowed values"
        return Check("config", FAIL, str(exc), fix), load_config(firmware_dir() / "musicbox.toml")
    source = str(config.source) if config.source else "defaults only (no musicbox.toml found)"
    return Check("config", OK, source), config


def check_board(board: BoardInfo, config: BoxConfig) -> Check:
    """Which board this is, and whether the configured pin map is for it."""
    detail = f"{board.name}: {board.model} ({board.machine}, {board.cores} cores)"
    if config.board.known and board.name != config.board.name:
        fix = f'set [board] name = "auto" (detected {board.name}) or check the board file'
        return Check("board", WARN, f"{detail}; config says {config.board.name}", fix)
    if board.name == "none":
        return Check(
            "board", WARN, f"{detail}: no Raspberry Pi or Jetson", "knobs use the terminal backend here"
        )
    return Check("board", OK, detail)


def check_cpu(board: BoardInfo, config: BoxConfig) -> Check:
    """CPU features: int8 dot-product instructions (ARM asimddp, x86 VNNI) mean INT8, otherwise FP32."""
    found = ", ".join(sorted(set(DOT_PRODUCT_FLAGS) & board.cpu_features)) or "no int8 dot-product"
    detail = f"{found} -> {board.recommended_precision.upper()}"
    chosen = config.bundle.precision
    if chosen.startswith("int8") and not board.int8_fast:
        fix = 'INT8 is slower than FP32 on this CPU: set [bundle] precision = "auto" or "fp32"'
        return Check("cpu", WARN, f"{detail}; config forces {chosen}", fix)
    return Check("cpu", OK, detail)


def check_audio(config: BoxConfig) -> Check:
    """PortAudio loads and has an output device (the configured one, if any)."""
    from musicbox.device.audio import no_audio_device_hint, output_devices

    try:
        devices = output_devices()
    except AudioDeviceError as exc:
        return Check("audio", FAIL, str(exc), "see firmware_config/alsa/ for a DAC HAT")
    if not devices.names:
        return Check("audio", FAIL, f"no output device{WAITS}", no_audio_device_hint())
    wanted = config.audio.device
    if not devices.matches(wanted):
        fix = 'set [audio] device to one of those names, or "" for the default'
        return Check(
            "audio", FAIL, f"no device matches {wanted!r}; have {', '.join(devices.names)}{WAITS}", fix
        )
    return Check("audio", OK, f"{len(devices.names)} output device(s): {', '.join(devices.names[:4])}")


def check_soundfont(config: BoxConfig) -> Check:
    """A General MIDI SoundFont is found (the configured one, else the usual places)."""
    from musicbox.runtime.soundfont import find_soundfont

    try:
        path = find_soundfont(config.synth.soundfont)
    except MusicBoxError as exc:
        return Check("soundfont", FAIL, "none usable", str(exc))
    return Check("soundfont", OK, f"{path} ({path.stat().st_size / 2**20:.1f} MiB)")


def check_knobs(config: BoxConfig) -> Check:
    """The knob backend the box would open, opened for real (and closed again)."""
    from musicbox.device import open_backend

    try:
        backend = open_backend(config, ["style"])
    except MusicBoxError as exc:
        fix = "see firmware_config/WIRING.md; a running service holds the pins (systemctl stop musicbox)"
        return Check("knobs", FAIL, f"{config.knobs.backend}: {exc}", fix)
    backend.close()
    detail = f"{config.knobs.backend} -> {backend.name}"
    if backend.name == "none":
        fix = "the box plays fixed controls: wire knobs (WIRING.md) or run `musicbox play` in a terminal"
        return Check("knobs", WARN, detail, fix)
    return Check("knobs", OK, detail)


def check_bundle(config: BoxConfig) -> Check:
    """The bundle the box would open: only folders and regular files, a valid manifest (the runtime's typed
    reader) and every file of every variant of its size and sha256 (runtime/bundle_files.py: no
    onnxruntime needed)."""
    from musicbox.runtime.bundle_files import verify_bundle

    root = config.bundle.path or installed_bundle() or shipped_bundle()
    if not (root / "manifest.json").is_file():
        fix = "set [bundle] path to a bundle folder, or build one with `musicbox quantize`"
        return Check("bundle", FAIL, f"{root}: no manifest.json", fix)
    try:
        check = verify_bundle(root)
    except MusicBoxError as exc:
        return Check(
            "bundle", FAIL, str(exc), "re-copy the bundle folder or rebuild it with `musicbox quantize`"
        )
    model = check.manifest.model
    return Check(
        "bundle",
        OK,
        f"{root}: {model.name} trained {model.provenance.trained}, {check.listed} files, sizes and sha256 "
        f"match (digest {check.digest[:12]})",
    )


def check_memory(config: BoxConfig, root: Path = Path("/")) -> Check:
    """Available memory (MemAvailable) and the service's limit (MemoryMax) against what this configuration
    needs (the box's own estimate: processes, bar ring, SAVE buffer)."""
    from musicbox.runtime.buffering import board_budget, memory_limit_mb, memory_need

    meminfo = _meminfo(root)
    if "MemAvailable" not in meminfo:
        return Check("memory", WARN, "/proc/meminfo unreadable", "")
    free_mb, total_mb = meminfo["MemAvailable"] / 1024, meminfo.get("MemTotal", 0) / 1024
    need = memory_need(config, config.knobs.min_bpm, config.knobs.max_bpm)
    detail = f"{free_mb:.0f} MiB available of {total_mb:.0f} MiB; the box needs {need.describe()}"
    smaller = (
        "lower [recording] minutes_kept or [audio] buffer_bars / buffer_seconds, or raise [knobs] min_bpm"
    )
    limit = memory_limit_mb()
    if limit is not None and need.total_mb > limit[0]:
        return Check("memory", FAIL, f"{detail}; {limit[1]} allows {limit[0]:.0f} MiB", smaller)
    board = board_budget(config, root)
    if board is not None and need.total_mb > board[0]:
        return Check(
            "memory", FAIL, f"{detail}; {board[0]:.0f} MiB is what {board[1]}", f"{smaller}, or {board[2]}"
        )
    if free_mb < need.total_mb:
        return Check("memory", FAIL, detail, f"stop other services, or {smaller}")
    return Check("memory", OK, detail)


def _meminfo(root: Path) -> dict[str, int]:
    try:
        lines = (root / "proc/meminfo").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        if value.split() and value.split()[0].isdigit():
            out[key] = int(value.split()[0])  # KiB
    return out


def check_disk(config: BoxConfig) -> Check:
    """Free space where SAVE writes: room for ``minutes_kept`` minutes of 16-bit stereo audio."""
    folder = config.recording.folder
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free_mb = shutil.disk_usage(existing).free / 2**20
    need = config.recording.minutes_kept * 60 * config.audio.sample_rate * 4 / 2**20
    detail = f"{free_mb:.0f} MiB free at {existing}; a save needs ~{need:.0f} MiB"
    if free_mb < need:
        return Check("disk", FAIL, detail, "free some space, or lower [recording] minutes_kept")
    if not os.access(existing, os.W_OK):
        return Check(
            "disk", FAIL, f"{existing} is not writable", "set [recording] folder to a writable folder"
        )
    return Check("disk", OK, detail)


def check_service() -> Check:
    """The systemd unit is installed (the box starts at boot)."""
    found = [Path(p).expanduser() for p in SERVICE_FILES if Path(p).expanduser().is_file()]
    if found:
        return Check("service", OK, f"installed: {found[0]}")
    command = Path(sys.executable).parent / "musicbox"  # a venv's bin is not on root's PATH under sudo
    return Check("service", WARN, "musicbox.service not installed", f"sudo {command} install-service")
