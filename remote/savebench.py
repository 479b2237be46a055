"""``musicbox bench save``: the memory of every process of the box while SAVE is pressed three times at once.

The real box (``musicbox play --remote``, a subprocess, knobs off) plays on a JACK dummy server with the
web remote on and one page listening (a paired client reading ``/api/events`` and ``/stream.wav``, what an
open page with its player on does). Once it has played ``minutes`` minutes of music (10: the SAVE buffer
of the default ``[recording] minutes_kept`` is full; fewer: it is that far filled: the ring is allocated
and committed whole at start either way, so only the files' length differs), three ``POST /api/button
{"button": "save"}`` are sent at the same instant. From a few seconds before the presses until all three
saves are done and two seconds after, the resident memory of every process of the box (the main process,
the worker, the fork server, the resource tracker: the play process and all its descendants) is read from
``/proc`` every 20 ms: RSS and PSS (``smaps_rollup``; PSS shares each shared page among the
processes mapping it, such as the bar ring the main process and the worker both map). The figures: per
process its RSS before the presses, its peak RSS and PSS during the saves and its own lifetime peak, and
the peak of the RSS summed over all processes, ``save_peak_rss_total_mb`` (the target; it counts a page
shared by two processes twice, the larger figure), less the JACK server's engine segment that PortAudio
maps into the main process (``/dev/shm/jack-*``, about 100 MiB: the server's memory, absent when the box
plays to ALSA; the sum with it and the PSS sum are reported beside it); whether three recordings
(distinct WAV and MIDI files) were written, each WAV's length, the seconds until the last was written,
and the box's underruns and silence over the run. Nothing is pre-filled: the music in
the buffer is music the box played.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from musicbox.remote.auth import CSRF_HEADER
from musicbox.remote.footprint import free_port
from musicbox.targets import targets_of

SAMPLE_S = 0.02  # the memory is read this often during the saves
PRESSES = 3


def _stats(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or being replaced
        return {}


def _tree(pid: int) -> list[int]:
    """``pid`` and every process it started, still running."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    stack += [int(c) for c in Path(f"/proc/{p}/task/{tid}/children").read_text().split()]
    return out


def _memory_mb(pid: int) -> tuple[float, float] | None:
    """(RSS, PSS) of ``pid`` in MiB from ``/proc/PID/smaps_rollup``; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kib = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss") and rest.split():
            kib[key] = int(rest.split()[0])
    if "Rss" not in kib:
        return None
    return kib["Rss"] / 1024, kib.get("Pss", kib["Rss"]) / 1024


def _jack_mb(pid: int) -> float:
    """MiB of JACK's shared memory (``/dev/shm/jack-*``: the JACK server's engine segment, mapped into
    each client) resident in ``pid``: the server's memory, not the box's (on ALSA there is none)."""
    total, jack = 0, False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(maxsplit=6)
                if head and "-" in head[0] and ":" not in head[0]:  # a mapping's first line
                    jack = len(head) > 5 and Path(head[5].strip()).name.startswith("jack")
                elif jack and head[0] == "Rss:":
                    total += int(head[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return total / 1024


def _hwm_mb(pid: int) -> float | None:
    """The process's own peak RSS since it started (``VmHWM``), MiB."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM"))
        return int(line.split()[1]) / 1024
    return None


def _label(pid: int, main: int, worker: int | None) -> str:
    if pid == main:
        return "main"
    if pid == worker:
        return "worker"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        cmdline = ""
    if "resource_tracker" in cmdline:
        return "resource tracker"
    if "forkserver" in cmdline:
        return "fork server"
    with contextlib.suppress(OSError):
        return f"{Path(f'/proc/{pid}/comm').read_text().strip()} ({pid})"
    return str(pid)


class _Sampler:
    """Reads the memory of the box's process tree every :data:`SAMPLE_S` seconds on its own thread."""

    def __init__(self, main: int, stats: Path):
        self.main, self.stats = main, stats
        self.peak_rss: dict[int, float] = {}
        self.peak_pss: dict[int, float] = {}
        self.labels: dict[int, str] = {}
        self.jack: dict[int, float] = {}
        self.peak_total_rss = 0.0
        self.peak_total_rss_with_jack = 0.0
        self.peak_total_pss = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="save-bench-sampler", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            worker = _stats(self.stats).get("worker_pid")
            rss_sum = jack_sum = pss_sum = 0.0
            for pid in _tree(self.main):
                got = _memory_mb(pid)
                if got is None:
                    continue
                rss, pss = got
                if pid not in self.labels:
                    self.labels[pid] = _label(pid, self.main, worker)
                    self.jack[pid] = _jack_mb(pid)  # all of it resident from the start: read once
                jack_sum += self.jack[pid]
                self.peak_rss[pid] = max(self.peak_rss.get(pid, 0.0), rss)
                self.peak_pss[pid] = max(self.peak_pss.get(pid, 0.0), pss)
                rss_sum, pss_sum = rss_sum + rss, pss_sum + pss
            self.peak_total_rss = max(self.peak_total_rss, rss_sum - jack_sum)
            self.peak_total_rss_with_jack = max(self.peak_total_rss_with_jack, rss_sum)
            self.peak_total_pss = max(self.peak_total_pss, pss_sum)
            self.samples += 1
            self._stop.wait(SAMPLE_S)


def _request(url: str, body: dict | None, headers: dict, timeout: float = 10.0) -> tuple[int, bytes, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, method="GET" if body is None else "POST", headers=headers)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _listen(url: str, headers: dict, stop: threading.Event, received: dict[str, int]) -> None:
    """Read ``url`` until ``stop`` (what an open page does), counting the bytes in ``received``."""
    received[url] = 0
    request = urllib.request.Request(url, headers=headers)
    with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=10) as response:
        while not stop.is_set() and (data := response.read1(65536)):
            received[url] += len(data)


def _until(test, timeout_s: float, what: str, proc: subprocess.Popen):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"musicbox play exited {proc.returncode} while waiting for {what}")
        value = test()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")


def measure(bundle: Path, minutes: float = 10.0, jack: bool = True) -> dict:
    """Play ``minutes`` minutes, press SAVE three times at once, and report (see the module docstring)."""
    from musicbox.runtime.box.soak import JackDummy

    server = JackDummy(name=f"mbsave{os.getpid()}") if jack else contextlib.nullcontext()
    with server, tempfile.TemporaryDirectory(prefix="musicbox-bench-save-") as tmp:
        return _measure(bundle, minutes, Path(tmp))


def _measure(bundle: Path, minutes: float, folder: Path) -> dict:
    import soundfile

    port, rec, state, stats = free_port(), folder / "rec", folder / "state", folder / "stats.json"
    config = folder / "box.toml"
    config.write_text(
        f'[recording]\nfolder = "{rec}"\nminutes_kept = 10\n[remote]\nenabled = true\nstream = true\n'
        f'bind = "127.0.0.1"\nport = {port}\nstate_dir = "{state}"\n'
    )
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--backend", "none", "--config", str(config)]
    cmd += ["--bundle", str(bundle), "--seconds", str(int(minutes * 60 + 600)), "--stats", str(stats)]
    base = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    received: dict[str, int] = {}
    with open(folder / "play.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        _until(lambda: _stats(stats).get("bars_played", 0) >= 1, 120, "the first bar", proc)
        first_bar = time.monotonic()
        code = json.loads((state / "pairing.json").read_text())["code"]
        status, body, headers = _request(f"{base}/api/pair", {"code": code}, {})
        if status != 200:
            raise RuntimeError(f"pairing with the box failed: {status} {body[:200]!r}")
        cookie = headers["Set-Cookie"].split(";")[0]
        auth = {"Cookie": cookie, CSRF_HEADER: json.loads(body)["csrf"]}
        for path in ("/api/events", "/stream.wav"):
            threading.Thread(
                target=_listen, args=(base + path, {"Cookie": cookie}, stop, received), daemon=True
            ).start()
        _until(lambda: received.get(base + "/stream.wav", 0) > 0, 30, "the stream's first bytes", proc)
        while time.monotonic() - first_bar < minutes * 60.0:
            if proc.poll() is not None:
                raise RuntimeError(f"musicbox play exited {proc.returncode} while playing")
            time.sleep(1.0)
        played_s = time.monotonic() - first_bar
        before = {
            pid: (_label(pid, proc.pid, _stats(stats).get("worker_pid")), _memory_mb(pid))
            for pid in _tree(proc.pid)
        }
        with _Sampler(proc.pid, stats) as sampler:
            time.sleep(3.0)  # the memory as it plays, before the presses
            gate = threading.Barrier(PRESSES)
            answers: list[int] = []

            def press() -> None:
                gate.wait(10)
                answers.append(_request(f"{base}/api/button", {"button": "save"}, auth)[0])

            pressers = [threading.Thread(target=press) for _ in range(PRESSES)]
            pressed = time.monotonic()
            for t in pressers:
                t.start()
            for t in pressers:
                t.join(30)
            done = _until(
                lambda: (s := _stats(stats)) and s["saves"] + s["save_failures"] >= PRESSES and s,
                300,
                "three saves",
                proc,
            )
            saved_s = time.monotonic() - pressed
            time.sleep(2.0)
        hwm = {pid: _hwm_mb(pid) for pid in _tree(proc.pid)}
        final = _stats(stats)
    finally:
        stop.set()
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wavs = sorted(rec.glob("musicbox-*.wav"))
    mids = sorted(rec.glob("musicbox-*.mid"))
    recordings = [
        {
            "wav": p.name,
            "seconds": round(soundfile.info(str(p)).duration, 2),
            "mib": round(p.stat().st_size / 2**20, 1),
        }
        for p in wavs
    ]
    processes = {}
    for pid, label in sorted(sampler.labels.items(), key=lambda kv: kv[0]):
        was = before.get(pid, (label, None))[1]
        processes[label] = {
            "pid": pid,
            "rss_before_mb": round(was[0], 1) if was else None,
            "peak_rss_mb": round(sampler.peak_rss[pid], 1),
            "peak_pss_mb": round(sampler.peak_pss[pid], 1),
            "of_which_jack_shm_mb": round(sampler.jack[pid], 1),
            "lifetime_peak_rss_mb": None if (peak := hwm.get(pid)) is None else round(peak, 1),
        }
    written = len(wavs) == PRESSES and len(mids) == PRESSES and done["saves"] == PRESSES
    figures = {
        "minutes_played_before_saves": round(played_s / 60.0, 2),
        "presses": PRESSES,
        "press_answers": sorted(answers),
        "recordings_written": len(wavs) if len(wavs) == len(mids) else min(len(wavs), len(mids)),
        "all_written": written,
        "recordings": recordings,
        "last_save": done.get("last_save", ""),
        "seconds_until_all_written": round(saved_s, 2),
        "processes": processes,
        "save_peak_rss_total_mb": round(sampler.peak_total_rss, 1),
        "save_peak_rss_total_with_jack_shm_mb": round(sampler.peak_total_rss_with_jack, 1),
        "save_peak_pss_total_mb": round(sampler.peak_total_pss, 1),
        "samples": sampler.samples,
        "sample_every_s": SAMPLE_S,
        "underruns": final.get("underruns"),
        "silence_s": final.get("silence_s"),
        "stream_kib_received": round(received.get(base + "/stream.wav", 0) / 1024),
        "exit_status": proc.returncode,
        "targets": {t.name: str(t) for t in targets_of("save")},
    }
    figures["ok"] = written and all(t.met(figures[t.name]) for t in targets_of("save"))
    figures["ok"] = figures["ok"] and final.get("underruns") == 0
    return figures
