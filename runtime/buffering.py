"""How much music the box buffers and the memory that takes, from its settings alone (no processes).

The worker keeps :func:`bars_ahead` bars written ahead of the playing one: ``buffer_bars``, or more at
fast tempi and in short meters so that at least ``buffer_seconds`` are buffered. The shared ring has
:func:`ring_slots` slots (twice the most bars ahead, at the fastest tempo in the shortest meter, since a
knob change keeps the stale bars as fallbacks, plus the playing bar and slack) of :func:`slot_frames`
frames (the longest bar: 4/4 at the slowest tempo). Bars of any meter follow each other in the ring, each
with its own length, so a meter change plays at a bar line without a gap.
:func:`memory_need` adds the SAVE buffer and the processes; :func:`check_memory` refuses a configuration
that needs more than the service may use (the unit's ``MemoryMax``).
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
PROCESSES_MB = 270.0
"""MiB the box's processes take besides the bar ring and the SAVE buffer: the main process ~142 and the
worker ~110 (RSS with the shipped bundle under JACK, `musicbox play --stats`: 258 and 110 MiB, less the
ring and the 10-minute SAVE buffer), the fork server and resource tracker, and a little headroom."""
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
    ``bar_s`` seconds), the SAVE buffer, the processes."""

    ring_mb: float
    ring_bars: int
    bar_s: float
    recording_mb: float
    processes_mb: float = PROCESSES_MB

    @property
    def total_mb(self) -> float:
        return self.ring_mb + self.recording_mb + self.processes_mb

    def describe(self) -> str:
        return (
            f"~{self.total_mb:.0f} MiB: bar ring {self.ring_mb:.0f} MiB ({self.ring_bars} bars of up to "
            f"{self.bar_s:.1f} s), SAVE buffer {self.recording_mb:.0f} MiB, processes ~{self.processes_mb:.0f} MiB"
        )


def memory_need(config, min_bpm: float, max_bpm: float) -> MemoryNeed:
    """The memory ``config`` (a BoxConfig) needs when tempi run from ``min_bpm`` to ``max_bpm``."""
    a = config.audio
    slots = ring_slots(a.buffer_bars, a.buffer_seconds, max_bpm)
    ring = slots * slot_frames(a.sample_rate, min_bpm) * CHANNELS * 4  # float32 PCM
    recording = config.recording.minutes_kept * 60 * a.sample_rate * CHANNELS * 2  # int16
    bar_s = Controls(tempo_bpm=min_bpm).bar_seconds(LONGEST)
    return MemoryNeed(ring / 2**20, slots, bar_s, recording / 2**20)


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


def check_memory(config, need: MemoryNeed) -> None:
    """ConfigError (exit 78) when ``config`` needs more memory than the service may use."""
    limit = memory_limit_mb()
    if limit is None or need.total_mb <= limit[0]:
        return
    a, k, r = config.audio, config.knobs, config.recording
    raise ConfigError(
        f"{config.source or 'the configuration'}: [audio] buffer_bars = {a.buffer_bars}, buffer_seconds = "
        f"{a.buffer_seconds:g}, [knobs] min_bpm = {k.min_bpm:g}, [recording] minutes_kept = "
        f"{r.minutes_kept} need {need.describe()}, more than the {limit[0]:.0f} MiB allowed by "
        f"{limit[1]}; lower buffer_bars or buffer_seconds, raise min_bpm, lower minutes_kept, or raise "
        "MemoryMax in the unit"
    )
