"""Ableton Link, following (runtime/box/link.py; the optional, GPL `link` extra): a real Link peer in
another process sets the session's tempo (90, then 140 BPM) and starts and stops it; the follower hands
each on. The MIT core never imports aalink unless [midi] link is on."""

from __future__ import annotations

import queue
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("aalink")

from musicbox.runtime.box.link import LinkFollower  # noqa: E402

PEER = textwrap.dedent(
    """
    import asyncio, sys, aalink

    async def main():
        link = aalink.Link(90.0)
        link.enabled = True
        link.start_stop_sync_enabled = True
        for line in sys.stdin:  # one command a line: a tempo, "play" or "stop"
            word = line.strip()
            for _ in range(200):  # in the box's session first (up to 10 s)
                if link.num_peers:
                    break
                await asyncio.sleep(0.05)
            if word == "play":
                link.playing = True
            elif word == "stop":
                link.playing = False
            elif word:
                link.tempo = float(word)
            print("done", link.num_peers, flush=True)
            await asyncio.sleep(0)

    asyncio.run(main())
    """
)


def test_the_box_follows_a_link_session_s_tempo_and_start_stop():
    tempos: queue.Queue = queue.Queue()
    runs: queue.Queue = queue.Queue()
    follower = LinkFollower(120.0, tempos.put, runs.put)
    peer = subprocess.Popen(
        [sys.executable, "-c", PEER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    follower.start()
    try:

        def say(word: str) -> None:
            assert peer.stdin is not None and peer.stdout is not None
            peer.stdin.write(word + "\n")
            peer.stdin.flush()
            peer.stdout.readline()

        say("90")
        _until(tempos, 90.0)  # (joining, the session may first have had the box's 120)
        say("140")
        _until(tempos, 140.0)
        say("play")
        assert runs.get(timeout=10) is True
        say("stop")
        assert runs.get(timeout=10) is False
        assert follower.peers >= 1
    finally:
        follower.close()
        peer.kill()
        peer.communicate()


def _until(tempos: queue.Queue, bpm: float, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        try:
            seen.append(tempos.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            break
        if seen[-1] == pytest.approx(bpm, rel=0.005):
            return
    raise AssertionError(f"the follower never reported {bpm} BPM; it reported {seen}")


def test_the_core_does_not_import_aalink_unless_configured():
    code = "import sys, musicbox.commands.play, musicbox.runtime.box.link; print('aalink' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
