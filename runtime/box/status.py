"""What the playing box reports: one typed status, made by the supervisor every second and at the stop,
read by the ``--stats`` file, systemd's STATUS= line, the terminal view and the web remote."""

from __future__ import annotations

import msgspec

from musicbox.runtime.controls import Controls


class BoxStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Counts since the start; seconds; MiB (the defaults: a box that has not started).

    state: the box's state (``BoxState`` value). worker_pid: the worker's pid (None between two).
    bars_played / splices: bars the player started / times it took a knob turn's rewrite inside a bar.
    bars_written: bars the workers wrote. underruns: times the next bar was not there in time;
    silence_s: the seconds of silence they cost. xruns: PortAudio's own underflow flags.
    worker_restarts, last_recovery_s (the latest recovery's first bar, from its detection) and
    last_recovery (its detection, ready and first-bar seconds). hang_timeout_s: seconds without a
    heartbeat before a worker counts as hung. audio_reopens: times the stream was reopened;
    audio_state: the stream's state (``StreamState`` value: "lost" while waiting for a device).
    rss_mb / worker_rss_mb: resident memory of the main process / the worker. box_cpu_s: CPU seconds
    of the whole box. controls: the knobs. meter: the meter of the bar playing. volume_db: the
    listener's volume. generation / seed: the current generation id and generator seed. saves /
    save_failures / last_save: SAVE presses written / failed, and what the last one did.
    turn_ms_p95: the 95th percentile of the seconds (as ms) from a knob turn to its first audio, over the
    turns so far (None before the first). sleep_left_s: seconds until the sleep timer ends the music
    (None: no timer).
    """

    state: str = "starting"
    worker_pid: int | None = None
    bars_played: int = 0
    splices: int = 0
    bars_written: int = 0
    underruns: int = 0
    silence_s: float = 0.0
    xruns: int = 0
    worker_restarts: int = 0
    last_recovery_s: float | None = None
    last_recovery: dict[str, float | None] | None = None
    hang_timeout_s: float = 0.0
    audio_reopens: int = 0
    audio_state: str = "closed"
    rss_mb: float | None = None
    worker_rss_mb: float | None = None
    box_cpu_s: float = 0.0
    controls: Controls = Controls()
    meter: str = ""
    volume_db: float = 0.0
    generation: int = 0
    seed: int = 0
    saves: int = 0
    save_failures: int = 0
    last_save: str = ""
    turn_ms_p95: float | None = None
    sleep_left_s: float | None = None

    def to_json(self) -> bytes:
        """The status as JSON (the ``--stats`` file)."""
        return msgspec.json.encode(self)

    def line(self) -> str:
        """One line for systemd's STATUS= and the journal."""
        waiting = " (audio device missing: waiting for it)" if self.audio_state == "lost" else ""
        return (
            f"{self.state}{waiting}: {self.bars_played} bars, {self.underruns} underruns, "
            f"{self.silence_s:.1f} s silence, {self.worker_restarts} worker restarts"
        )
