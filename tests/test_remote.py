"""The web remote's parts without a browser: [remote] config, pairing and sessions, the recordings folder
guard, presets, the MP3 stream, the clock output for a box with no sound card, the terminal following a
change made on the page, and the systemd drop-in. (The browser end to end is test_remote_browser.py.)"""

from __future__ import annotations

import configparser
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import soundfile

from musicbox.config import load_config
from musicbox.errors import AudioDeviceError, ConfigError
from musicbox.remote.auth import WINDOW_S, Pairing, read_pairing
from musicbox.remote.library import Preset, Presets, Recordings
from musicbox.remote.stream import Listener, StreamHub
from musicbox.runtime.box.player import ClockStream, Player, PlayerSettings
from musicbox.runtime.box.ring import BarRing
from musicbox.runtime.controls import VARIATION, Controls


def _config(tmp_path, text: str):
    path = tmp_path / "box.toml"
    path.write_text(text)
    return load_config(path)


def test_remote_is_off_by_default_and_its_section_is_strict(tmp_path):
    remote = _config(tmp_path, "").remote
    assert remote.enabled is False and remote.port == 8047 and remote.state_dir is None
    with pytest.raises(ConfigError, match=r"box.toml: remote.prot: unknown key; allowed: the keys enabled"):
        _config(tmp_path, "[remote]\nprot = 80\n")
    with pytest.raises(ConfigError, match=r"remote.port: got 70000 .*from 1 to 65535"):
        _config(tmp_path, "[remote]\nport = 70000\n")
    on = _config(tmp_path, '[remote]\nenabled = true\nstate_dir = "st"\n').remote
    assert on.enabled and on.state_dir == tmp_path / "st"


def test_a_pairing_code_works_once_and_wrong_codes_are_rate_limited(tmp_path):
    pairing = Pairing(tmp_path, "http://box:8047/", attempts=3)
    assert read_pairing(tmp_path) is None  # not shown before the server listens
    pairing.announce()
    code = pairing.code
    shown = read_pairing(tmp_path)
    assert shown["code"] == code and shown["url"] == "http://box:8047/"
    assert stat.S_IMODE((tmp_path / "pairing.json").stat().st_mode) == 0o600
    token, wait = pairing.pair(code, now=0.0)
    assert token and wait == 0 and pairing.valid(token)
    assert pairing.code != code and read_pairing(tmp_path)["code"] == pairing.code
    assert pairing.pair(code, now=1.0) == (None, 0.0)  # replayed
    assert not pairing.valid("forged") and not pairing.valid(None)
    assert pairing.pair("x", now=2.0) == (None, 0.0)
    assert pairing.pair("y", now=3.0) == (None, 0.0)  # 3 wrong codes this minute
    refused, wait = pairing.pair(pairing.code, now=4.0)
    assert refused is None and wait == pytest.approx(WINDOW_S - 3.0)
    token2, _ = pairing.pair(pairing.code, now=1.0 + WINDOW_S)  # the first wrong one has aged out
    assert token2 and pairing.valid(token2)


def test_sessions_survive_a_restart_and_the_file_holds_no_token(tmp_path):
    pairing = Pairing(tmp_path, "http://box/")
    token, _ = pairing.pair(pairing.code)
    assert token not in (tmp_path / "sessions.json").read_text()
    again = Pairing(tmp_path, "http://box/")
    assert again.valid(token)
    again.forget(token)
    assert not Pairing(tmp_path, "http://box/").valid(token)


def test_only_recordings_directly_in_the_folder_are_reachable(tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "musicbox-1.wav").write_bytes(b"RIFF")
    (folder / "musicbox-1.mid").write_bytes(b"MThd")
    (folder / ".musicbox-2.wav.tmp").write_bytes(b"partial")
    (tmp_path / "secret.wav").write_bytes(b"secret")
    (folder / "link.wav").symlink_to(tmp_path / "secret.wav")
    (folder / "sub").mkdir()
    (folder / "sub" / "x.wav").write_bytes(b"RIFF")
    rec = Recordings(folder)
    assert [(e["name"], e["files"]) for e in rec.listing()] == [
        ("musicbox-1", ["musicbox-1.mid", "musicbox-1.wav"])
    ]
    assert rec.file("musicbox-1.wav") == folder / "musicbox-1.wav"
    for name in ("../secret.wav", "/etc/passwd", "sub/x.wav", "link.wav", ".musicbox-2.wav.tmp", "a.txt", ""):
        assert rec.file(name) is None, name
    assert rec.delete("../secret") == [] and (tmp_path / "secret.wav").exists()
    assert rec.delete("musicbox-1") == ["musicbox-1.wav", "musicbox-1.mid"] and rec.listing() == []
    assert Recordings(tmp_path / "missing").listing() == []


def test_the_box_steps_through_the_presets_the_page_saved(tmp_path):
    from musicbox.remote.library import PresetStepper

    presets = Presets(tmp_path / "presets.json")
    stepper = PresetStepper(presets)
    assert stepper.step() is None  # none saved yet
    presets.save(Preset("calm", 0.0, 70.0, -0.5, 1))
    presets.save(Preset("jig", 2.0, 140.0, 0.5, 2, meter="6/8"))
    assert [stepper.step().name for _ in range(3)] == ["calm", "jig", "calm"]
    presets.save(Preset("waltz", 1.0, 90.0, 0.0, 3))  # saved on the page meanwhile
    assert [stepper.step().name for _ in range(3)] == ["jig", "waltz", "calm"]
    presets.delete("jig")
    stepper.current = "jig"  # the one it stood on is gone: from the first again
    step = stepper.step()
    assert step.name == "calm" and step.controls == Controls(0.0, 70.0, -0.5, VARIATION, "")


def test_presets_round_trip_and_a_corrupt_file_reads_as_empty(tmp_path):
    presets = Presets(tmp_path / "presets.json")
    presets.save(Preset("a", 1.0, 90.0, -0.5, 7))
    presets.save(Preset("b", 0.0, 120.0, 0.5, 8))
    presets.save(Preset("a", 2.0, 91.0, 0.0, 9))  # replaces "a"
    assert [p.name for p in presets.saved()] == ["b", "a"] and presets.get("a").seed == 9
    assert presets.delete("b") and not presets.delete("b")
    (tmp_path / "presets.json").write_text("{not json")
    assert presets.saved() == []


def test_the_stream_does_nothing_without_listeners_and_sends_every_listener_the_same_pcm():
    hub = StreamHub(44100)
    bar = (0.5 * np.sin(np.arange(88200) / 20.0)).astype(np.float32)[:, None].repeat(2, axis=1)
    hub.feed(bar)
    assert hub.audio_s == 0 and hub.cpu_s == 0  # nobody listens: not even converted
    first, second = [], []
    assert hub.add(Listener(lambda data: first.append(data) or True))
    assert hub.add(Listener(lambda data: second.append(data) or True))
    for _ in range(3):
        hub.feed(bar)
    assert len(first) == 3 and all(a is b for a, b in zip(first, second, strict=True))  # converted once
    audio, rate = soundfile.read(io.BytesIO(hub.header + b"".join(first)), dtype="float32")
    assert rate == 44100 and audio.shape == (3 * 88200, 2)
    assert np.abs(audio[:88200] - bar).max() < 1e-4  # 16 bits: what played, to 1/32768
    assert hub.audio_s == pytest.approx(6.0) and hub.cpu_s < 0.5


def test_a_listener_that_falls_behind_is_dropped_and_the_listeners_are_bounded():
    from musicbox.remote.stream import MAX_LISTENERS

    hub = StreamHub(44100)
    behind = Listener(lambda data: False)  # its queue is full
    assert hub.add(behind)
    hub.feed(np.zeros((4410, 2), np.float32))
    assert hub.listeners == 0
    for _ in range(MAX_LISTENERS):
        assert hub.add(Listener(lambda data: True))
    assert not hub.add(Listener(lambda data: True)) and hub.listeners == MAX_LISTENERS


def test_the_terminal_box_shows_the_remote_address_and_pairing_code(tmp_path):
    from types import SimpleNamespace

    from rich.console import Console

    from musicbox.commands.play import _status_publisher
    from musicbox.device import open_backend
    from musicbox.runtime.box.status import BoxStatus
    from musicbox.runtime.controls import Controls

    config = _config(tmp_path, '[knobs]\nbackend = "terminal"\n')
    read_fd, write_fd = os.pipe()
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    backend = open_backend(config, ("chorale",), input_fd=read_fd, console=console)
    published = []
    remote = SimpleNamespace(url="http://10.0.0.7:8047/", pairing=SimpleNamespace(code="424242"))
    remote.publish = published.append
    box = SimpleNamespace(style_names=("chorale",), recorder=None)
    try:
        backend.start(lambda c: None, lambda b: None)
        stats = BoxStatus(state="playing", bars_played=3, controls=Controls(tempo_bpm=90.0), meter="4/4")
        _status_publisher(None, backend, box, remote)(stats)
        assert "remote http://10.0.0.7:8047/ pairing code 424242" in out.getvalue()
        assert published == [stats]
    finally:
        backend.close()
        os.close(read_fd), os.close(write_fd)


def test_the_clock_stream_calls_back_in_real_time():
    calls = []
    stream = ClockStream(44100, 1024, 2, lambda out, frames, t, status: calls.append((out.shape, frames)))
    t0 = time.monotonic()
    stream.start()
    _until(lambda: len(calls) >= 43, 10)  # about a second of blocks
    stream.abort()
    expected = (time.monotonic() - t0) * 44100 / 1024  # however long this busy machine took
    assert stream.active is False
    assert expected - 3 <= len(calls) <= expected + 1, (len(calls), expected)
    assert calls[0] == ((1024, 2), 1024)


def test_no_sound_card_plays_to_the_clock_with_the_remote_and_says_how_to_otherwise():
    ring = BarRing.create(4, 4096)
    try:
        settings = PlayerSettings(device="no-such-device-anywhere")
        with pytest.raises(AudioDeviceError, match=r"musicbox play --remote.*\[remote\] enabled = true"):
            Player(ring, settings).open()
        player = Player(ring, PlayerSettings(device="no-such-device-anywhere", clock_fallback=True))
        player.start()
        try:
            assert player.healthy() and "paced by the clock" in player.describe()
            _until(lambda: player.callbacks >= 5, 10)
            assert player.check() is player.state
        finally:
            player.close()
    finally:
        ring.close()


def test_the_terminal_knobs_follow_a_change_made_on_the_page(tmp_path):
    from rich.console import Console

    from musicbox.device import open_backend

    config = _config(tmp_path, '[knobs]\nbackend = "terminal"\nrate_limit = 0.0\npoll_interval = 0.005\n')
    read_fd, write_fd = os.pipe()
    console = Console(file=io.StringIO(), force_terminal=True, width=110, color_system=None)
    backend = open_backend(config, ("chorale", "folk"), input_fd=read_fd, console=console)
    seen = []
    try:
        backend.start(seen.append, lambda b: None)
        page = Controls(style=1.0, tempo_bpm=140.0, mood=0.5, variation=0.9)
        backend.follow(page)
        os.write(write_fd, b"w")  # a key press goes on from the page's position: tempo +2
        _until(lambda: len(seen) >= 2, 5)
        # the key's change comes right after the start: the page's change was not echoed back to the box
        assert seen == [Controls(), Controls(style=1.0, tempo_bpm=142.0, mood=0.5, variation=0.9)]
    finally:
        backend.close()
        os.close(read_fd), os.close(write_fd)


def _dropin_unit(tmp_path):
    from musicbox.commands import install_service

    unit = tmp_path / "musicbox.service"
    unit.write_text(install_service.render_unit(install_service.exec_path(), "root", ["audio"], tmp_path))
    (tmp_path / "musicbox.service.d").mkdir()
    dropin = tmp_path / "musicbox.service.d" / "remote.conf"
    dropin.write_text(install_service.remote_dropin())
    return unit, dropin


def test_the_unit_opens_to_the_lan_only_through_the_remote_dropin(tmp_path):
    unit, dropin = _dropin_unit(tmp_path)
    base = configparser.ConfigParser(strict=False, interpolation=None)
    base.read_string(unit.read_text())
    assert (
        base["Service"]["IPAddressDeny"] == "any"
        and "AF_INET" not in base["Service"]["RestrictAddressFamilies"]
    )
    extra = configparser.ConfigParser(strict=False, interpolation=None)
    extra.read_string(dropin.read_text())
    assert set(extra["Service"]) == {"restrictaddressfamilies", "ipaddressallow", "privatenetwork"}
    assert (
        extra["Service"]["PrivateNetwork"] == "no"
    )  # the page in the LAN's namespace (tests/test_service.py)
    assert (
        "192.168.0.0/16" in extra["Service"]["IPAddressAllow"]
        and "any" not in extra["Service"]["IPAddressAllow"]
    )
    if shutil.which("systemd-analyze"):
        result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        problems = [line for line in result.stderr.splitlines() if "musicbox" in line]
        assert result.returncode == 0 and not problems, result.stderr


def test_install_service_shows_the_dropin_only_with_the_remote_on(tmp_path, capsys):
    from musicbox.cli import main

    off = tmp_path / "off.toml"
    off.write_text("")
    on = tmp_path / "on.toml"
    on.write_text("[remote]\nenabled = true\n")
    assert main(["install-service", "--dry-run", "--user", "root", "--config", str(off)]) == 0
    assert "remote.conf" not in capsys.readouterr().out
    assert main(["install-service", "--dry-run", "--user", "root", "--config", str(on)]) == 0
    assert "IPAddressAllow=" in capsys.readouterr().out


def test_the_doctor_shows_the_running_box_pairing_code(tmp_path):
    from musicbox.remote.doctor import check_remote

    config = _config(tmp_path, f'[remote]\nenabled = true\nstate_dir = "{tmp_path}/st"\n')
    assert "pairing code shows here" in check_remote(config).detail
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "pairing.json").write_text(
        json.dumps({"url": "http://b/", "code": "123456", "pid": os.getpid()})
    )
    assert "open http://b/ and pair with code 123456" in check_remote(config).detail
    assert "off" in check_remote(_config(tmp_path, "")).detail


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from tests.helpers.synthetic_bundle import build_bundle

    return build_bundle(tmp_path_factory.mktemp("bundle"))


def _play(tmp_path, bundle, remote: str, seconds: float = 6.0) -> subprocess.CompletedProcess:
    config = tmp_path / "box.toml"
    config.write_text(
        f'[audio]\ndevice = "no-such-device-anywhere"\n[recording]\nfolder = "{tmp_path}/rec"\n{remote}'
    )
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--bundle", str(bundle)]
    cmd += ["--backend", "none", "--seconds", str(seconds), "--stats", str(tmp_path / "s.json")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_with_no_sound_card_the_box_plays_to_the_stream_and_says_where_to_listen(tmp_path, bundle):
    port = _free_port()
    remote = f'[remote]\nenabled = true\nbind = "127.0.0.1"\nport = {port}\nstate_dir = "{tmp_path}/st"\n'
    result = _play(tmp_path, bundle, remote, seconds=10.0)
    assert result.returncode == 0, result.stderr
    assert f"open http://127.0.0.1:{port}/ and pair with code" in result.stderr
    assert "playing to the web remote's stream only" in result.stderr
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["bars_played"] >= 2 and stats["underruns"] == 0


def test_with_no_sound_card_and_the_remote_off_the_box_says_how_to_listen_in_a_browser(tmp_path, bundle):
    """However long this machine takes to start the box, it says so, waits, and stops cleanly."""
    config = tmp_path / "box.toml"
    config.write_text(
        f'[audio]\ndevice = "no-such-device-anywhere"\n[recording]\nfolder = "{tmp_path}/rec"\n'
    )
    log = tmp_path / "play.log"
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--bundle", str(bundle)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd + ["--backend", "none"], stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        _until(lambda: "musicbox play --remote" in log.read_text() or proc.poll() is not None, 60)
        assert proc.poll() is None, log.read_text()  # it waits for a device, it does not give up
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "waiting for the audio device" in text and "[remote] enabled = true" in text


def test_a_taken_port_is_a_clear_config_error_and_leaks_nothing(tmp_path, bundle):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        remote = f'[remote]\nenabled = true\nbind = "127.0.0.1"\nport = {port}\nstate_dir = "{tmp_path}/st"\n'
        result = _play(tmp_path, bundle, remote)
    assert result.returncode == 78
    assert f"[remote] cannot listen on 127.0.0.1:{port}" in result.stderr and "leaked" not in result.stderr
    assert not (tmp_path / "st" / "pairing.json").exists()  # no code shown for a server that never listened


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed")
def test_a_sound_card_that_shows_up_later_is_used_from_then_on(tmp_path, bundle):
    from musicbox.runtime.box.soak import JackDummy

    name = f"mblate{os.getpid()}"
    config = tmp_path / "box.toml"
    port = _free_port()
    config.write_text(
        f'[recording]\nfolder = "{tmp_path}/rec"\n'
        f'[remote]\nenabled = true\nbind = "127.0.0.1"\nport = {port}\nstate_dir = "{tmp_path}/st"\n'
    )
    stats = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "musicbox.cli", "play", "--config", str(config), "--bundle", str(bundle)]
    cmd += ["--backend", "none", "--seconds", "60", "--stats", str(stats)]
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}
    log = tmp_path / "play.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = JackDummy(name=name)
    try:
        _until(lambda: stats.exists() and json.loads(stats.read_text())["bars_played"] >= 1, 30)
        assert "playing to the web remote's stream only" in log.read_text()
        server.start()  # the sound card arrives
        _until(lambda: "an audio device is here now" in log.read_text(), 30)
        _until(lambda: json.loads(stats.read_text())["bars_played"] >= 6, 30)
        assert json.loads(stats.read_text())["underruns"] == 0
    finally:
        proc.terminate()
        proc.wait(30)
        server.stop()
    assert proc.returncode == 0, log.read_text()
    assert "JACK" in log.read_text().split("an audio device is here now")[1].splitlines()[0]


def _until(test, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not test():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
def test_the_unit_lets_the_remote_listen_only_with_its_dropin(tmp_path, bundle):
    """Under the unit's system-call and socket-family filters (tests/helpers/unit_sandbox.py), `musicbox
    play --remote` cannot listen; with the remote's drop-in it serves the page while the box plays."""
    from musicbox.commands import install_service
    from musicbox.runtime.box.soak import JackDummy
    from tests.test_service import _has_seccomp, _render, _sandboxed

    if shutil.which("jackd") is None or shutil.which("systemd-analyze") is None or not _has_seccomp():
        pytest.skip("needs jackd, systemd-analyze and Debian's python3-seccomp")
    unit = _render(tmp_path)
    with_dropin = tmp_path / "with-remote.service"
    with_dropin.write_text(unit.read_text() + "\n" + install_service.remote_dropin())
    port = _free_port()
    config = tmp_path / "box.toml"
    config.write_text(
        f'[knobs]\nbackend = "none"\n[recording]\nfolder = "{tmp_path}/rec"\n'
        f'[remote]\nbind = "127.0.0.1"\nport = {port}\nstate_dir = "{tmp_path}/st"\n'
    )
    stats = tmp_path / "stats.json"
    play = [sys.executable, "-m", "musicbox.cli", "play", "--remote", "--config", str(config)]
    play += ["--bundle", str(bundle), "--seconds", "12", "--stats", str(stats)]
    locked = subprocess.run(_sandboxed(unit, *play), capture_output=True, text=True, timeout=60)
    assert locked.returncode == 78 and "[remote] cannot listen" in locked.stderr, locked.stderr
    with JackDummy(name=f"mbunitremote{os.getpid()}"):
        proc = subprocess.Popen(_sandboxed(with_dropin, *play), stderr=subprocess.PIPE, text=True)
        try:
            _until(lambda: stats.exists() and json.loads(stats.read_text())["bars_played"] >= 1, 30)
            code = json.loads((tmp_path / "st" / "pairing.json").read_text())["code"]
            page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
            assert page.status == 200 and b"musicbox" in page.read()
            pair = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/pair",
                json.dumps({"code": code}).encode(),
                {"Content-Type": "application/json"},
            )
            assert urllib.request.urlopen(pair, timeout=10).status == 200
        finally:
            err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, err
    final = json.loads(stats.read_text())
    assert final["bars_played"] >= 3 and final["underruns"] == 0, final
