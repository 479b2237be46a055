"""No client of the web remote can stop the box: bounded connections shared fairly, idle ones closed,
descriptors kept for the box, a Host allow-list, per-client rate limits and pairing lockout, a 4xx JSON
error without a traceback for every malformed request, and the page's knob changes handed on as the
latest only. The real aiohttp server in this process (a stand-in box: the remote's own behaviour), then
the real ``musicbox play --remote`` under a low descriptor limit, flooded while its worker is killed."""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from musicbox.config import load_config
from musicbox.device import knob_map
from musicbox.remote import server as server_module
from musicbox.remote.auth import Pairing
from musicbox.remote.limits import ConnectionGate, RateLimit, box_names, client_of, host_allowed
from musicbox.runtime.box.status import BoxStatus
from musicbox.runtime.controls import Controls

STYLES = ("chorale", "folk", "celtic")


# ---- the parts --------------------------------------------------------------------------------------


def test_a_rate_limit_is_a_bucket_per_client():
    now = [0.0]
    rate = RateLimit(2.0, 4.0, clock=lambda: now[0])
    assert [rate.wait("a") for _ in range(4)] == [0.0] * 4
    assert rate.wait("a") == pytest.approx(0.5)  # empty: one more in half a second
    assert rate.wait("b") == 0.0  # another client is not held back
    now[0] = 0.5
    assert rate.wait("a") == 0.0 and rate.wait("a") == pytest.approx(0.5)


class _Transport:
    def __init__(self, busy: bool = False):
        self.busy, self.closed = busy, False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_the_gate_caps_each_client_and_makes_room_for_a_newcomer_from_the_busiest_idle_connection():
    gate = ConnectionGate(total=6, per_client=4, busy=lambda t: t.busy)
    flood = [_Transport(busy=i == 0) for i in range(4)]
    for t in flood:
        assert gate.admit("10.0.0.9") is None
        gate.add("10.0.0.9", t)
    assert "4 connections from 10.0.0.9" in gate.admit("10.0.0.9")
    for client in ("10.0.0.7", "10.0.0.8"):
        assert gate.admit(client) is None
        gate.add(client, _Transport())
    assert len(gate) == 6
    assert gate.admit("10.0.0.1") is None  # full: the busiest client's oldest idle one goes
    assert not flood[0].closed and flood[1].closed  # (its busy one stays)
    gate.add("10.0.0.1", _Transport())
    assert gate.admit("10.0.0.7") is None  # 10.0.0.9 holds 3 against its 1 + 1
    assert flood[2].closed
    gate.add("10.0.0.7", _Transport())
    assert gate.admit("10.0.0.8") == "6 connections held already"  # a fair share each now
    flood[3].close()
    assert gate.admit("10.0.0.8") is None  # a closed one frees its place


def test_the_host_must_name_this_box():
    names = box_names("0.0.0.0", ["musicbox.lan"])
    host = socket.gethostname().lower()
    for ok in ("localhost:8047", "LOCALHOST", "127.0.0.1:8047", "[::1]:8047", f"{host}:8047", "musicbox.lan"):
        assert host_allowed(ok, names, "192.168.1.20"), ok
    assert host_allowed(f"{host.split('.')[0]}.local:8047", names, "192.168.1.20")
    assert host_allowed("192.168.1.20:8047", names, "192.168.1.20")  # the address it came in on
    assert host_allowed("192.168.1.20", names, "::ffff:192.168.1.20")
    for bad in ("evil.example", "evil.example:8047", "192.168.1.21", "", None, "localhost.evil.example", "é"):
        assert not host_allowed(bad, names, "192.168.1.20"), bad


def test_a_client_is_its_address_or_its_ipv6_64():
    assert client_of("192.168.1.5") == "192.168.1.5" == client_of("::ffff:192.168.1.5")
    assert client_of("2001:db8:1:2:aaaa::1") == client_of("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"


def test_one_client_s_wrong_codes_never_lock_out_another(tmp_path):
    pairing = Pairing(tmp_path, "http://box/", attempts=3)
    for t in range(3):
        assert pairing.pair("000000" if pairing.code != "000000" else "111111", "10.0.0.9", now=t) == (
            None,
            0.0,
        )
    refused, wait = pairing.pair(pairing.code, "10.0.0.9", now=3.0)
    assert refused is None and wait > 0  # that client waits, even with the right code
    token, wait = pairing.pair(pairing.code, "10.0.0.2", now=3.0)
    assert token and wait == 0  # the owner pairs meanwhile
    assert pairing.pair("\udc80", "10.0.0.3", now=4.0) == (None, 0.0)  # not even ASCII: just wrong


def test_the_descriptor_limit_is_raised_and_the_connections_fit_well_under_it():
    probe = (
        "import resource; from musicbox.remote.limits import connection_budget, RESERVED_FDS;"
        "n, limit = connection_budget(); print(n, limit, resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )

    def run(soft: int, hard: int) -> list[int]:
        def lower() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

        out = subprocess.run(
            [sys.executable, "-c", probe], preexec_fn=lower, capture_output=True, text=True, check=True
        )
        return [int(x) for x in out.stdout.split()]

    connections, limit, soft = run(256, 4096)
    assert limit == soft == 4096 and connections == 128  # raised to the hard limit; the cap holds
    connections, limit, _ = run(200, 200)  # cannot be raised: a share of what the box does not need
    assert limit == 200 and 10 <= connections <= (200 - 64) // 2


# ---- the real server, a stand-in box -----------------------------------------------------------------


class Remote:
    """A RemoteServer on 127.0.0.1 with a stand-in box that records what the page hands on."""

    def __init__(self, tmp_path, extra: str = ""):
        config_file = tmp_path / "box.toml"
        port = _free_port()
        config_file.write_text(
            f'[remote]\nbind = "127.0.0.1"\nport = {port}\nstate_dir = "{tmp_path}/st"\n'
            f'hosts = "musicbox.lan"\n{extra}'
        )
        config = load_config(config_file)
        self.port = port
        self.controls: list[tuple[Controls, int | None]] = []
        self.buttons: list = []
        box = SimpleNamespace(style_names=STYLES, recorder=None)
        self.server = server_module.RemoteServer(
            config.remote,
            box=box,
            knob_map=knob_map(config, STYLES, [("4/4",), ("4/4", "3/4"), ("6/8",)]),
            on_controls=lambda c, seed: self.controls.append((c, seed)),
            on_button=self.buttons.append,
            recordings=tmp_path / "rec",
            sample_rate=44100,
        )
        self.server.start()
        self.server.publish(BoxStatus(state="playing", seed=7))

    def pair(self, source: str = "127.0.0.1") -> dict:
        """Headers of a paired session from ``source``."""
        status, headers, body = self.request(
            "POST", "/api/pair", json.dumps({"code": self.server.pairing.code}), source=source
        )
        assert status == 200, body
        cookie = headers["set-cookie"].split(";")[0]
        return {"Cookie": cookie, "X-Musicbox-CSRF": json.loads(body)["csrf"]}

    def request(self, method, path, body=None, headers=None, host=None, source="127.0.0.1"):
        """(status, lower-case headers, body text) of one request on a new connection from ``source``."""
        raw = body.encode() if isinstance(body, str) else body
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {host or f'127.0.0.1:{self.port}'}",
            "Connection: close",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
        if raw is not None:
            head += b"\r\nContent-Type: application/json\r\nContent-Length: %d" % len(raw)
        return self.raw(head + b"\r\n\r\n" + (raw or b""), source)

    def raw(self, data: bytes, source: str = "127.0.0.1"):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10, source_address=(source, 0)) as s:
            s.sendall(data)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = (line.split(": ", 1) for line in header_lines if ": " in line)
        headers = {name.lower(): value for name, value in fields}
        return int(status_line.split()[1]), headers, body.decode("utf-8", "replace")

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def remote(tmp_path):
    r = Remote(tmp_path)
    try:
        yield r
    finally:
        r.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(test, timeout_s: float, what: str = "the condition"):
    end = time.monotonic() + timeout_s
    while not (value := test()):
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


ROUTES = [
    ("GET", "/"),
    ("POST", "/api/pair"),
    ("GET", "/api/session"),
    ("POST", "/api/logout"),
    ("GET", "/api/state"),
    ("GET", "/api/events"),
    ("POST", "/api/controls"),
    ("POST", "/api/button"),
    ("GET", "/api/presets"),
    ("POST", "/api/presets"),
    ("POST", "/api/presets/recall"),
    ("DELETE", "/api/presets/x"),
    ("GET", "/api/recordings"),
    ("GET", "/recordings/x.wav"),
    ("DELETE", "/api/recordings/x"),
    ("GET", "/stream.wav"),
    ("GET", "/no/such/route"),
]


def test_a_foreign_host_gets_a_4xx_on_every_route(remote):
    auth = remote.pair()
    for method, path in ROUTES:
        body = "{}" if method == "POST" else None
        for headers in ({}, auth):
            status, _, reply = remote.request(method, path, body, headers, host="evil.example")
            assert (
                status == 421 and "does not answer to the Host 'evil.example'" in json.loads(reply)["error"]
            )
    for host in ("localhost", f"localhost:{remote.port}", "musicbox.lan", f"[::1]:{remote.port}"):
        assert remote.request("GET", "/", host=host)[0] == 200, host
    assert remote.raw(b"GET / HTTP/1.0\r\n\r\n")[0] == 421  # no Host at all


def test_malformed_cookies_headers_and_bodies_get_a_4xx_json_error_and_no_traceback(remote, caplog):
    caplog.set_level(logging.DEBUG)
    auth = remote.pair()
    for cookie in ("musicbox_session=é", "musicbox_session=\udcff\udcfe", '=;;"x;musicbox_session;=="'):
        status, _, reply = remote.request("GET", "/api/state", headers={"Cookie": cookie})
        assert status == 401 and "not paired" in json.loads(reply)["error"], cookie
        assert json.loads(remote.request("GET", "/api/session", headers={"Cookie": cookie})[2]) == {
            "paired": False
        }
    bad_csrf = {**auth, "X-Musicbox-CSRF": "é" * 32}
    assert remote.request("POST", "/api/button", '{"button": "next"}', bad_csrf)[0] == 403
    cases = [
        ("/api/controls", b"{not json", 400, "not JSON"),
        ("/api/controls", b"\xff\xfe\x00", 400, "not JSON"),
        ("/api/controls", b"[1, 2]", 400, "JSON object"),
        ("/api/controls", b"[" * 30000 + b"]" * 30000, 400, "not JSON"),
        ("/api/controls", b'{"tempo_bpm": NaN}', 400, "tempo_bpm: got nan"),
        ("/api/controls", b'{"tempo_bpm": 1e999}', 400, "tempo_bpm: got inf"),
        ("/api/controls", b'{"temp": 90}', 400, "temp: not a control"),
        ("/api/controls", b'{"meter": ["4/4"]}', 400, "meter: got"),
        ("/api/controls", b"{" + b" " * 70000 + b"}", 413, ""),
        ("/api/button", b'{"button": ["next"]}', 400, "button: got ['next']"),
        ("/api/button", b"{}", 400, "allowed: play_pause"),
        ("/api/pair", b'{"code": 123456}', 400, "6 digits"),
        ("/api/pair", b'{"code": "\\udc80"}', 403, "wrong pairing code"),
        ("/api/presets", b'{"name": "\\udc80"}', 400, "name: 1 to 40"),
        ("/api/presets/recall", b'{"name": {"a": 1}}', 404, "no preset"),
    ]
    for path, body, status, error in cases:
        got, headers, reply = remote.request("POST", path, body, auth)
        assert got == status and headers["content-type"].startswith("application/json"), (
            path,
            body[:20],
            got,
            reply,
        )
        assert error in json.loads(reply)["error"], (path, reply)
    for garbage in (
        b"GET / HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n",
        b'GET /api/state HTTP/1.1\r\nHost: localhost\r\nCookie: =;;"\x01;musicbox_session\r\n\r\n',
        b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ):
        assert 400 <= remote.raw(garbage)[0] < 500, garbage
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not tracebacks, [r.getMessage() for r in tracebacks]


def test_wrong_codes_from_one_client_never_lock_out_another_over_http(tmp_path):
    remote = Remote(tmp_path, "pair_attempts = 3\n")
    try:
        wrong = json.dumps({"code": "000000" if remote.server.pairing.code != "000000" else "111111"})
        statuses = [remote.request("POST", "/api/pair", wrong, source="127.0.0.2")[0] for _ in range(4)]
        assert statuses == [403, 403, 403, 429]
        remote.pair(source="127.0.0.1")  # the owner's phone pairs at once
    finally:
        remote.close()


def test_a_swept_knob_reaches_the_box_as_its_latest_value_at_most_every_tenth_of_a_second(remote):
    """A paired page sending as fast as it can: beyond its rate it gets 429s, another page does not; the
    box gets few changes, the last one the latest value accepted, never a backlog."""
    import http.client

    auth = remote.pair()
    other = remote.pair(source="127.0.0.2")
    conn = http.client.HTTPConnection("127.0.0.1", remote.port, timeout=10)
    accepted, statuses, t0 = None, [], time.monotonic()
    for i in range(80):
        tempo = 60 + i
        conn.request(
            "POST",
            "/api/controls",
            json.dumps({"tempo_bpm": tempo}),
            {**auth, "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
        if response.status == 200:
            accepted = tempo
    elapsed = time.monotonic() - t0
    conn.close()
    assert statuses.count(429) > 0 and statuses[:20] == [200] * 20  # the burst, then the rate
    assert remote.request("POST", "/api/controls", '{"mood": 0.5}', other, source="127.0.0.2")[0] == 200
    _until(lambda: remote.controls and remote.controls[-1][0].mood == 0.5, 5, "the other page's change")
    handed = [c.tempo_bpm for c, _ in remote.controls]
    assert len(handed) <= elapsed / server_module.HAND_ON_S + 3, (len(handed), elapsed)
    assert handed[-1] == accepted and handed == sorted(handed)  # the latest, in order, no backlog after it


def test_buttons_are_rate_limited_per_client(remote):
    auth = remote.pair()
    statuses = [remote.request("POST", "/api/button", '{"button": "next"}', auth)[0] for _ in range(20)]
    assert statuses.count(200) == len(remote.buttons) and 8 <= len(remote.buttons) < 20
    assert statuses[-1] == 429
    other = remote.pair(source="127.0.0.2")
    assert (
        remote.request("POST", "/api/button", '{"button": "volume_up"}', other, source="127.0.0.2")[0] == 200
    )


def test_twenty_pages_asking_for_the_stream_get_it_or_a_clear_503_and_all_listeners_the_same_bytes(remote):
    """(The fault campaign's "streams to 100 clients", at the per-client cap of 16 connections.)"""
    import numpy as np

    from musicbox.remote.stream import MAX_LISTENERS

    auth = remote.pair()
    request = f"GET /stream.wav HTTP/1.1\r\nHost: localhost\r\nCookie: {auth['Cookie']}\r\n\r\n".encode()
    pages = []
    for i in range(20):
        s = socket.create_connection(("127.0.0.1", remote.port), 10, (f"127.0.0.{2 + i // 8}", 0))
        s.sendall(request)
        pages.append(s)
    _until(lambda: all(_peek(s) for s in pages), 10, "every page answered")
    heads = [_peek(s) for s in pages]
    listening = [s for s, h in zip(pages, heads, strict=True) if h.startswith(b"HTTP/1.1 200")]
    refused = [h for h in heads if h.startswith(b"HTTP/1.1 503") and b"pages listen already" in h]
    assert len(listening) == MAX_LISTENERS and len(refused) == 20 - MAX_LISTENERS
    bar = (0.25 * np.sin(np.arange(4410) / 10.0)).astype(np.float32)[:, None].repeat(2, axis=1)
    remote.server.stream.feed(bar)  # what the supervisor does as a bar starts
    bodies = []
    for s in listening:
        s.setblocking(True)
        data = b""
        while data.count(b"RIFF") < 1 or len(data.split(b"\r\n\r\n", 1)[1]) < 44 + 4410 * 4:
            data += s.recv(65536)
        bodies.append(data.split(b"\r\n\r\n", 1)[1])
    assert all(body == bodies[0] for body in bodies)  # chunked framing aside, the same bytes for all
    for s in pages:
        s.close()
    _until(lambda: remote.server.stream.listeners == 0, 10, "the listeners gone")


def test_a_page_that_stops_reading_the_stream_is_dropped_before_its_backlog_grows(remote, caplog):
    import numpy as np

    from musicbox.remote.stream import BACKLOG_S

    auth = remote.pair()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", remote.port))
    stalled.sendall(
        f"GET /stream.wav HTTP/1.1\r\nHost: localhost\r\nCookie: {auth['Cookie']}\r\n\r\n".encode()
    )
    hub = remote.server.stream
    _until(lambda: hub.listeners == 1, 10, "the page listening")
    second = np.zeros((44100, 2), np.float32)
    fed = 0
    while hub.listeners and fed < 600:  # the box goes on playing; the page reads nothing
        hub.feed(second)
        fed += 1
        taken = threading.Event()  # the server's loop has queued that second (its callbacks run in order)
        remote.server._loop.call_soon_threadsafe(taken.set)
        assert taken.wait(5)
    assert hub.listeners == 0 and fed < 600  # dropped, not queued for ever
    assert f"fell {BACKLOG_S:g} s behind" in caplog.text
    stalled.close()


def test_connections_are_bounded_shared_fairly_and_idle_ones_close(tmp_path, monkeypatch):
    monkeypatch.setattr(server_module, "connection_budget", lambda: (8, 1024))
    monkeypatch.setattr(server_module, "PER_CLIENT", 4)
    monkeypatch.setattr(server_module, "IDLE_S", 3.0)
    remote = Remote(tmp_path)
    auth = remote.pair()
    flood: list[socket.socket] = []
    try:
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            for _ in range(6):  # 4 held from each source, the rest refused at once
                flood.append(socket.create_connection(("127.0.0.1", remote.port), 5, (source, 0)))
        _until(lambda: sum(not _open(s) for s in flood) >= len(flood) - 8, 5, "the connections over the caps")
        replies = [_peek(s) for s in flood]
        refused = [r for r in replies if r and r.startswith(b"HTTP/1.1 503") and b"too many connections" in r]
        held = [s for s, r in zip(flood, replies, strict=True) if r is None]
        assert len(held) <= 8 and len(refused) >= 6  # 18 tried: 4 a client at most, 8 in all
        assert replies.count(b"") + len(refused) + len(held) == len(flood)  # the rest: made room (closed)
        t0 = time.monotonic()
        assert remote.request("GET", "/api/state", headers=auth)[0] == 200  # room made for another client
        assert time.monotonic() - t0 < 2
        held = [s for s in flood if _open(s)]
        assert held
        _until(lambda: not any(_open(s) for s in held), 10, "idle connections closed")
    finally:
        for s in flood:
            s.close()
        remote.close()


def _peek(s: socket.socket) -> bytes | None:
    """What the server sent on ``s`` so far (b"": it closed it), or None while it holds it open, idle."""
    s.setblocking(False)
    try:
        return s.recv(4096, socket.MSG_PEEK)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _open(s: socket.socket) -> bool:
    """Whether the server still holds ``s`` open and has sent nothing on it."""
    return _peek(s) is None


# ---- the real box -------------------------------------------------------------------------------------

FD_LIMIT = 256


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from tests.helpers.synthetic_bundle import build_bundle

    return build_bundle(tmp_path_factory.mktemp("bundle"))


class Box:
    """``musicbox play --remote`` under a JACK dummy server and a soft and hard descriptor limit of
    :data:`FD_LIMIT`."""

    def __init__(self, root, bundle):
        self.port = _free_port()
        self.stats = root / "stats.json"
        self.state = root / "st"
        config = root / "box.toml"
        config.write_text(
            f'[recording]\nfolder = "{root}/rec"\n'
            f'[remote]\nbind = "127.0.0.1"\nport = {self.port}\nstate_dir = "{self.state}"\n'
        )
        cmd = [sys.executable, "-m", "musicbox.cli", "play", "--remote", "--config", str(config)]
        cmd += ["--bundle", str(bundle), "--seconds", "120", "--stats", str(self.stats), "--backend", "none"]
        self.log_path = root / "play.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed by stop())

        def lower() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=lower)

    def read(self) -> dict:
        return json.loads(self.stats.read_text()) if self.stats.exists() else {}

    def wait(self, test, timeout_s: float, what: str) -> dict:
        return _until(lambda: (d := self.read()) and test(d) and d, timeout_s, what)

    def pair(self) -> dict:
        code = json.loads((self.state / "pairing.json").read_text())["code"]
        status, headers, body = self.request("POST", "/api/pair", json.dumps({"code": code}))
        assert status == 200, body
        return {"Cookie": headers["set-cookie"].split(";")[0], "X-Musicbox-CSRF": json.loads(body)["csrf"]}

    def request(self, method, path, body=None, headers=None, timeout_s: float = 10):
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            hdrs = {**(headers or {}), **({"Content-Type": "application/json"} if body is not None else {})}
            conn.request(method, path, body, hdrs)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
        finally:
            conn.close()

    def stop(self, within_s: float = 5.0) -> float:
        """SIGTERM; the seconds it took to exit (asserted within ``within_s``)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(within_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"SIGTERM did not stop the box within {within_s} s") from None
        finally:
            self.log.close()
        return time.monotonic() - t0


@pytest.fixture
def box(tmp_path, bundle):
    from musicbox.runtime.box.soak import JackDummy

    if not _has_jackd():
        pytest.skip("jackd (Debian jackd2) is not installed")
    with JackDummy(name=f"mblimits{os.getpid()}"):
        b = Box(tmp_path, bundle)
        try:
            b.wait(lambda d: d["bars_played"] >= 1, 60, "the box playing")
            yield b
        finally:
            if b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait(10)
            b.log.close()


def _has_jackd() -> bool:
    import shutil

    return shutil.which("jackd") is not None


@pytest.mark.slow
def test_more_idle_connections_than_descriptors_while_the_worker_dies_leave_the_box_playing(box):
    auth = box.pair()
    flood: list[socket.socket] = []
    stop = threading.Event()

    def open_connections() -> None:  # idle connections from 20 addresses, more than the box's descriptors
        for i in range(FD_LIMIT + 64):
            if stop.is_set():
                return
            s = socket.socket()
            s.setblocking(False)
            s.bind((f"127.0.0.{2 + i % 20}", 0))
            s.connect_ex(("127.0.0.1", box.port))
            flood.append(s)

    flooding = threading.Thread(target=open_connections)
    flooding.start()
    try:
        before = box.wait(lambda d: d["state"] == "playing" and d.get("worker_pid"), 20, "a worker")
        os.kill(before["worker_pid"], signal.SIGKILL)
        flooding.join(60)
        assert len(flood) > FD_LIMIT
        box.wait(
            lambda d: d["worker_restarts"] > before["worker_restarts"] and d["state"] == "playing",
            30,
            "the worker restarted",
        )
        t0 = time.monotonic()
        assert box.request("GET", "/api/state", headers=auth, timeout_s=2)[0] == 200  # even during the flood
        during = time.monotonic() - t0
    finally:
        stop.set()
        flooding.join(60)
        for s in flood:
            s.close()
    t0 = time.monotonic()
    status, _, state = box.request("GET", "/api/state", headers=auth, timeout_s=2)
    after = time.monotonic() - t0
    assert status == 200 and after < 2 and during < 2
    played = box.wait(lambda d: d["bars_played"] >= json.loads(state)["bars_played"] + 2, 30, "more bars")
    assert played["underruns"] == 0 and played["worker_restarts"] >= 1
    box.stop()
    text = box.log_path.read_text()
    assert box.proc.returncode == 0, text
    assert "Traceback" not in text and "Too many open files" not in text, text


@pytest.mark.slow
def test_a_paired_flood_at_full_speed_leaves_the_box_playing_and_sigterm_stops_it(box):
    """Four paired clients post knob changes and presses as fast as they can for 5 s: they get 429s,
    the box plays on without underruns, and SIGTERM during the flood stops it within 5 s."""
    import http.client

    auths = [box.pair() for _ in range(4)]
    start = box.read()
    stop = threading.Event()
    counts: list[int] = []

    def flood(auth: dict, k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", box.port, timeout=10)
        n = 0
        while not stop.is_set():
            body = {"tempo_bpm": 60 + n % 100} if n % 4 else {"button": "next"}
            path = "/api/controls" if n % 4 else "/api/button"
            try:
                conn.request("POST", path, json.dumps(body), {**auth, "Content-Type": "application/json"})
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", box.port, timeout=10)
            n += 1
        counts.append(n)
        conn.close()

    threads = [threading.Thread(target=flood, args=(a, k)) for k, a in enumerate(auths)]
    for t in threads:
        t.start()
    try:
        box.wait(lambda d: d["bars_played"] >= start["bars_played"] + 2, 30, "bars played during the flood")
        _until(lambda: box.read()["bars_played"] >= start["bars_played"] + 3, 30, "the stats going on")
        took = box.stop()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    text = box.log_path.read_text()
    assert box.proc.returncode == 0 and took < 5, text
    final = json.loads(box.stats.read_text())
    assert final["underruns"] == 0, final
    assert sum(counts) > 100 and "Traceback" not in text
