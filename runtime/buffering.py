"""How much music the box buffers and the memory that takes, from its settings alone (no processes).

The worker keeps :func:`bars_ahead` bars written ahead of the playing one: ``buffer_bars``, or more at
fast tempi and in short meters so that at least ``buffer_seconds`` are buffered. The shared ring has
:func:`ring_slots` slots (twice the most bars ahead, at the fastest tempo in the shortest meter, since a
knob change keeps the stale bars as fallbacks, plus the playing bar and slack) of :func:`slot_frames`
frames (the longest bar: 4/4 at the slowest tempo). Bars of any meter follow each other in the ring, each
with its own length, so a meter change plays at a bar line without a gap.
:func:`memory_need` estimates what the whole box needs from the configuration (and the bundle's manifest):
the bar ring, SAVE's buffer and its side buffer, the web remote and its stream's buffer, the model's
weights, the SoundFont's samples and the processes themselves; :func:`check_memory` refuses (exit 78) a
configuration that needs more than the service may use (the unit's ``MemoryMax``) or than the board's
memory class leaves the box (``[board] memory``, ``musicbox.boards.MEMORY_CLASSES``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from musicbox.errors import ConfigError
from musicbox.firmware import firmware_dir
from musicbox.runtime.controls import Controls
from musicbox.runtime.meter import METERS

CHANNELS = 2
PROCESSES_MB = 140.0
"""MiB the box's processes take themselves (interpreters, libraries, heaps), each page counted once (PSS
summed): the main process ~50 with the web remote and its stream on, the worker ~31 besides its weights
and samples, the fork server ~27 and the resource tracker ~7 (`musicbox bench save` on a JACK dummy
server, less JACK's segment, the rings, the model and the SoundFont's samples: ~115), and headroom."""
SIDE_S = 60.0
"""Seconds of new music SAVE's side buffer holds while saves are being written (``Recorder``): the ring
they read from is not overwritten meanwhile; a disk slower than that fails the saves instead."""
REMOTE_MB = 12.0
"""MiB the web remote's server adds (`musicbox bench remote`: server_rss_added_mb, at most 20 by target)."""
STREAM_HELD_S = 5.0
"""Seconds of audio the web stream holds (a listener further behind is dropped)."""
SOUNDFONT_MB = 52.0
"""MiB of samples FluidSynth loads for the shipped styles' programs (dynamic sample loading: only the
presets played), measured with FluidR3_GM (the worker's heap less the model's sessions); a smaller
SoundFont takes at most its file's size (an .sf3, compressed, up to :data:`SF3_EXPANSION` times that)."""
SF3_EXPANSION = 10.0
WEIGHT_COPIES = 2.0
"""ONNX Runtime holds a model's weights about twice: as loaded and as prepacked for its kernels."""
SHORTEST = min(m.steps for m in METERS.values())
LONGEST = max(m.steps for m in METERS.values())
"""Steps of the shortest and the longest bar of any meter (12: 3/4 and 6/8; 16: 4/4)."""


def bars_ahead(tempo_bpm: float, bars: int, seconds: float, steps_per_bar: int = 16) -> int:
    """Bars of ``steps_per_bar`` steps to keep written ahead at ``tempo_bpm``: ``bars``, or enough for
    ``seconds`` seconds."""
    return max(bars, math.ceil(seconds / Controls(tempo_bpm=tempo_bpm).bar_seconds(steps_per_bar)))


def ring_slots(bars: int, seconds: float, max_bpm: float) -> int:
    """Slots of the bar ring: twice the bars ahead at the fastest tempo ``max_bpm`` in the shortest meter,
    plus 3."""
    return 2 * bars_ahead(max_bpm, bars, seconds, SHORTEST) + 3


def slot_frames(sample_rate: int, min_bpm: float) -> int:
    """Frames of the longest bar (4/4 at the slowest tempo) plus one FluidSynth block of slack."""
    return int(sample_rate * Controls(tempo_bpm=min_bpm).bar_seconds(LONGEST)) + 64


@dataclass(frozen=True)
class MemoryNeed:
    """What a configuration needs, in MiB: the bar ring (shared memory, ``ring_bars`` slots of up to
    ``bar_s`` seconds), the SAVE buffer and its side buffer, the web remote with its stream's buffer, the
    model's weights, the SoundFont's samples, the processes themselves."""

    ring_mb: float
    ring_bars: int
    bar_s: float
    recording_mb: float
    side_mb: float = 0.0
    remote_mb: float = 0.0
    model_mb: float = 0.0
    soundfont_mb: float = 0.0
    processes_mb: float = PROCESSES_MB

    @property
    def total_mb(self) -> float:
        return (
            self.ring_mb
            + self.recording_mb
            + self.side_mb
            + self.remote_mb
            + self.model_mb
            + self.soundfont_mb
            + self.processes_mb
        )

    def describe(self) -> str:
        return (
            f"~{self.total_mb:.0f} MiB: bar ring {self.ring_mb:.0f} MiB ({self.ring_bars} bars of up to "
            f"{self.bar_s:.1f} s), SAVE buffer {self.recording_mb:.0f} MiB (+ {self.side_mb:.0f} while "
            f"saving), web remote {self.remote_mb:.0f} MiB, model {self.model_mb:.0f} MiB, SoundFont "
            f"~{self.soundfont_mb:.0f} MiB, processes ~{self.processes_mb:.0f} MiB"
        )


def memory_need(config, min_bpm: float, max_bpm: float, manifest=None) -> MemoryNeed:
    """The memory ``config`` (a BoxConfig) needs when tempi run from ``min_bpm`` to ``max_bpm``, playing
    the bundle of ``manifest`` (None: its model is not counted)."""
    a = config.audio
    slots = ring_slots(a.buffer_bars, a.buffer_seconds, max_bpm)
    frames = slot_frames(a.sample_rate, min_bpm)
    ring = slots * frames * CHANNELS * 4  # float32 PCM
    recording = config.recording.minutes_kept * 60 * a.sample_rate * CHANNELS * 2  # int16
    side = min(recording, SIDE_S * a.sample_rate * CHANNELS * 2)
    remote = 0.0
    if config.remote.enabled:
        remote = REMOTE_MB * 2**20
        if config.remote.stream:  # int16 PCM: the longest of 4 bars and the seconds a listener may lag
            remote += max(4 * frames, STREAM_HELD_S * a.sample_rate) * CHANNELS * 2
    bar_s = Controls(tempo_bpm=min_bpm).bar_seconds(LONGEST)
    return MemoryNeed(
        ring / 2**20,
        slots,
        bar_s,
        recording / 2**20,
        side / 2**20,
        remote / 2**20,
        model_mb(config, manifest),
        soundfont_mb(config),
    )


def model_mb(config, manifest) -> float:
    """MiB of the model's weights as ONNX Runtime holds them: the variant ``[bundle] precision`` picks
    (auto: the largest it may pick), at most ``memory_budget_mb`` of sessions kept (the largest stage
    is still loaded alone)."""
    if manifest is None:
        return 0.0
    variants = manifest.variants
    names = [config.bundle.precision] if config.bundle.precision in variants else list(variants)
    sizes = [[stage_bytes(f) for f in variants[n].files()] for n in names]
    need = max(sum(s) for s in sizes)
    budget = config.bundle.memory_budget_mb * 2**20
    if budget:
        need = min(need, max(budget, max(max(s) for s in sizes)))
    return WEIGHT_COPIES * need / 2**20


def stage_bytes(stage) -> int:
    """Bytes of a stage's files (a manifest's ``StageFile``: model + external weights): its cost against
    the memory budget."""
    return stage.bytes + (stage.external_data.bytes if stage.external_data else 0)


def soundfont_mb(config) -> float:
    """MiB of SoundFont samples the synth holds: :data:`SOUNDFONT_MB`, at most what the file holds."""
    from musicbox.errors import MusicBoxError
    from musicbox.runtime.soundfont import find_soundfont

    try:
        path = find_soundfont(config.synth.soundfont)
    except MusicBoxError:
        return SOUNDFONT_MB  # none found yet: `play` says so; counted as the usual one
    size = path.stat().st_size / 2**20 * (SF3_EXPANSION if path.suffix.lower() == ".sf3" else 1.0)
    return min(SOUNDFONT_MB, size)


def memory_limit_mb() -> tuple[float, str] | None:
    """What the box may use, in MiB, and where that limit comes from: this process's cgroup memory.max
    (under systemd, the unit's MemoryMax with any drop-ins), else the shipped unit's MemoryMax."""
    try:
        cgroup = next(
            line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::")
        )
        value = Path(f"/sys/fs/cgroup{cgroup}/memory.max").read_text().strip()
        if value.isdigit():
            return int(value) / 2**20, f"this service's memory.max ({cgroup})"
    except (OSError, StopIteration):
        pass
    unit = firmware_dir() / "systemd" / "musicbox.service"
    match = re.search(r"^MemoryMax=(\d+)([KMG]?)\s*$", unit.read_text(), re.M) if unit.is_file() else None
    if match is None:
        return None
    scale = {"": 2**-20, "K": 2**-10, "M": 1.0, "G": 1024.0}[match.group(2)]
    return int(match.group(1)) * scale, f"MemoryMax={match.group(1)}{match.group(2)} in {unit}"


def check_memory(config, need: MemoryNeed, root: Path = Path("/")) -> None:
    """ConfigError (exit 78) when ``config`` needs more memory than the service may use (its cgroup's
    memory.max or the unit's MemoryMax) or than its board's memory class leaves the box (``[board]
    memory``; auto: this machine's, from ``root``'s device tree or MemTotal)."""
    limits = []
    limit = memory_limit_mb()
    if limit is not None:
        limits.append((limit[0], f"allowed by {limit[1]}", "raise MemoryMax in the unit"))
    board = board_budget(config, root)
    if board is not None:
        limits.append(board)
    over = [lim for lim in limits if need.total_mb > lim[0]]
    if not over:
        return
    allowed, where, fix = min(over)
    a, k, r = config.audio, config.knobs, config.recording
    raise ConfigError(
        f"{config.source or 'the configuration'}: [audio] buffer_bars = {a.buffer_bars}, buffer_seconds = "
        f"{a.buffer_seconds:g}, [knobs] min_bpm = {k.min_bpm:g}, [recording] minutes_kept = "
        f"{r.minutes_kept} need {need.describe()}, more than the {allowed:.0f} MiB {where}; lower "
        f"minutes_kept (10.1 MiB a minute at 44.1 kHz), buffer_bars or buffer_seconds, raise min_bpm, use "
        f"an int8 [bundle] precision or a [bundle] memory_budget_mb, or {fix}"
    )


def board_budget(config, root: Path = Path("/")) -> tuple[float, str, str] | None:
    """(MiB, where that limit comes from, what else to do) of the board's memory class, None when the
    class is "none" or this machine is larger than every class (a build host)."""
    from musicbox.boards import mem_total_mb, memory_class, read_model

    c = memory_class(config.memory, root)
    if c is None:
        return None
    if config.memory == "auto":
        model = read_model(root)
        total = mem_total_mb(root)
        seen = (
            f"the device tree says {model!r}"
            if any(m in model for m in c.match)
            else (f"MemTotal {total:.0f} MiB")
        )
        how = f'[board] memory = "auto": {seen}'
    else:
        how = f'[board] memory = "{c.name}"'
    return (
        float(c.box_mb),
        f"a {c.label} board leaves the box ({how}; musicbox/boards.py)",
        "run it on a board with more memory (and set [board] memory to its class)",
    )
