"""What the web remote costs the box: ``musicbox bench remote``.

Three runs of the real ``musicbox play`` (a subprocess each, ``seconds`` long, knobs off): the remote
off; the remote on with one page open (a paired client reading ``/api/events``, what the page's
EventSource does: the state, pushed when it changes); and that page also listening to ``/stream.wav``.
For each it samples the main process's CPU (utime + stime from ``/proc``) every second once the box
plays, and reports p50/p95 in % of one core, plus its RSS at the end (MiB), and the CPU seconds of the
whole process tree (the main process, the worker, a killed worker's) per minute of music. The remote's
own cost, ``remote_cpu_s_per_music_minute``, is measured directly: its server thread's CPU clock and the
stream's conversion, read from ``/api/state`` at both ends of the listening run (the difference of two
runs' trees, ``tree_difference_cpu_s_per_music_minute``, is reported beside it, but two runs of the box
differ by a few tenths of a CPU second a minute in the music they generate). The figures are checked against ``musicbox/targets.py`` (source
``remote``). Under a JACK dummy server when ``jack`` is true (a build host), else on the default audio
device.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from musicbox.targets import targets_of


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a box started by a bench)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of process ``pid`` and everything it started: each live process of the tree, with its
    reaped children's (cutime + cstime: a killed worker's too)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    tree, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for p in tree:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reader(url: str, cookie: str, stop: threading.Event, received: dict[str, int]) -> None:
    """Read ``url`` with the session cookie until ``stop`` (what an open page does), counting the bytes
    in ``received[url]``."""
    request = urllib.request.Request(url, headers={"Cookie": f"musicbox_session={cookie}"})
    received[url] = 0
    with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=10) as response:
        while not stop.is_set() and (data := response.read1(65536)):
            received[url] += len(data)


def _remote_cpu_s(base: str, cookie: str) -> float:
    """CPU seconds the remote has used so far: its server thread's and the stream's conversion (the box
    says both in ``/api/state``)."""
    request = urllib.request.Request(base + "/api/state", headers={"Cookie": f"musicbox_session={cookie}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        state = json.loads(response.read())
    return float(state["server_cpu_s"]) + float((state.get("stream") or {}).get("cpu_s", 0.0))


def _run(bundle: Path, folder: Path, seconds: float, remote: bool, page: bool, stream: bool) -> dict:
    port = free_port()
    config = folder / "box.toml"
    config.write_text(
        f'[recording]\nfolder = "{folder}/rec"\n[remote]\nenabled = {str(remote).lower()}\n'
        f'bind = "127.0.0.1"\nport = {port}\nstate_dir = "{folder}/state"\n'
    )
    stats = folder / "stats.json"
    stats.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--bundle", str(bundle)]
    cmd += ["--seconds", str(seconds + 8), "--stats", str(stats), "--backend", "none"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    received: dict[str, int] = {}
    base, cookie = f"http://127.0.0.1:{port}", ""
    try:
        while not (stats.exists() and json.loads(stats.read_text())["bars_played"] >= 1):
            if proc.poll() is not None:
                raise RuntimeError(f"musicbox play exited {proc.returncode}")
            time.sleep(0.1)
        if page:
            code = json.loads((folder / "state" / "pairing.json").read_text())["code"]
            pair = urllib.request.Request(
                base + "/api/pair", json.dumps({"code": code}).encode(), {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(pair, timeout=10) as response:
                cookie = response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
            paths = ["/api/events"] + (["/stream.wav"] if stream else [])
            for path in paths:
                threading.Thread(
                    target=_reader, args=(base + path, cookie, stop, received), daemon=True
                ).start()
        time.sleep(2.0)  # settle
        samples, last = [], _cpu_s(proc.pid)
        tree_start, wall_start = _tree_cpu_s(proc.pid), time.monotonic()
        remote_start = _remote_cpu_s(base, cookie) if page else 0.0
        for _ in range(int(seconds)):
            time.sleep(1.0)
            now = _cpu_s(proc.pid)
            samples.append(100.0 * (now - last))
            last = now
        tree_cpu = _tree_cpu_s(proc.pid) - tree_start
        remote_cpu = _remote_cpu_s(base, cookie) - remote_start if page else 0.0
        wall = time.monotonic() - wall_start
        rss = _rss_mb(proc.pid)
        got = dict(received)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(30)
    return {
        "cpu_pct_p50": round(float(np.percentile(samples, 50)), 2),
        "cpu_pct_p95": round(float(np.percentile(samples, 95)), 2),
        "cpu_pct_mean": round(float(np.mean(samples)), 2),
        "rss_mb": round(rss, 1),
        "tree_cpu_s_per_music_minute": round(60.0 * tree_cpu / wall, 3),
        "remote_cpu_s_per_music_minute": round(60.0 * remote_cpu / wall, 3),
        "received_kbit_s": {
            url.rsplit("/", 1)[1]: round(8 * n / 1000 / (wall + 2.0), 1) for url, n in got.items()
        },
    }


def measure(bundle: Path, seconds: float = 30.0, jack: bool = True) -> dict:
    """The three runs and the differences (see the module docstring)."""
    from musicbox.runtime.box.soak import JackDummy

    server = JackDummy(name=f"mbbench{os.getpid()}") if jack else contextlib.nullcontext()
    runs = {}
    with server, tempfile.TemporaryDirectory() as tmp:
        for name, remote, open_page, stream in (
            ("remote_off", False, False, False),
            ("page_open", True, True, False),
            ("page_listening", True, True, True),
        ):
            folder = Path(tmp) / name
            folder.mkdir()
            runs[name] = _run(bundle, folder, seconds, remote, open_page, stream)
    off, page, listening = runs["remote_off"], runs["page_open"], runs["page_listening"]
    figures = {
        "runs": runs,
        "server_rss_added_mb": round(page["rss_mb"] - off["rss_mb"], 1),
        "server_cpu_added_pct_mean": round(page["cpu_pct_mean"] - off["cpu_pct_mean"], 2),
        "stream_cpu_pct_mean": round(listening["cpu_pct_mean"] - page["cpu_pct_mean"], 2),
        "remote_cpu_s_per_music_minute": listening["remote_cpu_s_per_music_minute"],
        "tree_difference_cpu_s_per_music_minute": round(
            listening["tree_cpu_s_per_music_minute"] - off["tree_cpu_s_per_music_minute"], 3
        ),
        "box_cpu_s_per_music_minute_listening": listening["tree_cpu_s_per_music_minute"],
        "targets": {t.name: str(t) for t in targets_of("remote")},
    }
    figures["ok"] = all(t.met(figures[t.name]) for t in targets_of("remote"))
    return figures
