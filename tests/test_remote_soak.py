"""The soak with a page open (CI, `-m soak`): `musicbox play --remote` on a JACK dummy device for 90 s,
Debian's headless Chromium paired and listening to the stream, the worker SIGKILLed every 20 s: no
underrun, the stream plays on, the main process's memory stays flat."""

from __future__ import annotations

import os
import signal
import time

import pytest

from musicbox.runtime.box.soak import JackDummy
from tests.helpers.synthetic_bundle import build_bundle
from tests.test_remote_browser import Box, chrome, pair_page
from tests.test_remote_browser import pytestmark as browser_marks

SECONDS = 90.0
pytestmark = [pytest.mark.soak, *browser_marks]


def test_ninety_seconds_with_a_page_listening_and_the_worker_killed(tmp_path):
    from selenium.webdriver.common.by import By

    with JackDummy(name=f"mbremotesoak{os.getpid()}"):
        box = Box(tmp_path, build_bundle(tmp_path / "bundle"), seconds=SECONDS)
        browser = chrome(tmp_path)
        try:
            box.wait_stats(lambda d: d["bars_played"] >= 1, 30)
            started = time.monotonic()
            pair_page(box, browser)
            browser.find_element(By.ID, "listen").click()
            rss, kills = [], 0
            while time.monotonic() - started < SECONDS - 15:
                time.sleep(20.0)
                stats = box.wait_stats(lambda d: d["worker_pid"])
                rss.append(stats["rss_mb"])
                os.kill(stats["worker_pid"], signal.SIGKILL)
                kills += 1
            final = box.wait_stats(
                lambda d, k=kills: d["worker_restarts"] >= k and d["state"] == "playing", 20
            )
            heard = browser.execute_script("return heardSeconds()")
            gaps = browser.execute_script("return listening.gaps")
            bar = int(browser.find_element(By.ID, "bar").text)
        finally:
            browser.quit()
            log = box.stop()
    print(
        f"kills {kills}, heard {heard:.1f} s ({gaps} late chunks), bars {final['bars_played']}, rss {rss} MiB"
    )
    assert box.proc.returncode == 0, log
    assert final["underruns"] == 0 and final["worker_restarts"] >= kills >= 3
    assert heard > (SECONDS - 15) * 0.8  # the stream played through the kills
    assert bar >= final["bars_played"] - 2  # the page followed the box
    assert rss[-1] - rss[1] <= 5.0  # flat after the first minute's warm-up
