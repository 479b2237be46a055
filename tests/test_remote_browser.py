"""The web remote end to end: the real `musicbox play --remote` on a JACK dummy device, driven by Debian's
headless Chromium through selenium (chromium-driver), and probed over plain HTTP for what must be refused.

One box serves the whole module (about 40 s of music); the tests run in file order against it.
``MUSICBOX_SCREENSHOT=docs/remote.png`` also saves the README's screenshot of the page.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from musicbox.runtime.box.soak import JackDummy
from tests.helpers.synthetic_bundle import build_bundle

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed"),
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER), reason="Debian chromium + chromium-driver are not installed"
    ),
]


KNOB_TURN_S = 20.0  # the box's own mood knob turns (a knob script) this long after the start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Box:
    """A running `musicbox play --remote` and what the tests need to reach it."""

    def __init__(self, root: Path, bundle: Path, seconds: float = 120.0, script: str = ""):
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = root / "state"
        self.recordings = root / "rec"
        self.stats = root / "stats.json"
        config = root / "box.toml"
        knobs = f'[knobs]\nbackend = "scripted"\nscript = "{root / "knobs.json"}"\n' if script else ""
        (root / "knobs.json").write_text(script)
        config.write_text(
            knobs + f'[audio]\nbuffer_bars = 4\n[recording]\nfolder = "{self.recordings}"\n'
            f'[remote]\nbind = "127.0.0.1"\nport = {self.port}\nstate_dir = "{self.state}"\npair_attempts = 3\n'
        )
        cmd = [sys.executable, "-m", "musicbox.cli", "play", "--remote", "--config", str(config)]
        cmd += ["--bundle", str(bundle), "--seconds", str(seconds), "--stats", str(self.stats)]
        cmd += [] if script else ["--backend", "none"]
        self.log = open(root / "play.log", "w")  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def wait_stats(self, test, timeout_s: float = 30.0) -> dict:
        end = time.monotonic() + timeout_s
        data = None
        while time.monotonic() < end:
            if self.stats.exists():
                data = json.loads(self.stats.read_text())
                if test(data):
                    return data
            time.sleep(0.1)
        raise AssertionError(f"stats never satisfied the condition: {data}")

    def code(self) -> str:
        return json.loads((self.state / "pairing.json").read_text())["code"]

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()
        return (self.root / "play.log").read_text()


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    bundle = build_bundle(root / "bundle")
    with JackDummy(name=f"mbremote{os.getpid()}"):
        b = Box(root, bundle, script=json.dumps([{"at": KNOB_TURN_S, "mood": -0.5}]))
        try:
            b.wait_stats(lambda d: d["bars_played"] >= 1, 30)
            yield b
        finally:
            log = b.stop()
        assert b.proc.returncode == 0, log


def chrome(downloads: Path):
    """Debian's headless Chromium under selenium, downloading into ``downloads``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=430,1120",
    ):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.downloads = downloads
    return driver


def pair_page(box: Box, browser) -> None:
    """Open the page and pair it with the box's code."""
    from selenium.webdriver.common.by import By

    browser.get(box.url + "/")
    _wait(lambda: browser.find_element(By.ID, "pairing").is_displayed(), what="the pairing form")
    browser.find_element(By.ID, "pair-code").send_keys(box.code())
    browser.find_element(By.ID, "pair-go").click()
    _wait(lambda: browser.find_element(By.ID, "remote").is_displayed(), what="the remote after pairing")


@pytest.fixture(scope="module")
def browser(box):
    downloads = box.root / "downloads"
    downloads.mkdir()
    driver = chrome(downloads)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(test, timeout_s: float = 20.0, what: str = "condition"):
    """``test()``'s first truthy value within ``timeout_s``; a page still loading counts as not yet
    (an element gone with the old document: Chromium says "stale element" or, mid-navigation, "Node
    with given id does not belong to the document")."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            value = test()
        except (NoSuchElementException, StaleElementReferenceException):
            value = None
        except WebDriverException as exc:
            if "does not belong to the document" not in str(exc):
                raise
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _http(box: Box, method: str, path: str, body=None, headers=None):
    """(status, decoded JSON or bytes) of a request to the box."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(box.url + path, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read(65536)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def _pair(box: Box) -> tuple[str, str]:
    """Pair over HTTP: (session cookie value, CSRF token)."""
    request = urllib.request.Request(
        box.url + "/api/pair",
        data=json.dumps({"code": box.code()}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        cookie = response.headers["Set-Cookie"]
        csrf = json.loads(response.read())["csrf"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    return cookie.split(";")[0].split("=", 1)[1], csrf


# ---- the page, in a real browser ------------------------------------------------------------------


def test_page_pairs_then_shows_the_bar_count_advancing(box, browser):
    from selenium.webdriver.common.by import By

    browser.get(box.url + "/")
    _wait(lambda: browser.find_element(By.ID, "pairing").is_displayed(), what="the pairing form")
    assert not browser.find_element(By.ID, "remote").is_displayed()
    browser.find_element(By.ID, "pair-code").send_keys("000000" if box.code() != "000000" else "111111")
    browser.find_element(By.ID, "pair-go").click()
    _wait(lambda: "wrong" in browser.find_element(By.ID, "pair-error").text, what="the wrong-code error")
    field = browser.find_element(By.ID, "pair-code")
    field.clear()
    field.send_keys(box.code())
    browser.find_element(By.ID, "pair-go").click()
    _wait(lambda: browser.find_element(By.ID, "remote").is_displayed(), what="the remote after pairing")
    first = int(_wait(lambda: browser.find_element(By.ID, "bar").text, what="a bar count"))
    _wait(lambda: int(browser.find_element(By.ID, "bar").text) >= first + 2, 20, "the bar count advancing")
    assert browser.find_element(By.ID, "state").text == "playing"


def test_a_knob_turned_on_the_page_changes_the_next_bar(box, browser):
    before = box.wait_stats(lambda d: True)
    assert before["controls"]["tempo_bpm"] != 150
    browser.execute_script(
        "const t = document.getElementById('tempo'); t.value = 150;"
        "t.dispatchEvent(new Event('input', {bubbles: true}));"
    )
    after = box.wait_stats(lambda d: d["controls"]["tempo_bpm"] == 150, 10)
    assert after["generation"] > before["generation"]  # regenerated from the next bar with the new tempo
    log = (box.root / "play.log").read_text()
    assert "controls: style 0.00 tempo 150 BPM" in log
    browser.execute_script(
        "const v = document.getElementById('variation'); v.value = 0.8;"
        "v.dispatchEvent(new Event('input', {bubbles: true}));"
    )
    varied = box.wait_stats(lambda d: d["controls"]["variation"] == 0.8, 10)
    assert varied["controls"]["tempo_bpm"] == 150 and varied["generation"] > after["generation"]


def test_buttons_act(box, browser):
    from selenium.webdriver.common.by import By

    before = box.wait_stats(lambda d: True)
    browser.find_element(By.ID, "btn-next").click()
    after = box.wait_stats(lambda d: d["generation"] > before["generation"], 10)
    assert after["seed"] != before["seed"]  # next: a new piece
    for button, logged in (("btn-keep", "keep: "), ("btn-new", "new tune: ")):
        before = box.wait_stats(lambda d: True)
        browser.find_element(By.ID, button).click()
        box.wait_stats(lambda d, g=before["generation"]: d["generation"] > g, 10)
        assert logged in (box.root / "play.log").read_text()
    browser.find_element(By.ID, "btn-play").click()
    box.wait_stats(lambda d: d["state"] == "paused", 10)
    browser.find_element(By.ID, "btn-play").click()
    box.wait_stats(lambda d: d["state"] in ("playing", "starting"), 10)


def test_a_saved_recording_downloads_as_wav_and_midi(box, browser):
    import mido
    import soundfile
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "btn-save").click()
    box.wait_stats(lambda d: d["saves"] >= 1, 20)
    # the page lists the recordings again itself: the state pushed to it says a save landed
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#recordings a.dl-mid"), what="the recording listed")
    browser.find_element(By.CSS_SELECTOR, "#recordings a.dl-wav").click()
    browser.find_element(By.CSS_SELECTOR, "#recordings a.dl-mid").click()
    done = lambda ext: [p for p in browser.downloads.glob(f"*.{ext}") if p.stat().st_size]  # noqa: E731
    wav = _wait(lambda: done("wav"), what="the WAV download")[0]
    mid = _wait(lambda: done("mid"), what="the MIDI download")[0]
    audio, rate = soundfile.read(wav)
    assert rate == 44100 and audio.shape[1] == 2 and audio.shape[0] > rate and abs(audio).max() > 0.01
    midi = mido.MidiFile(mid)
    assert sum(1 for m in midi if m.type == "note_on" and m.velocity) > 10


def test_a_recording_plays_in_the_page_and_is_deleted_from_it(box, browser):
    from selenium.webdriver.common.by import By

    rows = "#recordings li"
    first = len(list(box.recordings.glob("*.wav")))
    _wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, rows)) == first, what="the recordings listed")
    browser.find_element(By.ID, "btn-save").click()  # one more: one goes, the others stay for later
    _wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, rows)) == first + 1, 30, "the new one listed")
    name = (
        browser.find_elements(By.CSS_SELECTOR, rows)[-1].find_element(By.CLASS_NAME, "name").text.split()[0]
    )
    button = f"//ul[@id='recordings']/li[span[starts-with(text(), '{name} ')]]//button[text()='%s']"
    browser.find_element(By.XPATH, button % "play").click()
    played = "return document.getElementById('player').currentTime"
    _wait(lambda: browser.execute_script(played) > 0.5, 20, "the recording playing in the page")
    browser.execute_script("document.getElementById('player').pause()")
    browser.find_element(By.XPATH, button % "delete").click()
    _wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, rows)) == first, what="the list updated")
    assert not list(box.recordings.glob(f"{name}.*")) and len(list(box.recordings.glob("*.wav"))) == first


def test_presets_save_and_recall_the_knobs_and_seed(box, browser):
    """(After the box's own scripted knob turn: a knob change right after NEXT continues from the bar
    playing, whose seed is the old one, so it would undo the NEXT; the supervisor's to fix.)"""
    from selenium.webdriver.common.by import By

    saved = box.wait_stats(lambda d: d["controls"]["mood"] == -0.5, KNOB_TURN_S + 30)
    browser.find_element(By.ID, "preset-name").send_keys("slow one")
    browser.find_element(By.ID, "preset-save").click()
    _wait(lambda: "slow one" in browser.find_element(By.ID, "presets").text, what="the preset listed")
    stored = json.loads((box.state / "presets.json").read_text())
    assert stored[0]["name"] == "slow one" and stored[0]["tempo_bpm"] == saved["controls"]["tempo_bpm"]
    browser.find_element(By.ID, "btn-next").click()  # another seed
    box.wait_stats(lambda d: d["seed"] != stored[0]["seed"], 30)
    browser.find_element(By.XPATH, "//ul[@id='presets']//button[text()='recall']").click()
    box.wait_stats(lambda d: d["seed"] == stored[0]["seed"], 30)  # 10 s was too short on a loaded host


def test_a_knob_turned_on_the_box_shows_on_the_page_and_keeps_the_page_s_other_knobs(box, browser):
    from selenium.webdriver.common.by import By

    turned = box.wait_stats(lambda d: d["controls"]["mood"] == -0.5, KNOB_TURN_S + 20)
    assert turned["controls"]["tempo_bpm"] == 150 and turned["controls"]["variation"] == 0.8  # the page's
    _wait(lambda: browser.find_element(By.ID, "val-mood").text == "-0.50", 5, "the page showing the knob")
    assert browser.find_element(By.ID, "val-tempo").text == "150 BPM"


def test_the_stream_plays_in_the_browser(box, browser):
    """The page plays the box's 16-bit PCM through Web Audio from the first bar it gets: the music (not
    silence) is heard within a fraction of a second of the bar starting on the box."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "listen").click()
    _wait(lambda: browser.execute_script("return heardSeconds()") > 1.5, 30, "the stream heard in the page")
    first_bar_at = _wait(
        lambda: _http(box, "GET", "/api/state", headers=_auth(browser))[1]["stream"]["first_bar_at"]
    )
    heard = browser.execute_script("return {firstAt: listening.firstAt, peak: listening.peak}")
    stream = _http(box, "GET", "/api/state", headers=_auth(browser))[1]["stream"]
    latency = heard["firstAt"] / 1000.0 - first_bar_at
    print(
        f"stream latency (audio handed to the stream on the box -> the page plays it): {latency:.2f} s; converting to "
        f"16 bits: {100 * stream['cpu_s'] / stream['audio_s']:.3f} % of a core"
    )
    assert -0.5 < latency < 1.5  # (the page's lead is 0.3 s)
    assert heard["peak"] > 0.01  # music, not silence
    if os.environ.get("MUSICBOX_SCREENSHOT"):
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(os.environ["MUSICBOX_SCREENSHOT"])
    browser.find_element(By.ID, "listen").click()
    _wait(lambda: browser.find_element(By.ID, "listen").text == "listen", what="the stream stopped")
    _wait(lambda: _http(box, "GET", "/api/state", headers=_auth(browser))[1]["stream"]["listeners"] == 0)


def test_worker_killed_with_a_page_open_and_listening_plays_on_without_underruns(box, browser):
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "listen").click()
    heard = "return heardSeconds()"
    _wait(lambda: browser.execute_script(heard) > 1.0, 30, "the stream playing")
    before = box.wait_stats(lambda d: d["state"] == "playing" and d["worker_pid"])
    os.kill(before["worker_pid"], signal.SIGKILL)
    after = box.wait_stats(
        lambda d: d["worker_restarts"] > before["worker_restarts"] and d["state"] == "playing", 20
    )
    now = browser.execute_script(heard)
    _wait(lambda: browser.execute_script(heard) > now + 1.0, 20, "the stream going on after the kill")
    assert after["underruns"] == 0 and box.wait_stats(lambda d: True)["underruns"] == 0
    print(
        f"chunks that came too late for their place in the page: {browser.execute_script('return listening.gaps')}"
    )
    browser.find_element(By.ID, "listen").click()


def test_the_meter_button_steps_the_styles_meters_and_the_page_shows_the_meter(box, browser):
    """On the quartet (4/4, 3/4, 6/8) the button asks for 3/4; the box plays it from a bar line and the
    page shows it; a meter no style plays is refused."""
    from selenium.webdriver.common.by import By

    browser.execute_script(
        "const s = document.getElementById('style'); s.value = 2;"
        "s.dispatchEvent(new Event('input', {bubbles: true}));"
    )
    box.wait_stats(lambda d: d["controls"]["style"] == 2.0, 10)
    _wait(
        lambda: "→ 3/4" in browser.find_element(By.ID, "btn-meter").text, 10, "the next meter on the button"
    )
    browser.find_element(By.ID, "btn-meter").click()
    box.wait_stats(lambda d: d["controls"]["meter"] == "3/4" and d["meter"] == "3/4", 20)
    _wait(lambda: browser.find_element(By.ID, "meter").text == "3/4", 10, "the page showing the bar's meter")
    cookie, csrf = _pair(box)
    auth = {"Cookie": f"musicbox_session={cookie}", "X-Musicbox-CSRF": csrf}
    status, reply = _http(box, "POST", "/api/controls", {"meter": "5/4"}, auth)
    assert status == 400 and "meter: got '5/4'" in reply["error"]


SMALL_TARGETS = """
return [...document.querySelectorAll('#remote button, #remote input, #remote a')]
  .filter((e) => e.offsetParent !== null)
  .map((e) => { const r = e.getBoundingClientRect(); return [e.id || e.textContent.trim(), r.width, r.height]; })
  .filter(([, w, h]) => w < 44 || h < 44);
"""
BROKEN_WORDS = """
const broken = [], walker = document.createTreeWalker(document.getElementById('remote'), NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  if (!node.parentElement.offsetParent) continue;
  for (const m of node.data.matchAll(/\\S+/g)) {
    const range = document.createRange();
    range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
    const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
    if (tops.size > 1) broken.push(m[0]);
  }
}
return broken;
"""


def test_at_phone_size_every_control_is_a_44px_target_no_word_breaks_and_the_volume_steps(box, browser):
    """At 390 x 844 (a phone), with a preset and a recording listed: every button, slider, field and
    link is at least 44 px each way, no word is broken across lines, nothing scrolls sideways; the volume
    buttons step the box's volume and the page shows it."""
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True},
    )
    try:
        browser.find_element(By.ID, "preset-name").send_keys("mood check")
        browser.find_element(By.ID, "preset-save").click()
        _wait(lambda: "mood check" in browser.find_element(By.ID, "presets").text, what="the preset listed")
        if not list(box.recordings.glob("*.wav")):
            browser.find_element(By.ID, "btn-save").click()
        _wait(
            lambda: browser.find_elements(By.CSS_SELECTOR, "#recordings a.dl-wav"), 30, "a recording listed"
        )
        assert browser.execute_script("return innerWidth") == 390
        assert browser.execute_script(SMALL_TARGETS) == []
        assert browser.execute_script(BROKEN_WORDS) == []
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
        volume = box.wait_stats(lambda d: True)["volume_db"]
        browser.find_element(By.ID, "btn-volume-down").click()
        lower = box.wait_stats(lambda d: d["volume_db"] < volume, 10)["volume_db"]
        _wait(
            lambda: browser.find_element(By.ID, "volume").text == f"{lower:.0f} dB", 10, "the page's volume"
        )
        browser.find_element(By.ID, "btn-volume-up").click()
        box.wait_stats(lambda d: d["volume_db"] == volume, 10)
        _wait(lambda: browser.find_element(By.ID, "volume").text == f"{volume:.0f} dB", 10, "the volume back")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_unpairing_ends_the_session(box, browser):
    from selenium.webdriver.common.by import By

    old = _auth(browser)
    assert _http(box, "GET", "/api/state", headers=old)[0] == 200
    browser.find_element(By.ID, "unpair").click()
    _wait(lambda: browser.find_element(By.ID, "pairing").is_displayed(), what="the pairing form again")
    assert _http(box, "GET", "/api/state", headers=old)[0] == 401


def _auth(browser) -> dict:
    return {"Cookie": f"musicbox_session={browser.get_cookie('musicbox_session')['value']}"}


# ---- what must be refused -----------------------------------------------------------------------------


def test_nothing_is_readable_or_changeable_without_a_paired_session(box):
    name = next(box.recordings.glob("*.wav")).name
    for method, path, body in [
        ("GET", "/api/state", None),
        ("GET", "/api/events", None),
        ("GET", "/api/presets", None),
        ("GET", "/api/recordings", None),
        ("GET", f"/recordings/{name}", None),
        ("GET", "/stream.mp3", None),
        ("POST", "/api/button", {"button": "save"}),
        ("POST", "/api/controls", {"tempo_bpm": 90}),
        ("DELETE", f"/api/recordings/{name[:-4]}", None),
    ]:
        for headers in ({}, {"Cookie": "musicbox_session=forged-token"}):
            status, reply = _http(box, method, path, body, headers)
            assert status == 401, (method, path, headers, status, reply)
    assert (box.recordings / name).exists()
    assert _http(box, "GET", "/api/session")[1] == {"paired": False}


def test_a_state_change_needs_the_csrf_token_and_the_same_origin(box):
    cookie, csrf = _pair(box)
    auth = {"Cookie": f"musicbox_session={cookie}"}
    saves = box.wait_stats(lambda d: True)["saves"]
    assert _http(box, "POST", "/api/button", {"button": "save"}, auth)[0] == 403  # no CSRF header
    wrong = {**auth, "X-Musicbox-CSRF": "0" * 32}
    assert _http(box, "POST", "/api/button", {"button": "save"}, wrong)[0] == 403
    cross = {**auth, "X-Musicbox-CSRF": csrf, "Origin": "http://evil.example"}
    assert _http(box, "POST", "/api/button", {"button": "save"}, cross)[0] == 403
    cross_site = {**auth, "X-Musicbox-CSRF": csrf, "Sec-Fetch-Site": "cross-site"}
    assert _http(box, "POST", "/api/button", {"button": "save"}, cross_site)[0] == 403
    # refused before the press reaches the box: a volume step pressed now is the next thing it does
    volume = box.wait_stats(lambda d: True)["volume_db"]
    assert (
        _http(box, "POST", "/api/button", {"button": "volume_down"}, {**auth, "X-Musicbox-CSRF": csrf})[0]
        == 200
    )
    box.wait_stats(lambda d: d["volume_db"] < volume, 10)
    assert box.wait_stats(lambda d: True)["saves"] == saves
    assert (
        _http(box, "POST", "/api/button", {"button": "volume_up"}, {**auth, "X-Musicbox-CSRF": csrf})[0]
        == 200
    )
    status, reply = _http(box, "POST", "/api/controls", {"tempo_bpm": 900}, {**auth, "X-Musicbox-CSRF": csrf})
    assert status == 400 and "tempo_bpm" in reply["error"]


def test_a_cross_site_page_in_the_browser_cannot_act(box, browser):
    """A page from another origin, open in the paired browser, posts to the box: refused."""
    page = (
        b"<script>fetch('%s/api/button', {method: 'POST', mode: 'no-cors', credentials: 'include',"
        b" headers: {'Content-Type': 'text/plain'}, body: '{\"button\": \"save\"}'})"
        b".then(() => document.title = 'sent', () => document.title = 'sent');</script>" % box.url.encode()
    )

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        saves = box.wait_stats(lambda d: True)["saves"]
        refused = (box.root / "play.log").read_text().count("refused POST /api/button")
        browser.get(f"http://localhost:{server.server_address[1]}/")
        _wait(lambda: browser.title == "sent", what="the cross-site request")
        log = box.root / "play.log"
        _wait(lambda: log.read_text().count("refused POST /api/button") > refused, 10, "the refusal")
        assert box.wait_stats(lambda d: True)["saves"] == saves
    finally:
        server.shutdown()


def test_a_pairing_code_works_once(box):
    code = box.code()
    first = _http(box, "POST", "/api/pair", {"code": code})
    assert first[0] == 200 and first[1]["paired"]
    replay = _http(box, "POST", "/api/pair", {"code": code})
    assert replay[0] == 403 and "wrong" in replay[1]["error"]
    assert box.code() != code


def test_no_request_reaches_a_file_outside_the_recordings_folder(box):
    cookie, csrf = _pair(box)
    auth = {"Cookie": f"musicbox_session={cookie}"}
    secret = box.root / "secret.wav"
    secret.write_bytes(b"RIFF-not-yours")
    (box.recordings / "link.wav").symlink_to(secret)
    for path in (
        "/recordings/..%2Fsecret.wav",
        "/recordings/%2E%2E%2Fsecret.wav",
        "/recordings/..%2Fstate%2Fsessions.json",
        "/recordings/%2Fetc%2Fpasswd",
        "/recordings/link.wav",
        "/recordings/../secret.wav",
        "/recordings/.hidden.wav",
    ):
        status, reply = _http(box, "GET", path, headers=auth)
        assert status in (400, 404), (path, status)
        assert b"not-yours" not in (reply if isinstance(reply, bytes) else json.dumps(reply).encode())
    status, _ = _http(box, "DELETE", "/api/recordings/..%2Fsecret", headers={**auth, "X-Musicbox-CSRF": csrf})
    assert status == 404 and secret.exists()


def test_wrong_pairing_codes_are_rate_limited(box):
    right = box.code()
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    statuses = []  # (the browser test's wrong code and the replay may still count in this minute)
    while not statuses or statuses[-1] == 403 and len(statuses) <= 3:
        statuses.append(_http(box, "POST", "/api/pair", {"code": wrong})[0])
    assert statuses[0] == 403 and statuses[-1] == 429, statuses
    status, reply = _http(box, "POST", "/api/pair", {"code": right})
    assert status == 429 and "try again" in reply["error"]  # even the right code, for the minute
