"""The web remote's HTTP server: aiohttp on its own thread and event loop in the box's main process.

Why aiohttp: one well-kept library (aio-libs, regular releases; manylinux aarch64 wheels of aiohttp and
its C parts — multidict, yarl, frozenlist, propcache — for Python 3.10 (JetPack 6) and 3.11 (Raspberry Pi
OS bookworm), as for x86) that has all the remote needs — a C HTTP parser, streamed responses for
Server-Sent Events and the audio stream, static files — and no other service; its import adds about
15 MB RSS (``musicbox bench remote``), under the 20 MB budget, where starlette + uvicorn bring anyio, h11
and click on top, and the standard library's ``http.server`` is documented as unfit for serving a
network. The event loop waits in ``epoll`` and does nothing while no page is open; the supervisor's
once-a-second :meth:`publish` only stores a reference then. Nothing here runs on the audio thread.

No client can stop the box (:mod:`musicbox.remote.limits`): the server accepts connections itself and
holds a bounded number, well under the descriptor limit, fairly shared between clients; idle ones
close; a request whose Host is not this box gets 421 on every route; controls, buttons and pairing are
rate limited per client; every malformed request gets a 4xx with a JSON ``{"error"}`` and no traceback.
Knob changes from the page reach the box at most every :data:`HAND_ON_S` seconds, the latest one only.

Routes (all but ``/``, ``/api/pair`` and ``/api/session`` need a paired session; every POST/DELETE also
needs the CSRF header and a same-origin request, see :mod:`musicbox.remote.auth`):

- ``GET /``: the page. ``POST /api/pair {"code"}``: pair. ``GET /api/session``: paired? CSRF token,
  styles, tempo range. ``POST /api/logout``.
- ``GET /api/state``: the box now (and the server's CPU seconds); ``GET /api/events``: the same, pushed (Server-Sent Events) when it
  changes (a bar, a knob, a press), so the page never polls.
- ``POST /api/controls {"style", "tempo_bpm", "mood", "variation", "meter", "key"}`` (any subset; the meter is ""
  for the style's own or one of the styles' meters; the state's ``next_meter`` steps through the playing
  style's), ``POST /api/button {"button"}`` (play_pause, next, save, keep, new, volume_up, volume_down).
- ``GET/POST /api/presets``, ``POST /api/presets/recall {"name"}``, ``DELETE /api/presets/{name}``.
- ``GET /api/recordings``, ``GET /recordings/{file}`` (``?download=1`` to save it),
  ``DELETE /api/recordings/{name}``.
- ``GET /stream.wav``: the music, as it plays (:mod:`musicbox.remote.stream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from musicbox.errors import ConfigError
from musicbox.remote.auth import COOKIE, CSRF_HEADER, Pairing, csrf_matches, csrf_of
from musicbox.remote.library import RECORDING_TYPES, Preset, Presets, Recordings, valid_preset_name
from musicbox.remote.limits import (
    BODY_S,
    IDLE_S,
    PER_CLIENT,
    REFUSAL,
    ConnectionGate,
    RateLimit,
    box_names,
    client_of,
    connection_budget,
    host_allowed,
)
from musicbox.remote.stream import Listener, StreamHub
from musicbox.runtime.box.status import BoxStatus
from musicbox.runtime.controls import Button, Controls, nearest_style
from musicbox.runtime.sleep import Sleep

log = logging.getLogger("musicbox.remote")

PUBLIC = {("GET", "/"), ("POST", "/api/pair"), ("GET", "/api/session")}
BUTTONS = {
    b.value: b
    for b in (
        Button.PLAY_PAUSE,
        Button.NEXT,
        Button.SAVE,
        Button.KEEP,
        Button.NEW,
        Button.VOLUME_UP,
        Button.VOLUME_DOWN,
    )
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; media-src 'self' blob:; frame-ancestors 'none'; "
    "form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
HAND_ON_S = 0.1  # knob changes from the page reach the box at most this often (the latest one)
CONTROL_RATE = (10.0, 20.0)  # controls requests per second per client, and the burst
BUTTON_RATE = (4.0, 8.0)  # button presses per second per client (faster than fingers), and the burst
REFUSE_S = 0.001  # the accept loop rests this long after refusing a connection


class Refused(Exception):
    """A request that gets ``status`` and ``{"error": message}`` (and ``headers``)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def state_dir(configured: Path | None) -> Path:
    """The remote's state folder: the configured one, else $STATE_DIRECTORY (systemd's
    ``StateDirectory=``), else ``~/.local/state/musicbox``."""
    if configured is not None:
        return Path(configured)
    env = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(env) if env else Path("~/.local/state/musicbox").expanduser()


def page_url(bind: str, port: int) -> str:
    """The address a phone on the LAN opens: the bound address, or this machine's LAN address when
    bound to every interface (found without sending a packet)."""
    host = bind
    if bind in ("0.0.0.0", "::", ""):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect(("10.255.255.255", 1))  # UDP connect: picks the route, sends nothing
                host = s.getsockname()[0]
        except OSError:
            host = socket.gethostname() + ".local"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


class RemoteServer:
    """The remote of one playing box.

    settings: the ``[remote]`` section. box: the Supervisor (``style_names``, ``recorder``).
    knob_map: the box's knob mapping (page values are rounded exactly as a turned knob's). on_controls:
    ``callable(Controls, seed | None)`` for a change from the page (the play command forwards it to the
    box and to the knob backend). on_button: ``callable(Button)``. recordings: the recordings folder.
    sample_rate: Hz of the box's audio (for the stream).
    """

    def __init__(
        self,
        settings,
        *,
        box,
        knob_map,
        on_controls: Callable[[Controls, int | None], None],
        on_button: Callable[[Button], None],
        recordings: Path,
        sample_rate: int,
    ):
        self.settings = settings
        self.box = box
        self.knob_map = knob_map
        self.ranges = knob_map.ranges(box.style_names)
        self.on_controls = on_controls
        self.on_button = on_button
        self.url = page_url(settings.bind, settings.port)
        self.names = box_names(settings.bind, settings.hosts.split())
        self.state_dir = state_dir(settings.state_dir)
        self.pairing = Pairing(self.state_dir, self.url, settings.pair_attempts)  # shown once listening
        self.presets = Presets(self.state_dir / "presets.json")
        self.recordings = Recordings(recordings)
        self.stream = StreamHub(sample_rate) if settings.stream else None
        self.controls = Controls()
        self.follow: Callable[[Controls], None] = lambda controls: None  # the knob backend's, once open
        self.control_rate = RateLimit(*CONTROL_RATE)
        self.button_rate = RateLimit(*BUTTON_RATE)
        self._status: BoxStatus | None = None
        self._clients: set[asyncio.Queue] = set()  # one per open page (Server-Sent Events)
        self._streams: set[asyncio.Queue] = set()  # one per page listening
        self._sent = b""  # the last state pushed to the pages
        self._busy: set = set()  # transports with a request under way
        self._gate: ConnectionGate | None = None
        self._pending: tuple[Controls, int | None] | None = None  # the latest change not yet handed on
        self._hand_on_at = 0.0  # loop.time() of the last hand-on
        self._hand_on_timer: asyncio.TimerHandle | None = None
        self._last_listener: Listener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None  # aiohttp's AppRunner, on the server thread
        self._accepting: asyncio.Task | None = None
        self._thread: threading.Thread | None = None

    # ---- life cycle (main thread) -------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> None:
        """Start serving on a thread; raises ConfigError when aiohttp is missing or the address cannot be
        bound."""
        try:
            import aiohttp.web  # noqa: F401  (here, so a missing install is a clear error, not a dead thread)
        except ImportError as exc:
            raise ConfigError(
                f"[remote] enabled needs aiohttp ({exc}); install it with `pip install 'musicbox[device]'`"
            ) from None
        connections, fd_limit = connection_budget()
        self._gate = ConnectionGate(connections, PER_CLIENT, lambda t: t in self._busy)
        log.info("remote: up to %d connections (descriptor limit %d)", connections, fd_limit)
        started = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(started, failure), name="musicbox-remote", daemon=True
        )
        self._thread.start()
        started.wait(timeout_s)
        if not started.is_set():
            failure.append(TimeoutError(f"the server did not start in {timeout_s:g} s"))
        if failure:
            s = self.settings
            raise ConfigError(
                f"[remote] cannot listen on {s.bind}:{s.port} ({failure[0]}); set another [remote] port or "
                "bind in musicbox.toml, or stop what uses it; under the systemd service, run `sudo musicbox "
                "install-service` again so that its remote.conf drop-in allows IP sockets"
            )
        self.pairing.announce()

    def close(self) -> None:
        """Stop serving (idempotent); open pages see the connection end."""
        loop, self._loop = self._loop, None
        if self.stream is not None:
            self.stream.close()
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(5)
        except Exception as exc:  # a stuck client must not keep the box from stopping
            log.warning("remote: stopping the server: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def _serve(self, started: threading.Event, failure: list) -> None:
        from aiohttp import web

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._runner = web.AppRunner(
            self._app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            keepalive_timeout=IDLE_S,
            handler_cancellation=True,  # a page gone ends its events or stream at once, not at the next write
            logger=_http_log(),
        )
        try:
            loop.run_until_complete(self._runner.setup())
            listening = _listen(self.settings.bind, self.settings.port)
        except Exception as exc:  # the address is taken or not ours: start() reports it
            failure.append(exc)
            started.set()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()
            return
        self._accepting = loop.create_task(self._accept(listening))
        self._loop = loop
        started.set()
        loop.run_forever()
        listening.close()
        loop.close()

    async def _accept(self, listening: socket.socket) -> None:
        """Take connections as they come: hand each to aiohttp, or refuse it at once (503) when its
        client or the server holds too many (:class:`ConnectionGate`)."""
        loop = asyncio.get_running_loop()
        gate = self._gate
        assert gate is not None
        while True:
            try:
                conn, address = await loop.sock_accept(listening)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("remote: cannot accept a connection (%s); retrying in 0.5 s", exc)
                    await asyncio.sleep(0.5)  # out of descriptors for a moment (another part of the box)
                continue  # a connection reset before it was taken
            client = client_of(str(address[0]))
            if gate.admit(client) is not None:
                _refuse(conn)
                await asyncio.sleep(REFUSE_S)  # a flood costs the box at most this much of a core
                continue
            try:
                transport, _ = await loop.connect_accepted_socket(self._runner.server, conn)
            except OSError:
                conn.close()
                continue
            gate.add(client, transport)

    async def _stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        for q in list(self._clients) + list(self._streams):
            _put_newest(q, None)  # ends the page's response
        await self._runner.cleanup()

    @property
    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server's thread has used so far: all of its cost but the
        stream's conversion (``stream.cpu_s``, on the box's main thread). ``musicbox bench remote``
        reads it from ``/api/state``."""
        thread = self._thread
        if thread is None or thread.ident is None:
            return 0.0
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, AttributeError):  # the thread has ended; not Linux
            return 0.0

    # ---- from the box (any thread) ------------------------------------------------------------------

    def publish(self, status: BoxStatus) -> None:
        """The box's status (every second): kept, and pushed to the open pages if the state they show
        changed (on the server's loop: nothing the pages do can hold up or fail the box's loop)."""
        self._status = status
        self.controls = status.controls
        self._push()

    def controls_changed(self, controls: Controls) -> None:
        """The knobs moved: the open pages show it now rather than at the next stats."""
        self.controls = controls
        self._push()

    def _push(self) -> None:
        loop = self._loop
        if self._clients and loop is not None:
            with contextlib.suppress(RuntimeError):  # the server has just stopped
                loop.call_soon_threadsafe(self._broadcast)

    def view(self) -> dict:
        """What the page shows: the stats' figures, the knobs, the bar playing as notes."""
        s = self._status
        c = self.controls
        names = self.box.style_names
        keys = ("state", "bars_played", "underruns", "xruns", "worker_restarts", "volume_db")
        view = {key: getattr(s, key, None) for key in keys}
        view["controls"] = body_of(c)
        view["style_name"] = names[nearest_style(c.style, len(names))] if names else ""
        view["meter"] = s.meter if s is not None else ""  # the bar playing's
        view["next_meter"] = self.knob_map.next_meter(c)
        view["seed"] = s.seed if s is not None else None
        view["saves"] = s.saves if s is not None else 0
        last = self.box.recorder.last_bar() if self.box.recorder is not None else None
        view["notes"] = [list(n) for n in last.notes] if last is not None else []
        view["bar_steps"] = last.meter.steps if last is not None else 16
        hub = self.stream
        if hub is not None:
            first = self._last_listener.first_bar_at if self._last_listener is not None else None
            view["stream"] = {
                "listeners": hub.listeners,
                "cpu_s": hub.cpu_s,
                "audio_s": hub.audio_s,
                "first_bar_at": first,  # time.time() the newest listener's first bar started on the box
            }
        return view

    def _broadcast(self) -> None:
        """Push the state to every open page when it differs from the last one pushed (server loop)."""
        if not self._clients:
            return
        data = f"data: {json.dumps(self.view())}\n\n".encode()
        if data == self._sent:
            return
        self._sent = data
        for q in list(self._clients):
            _put_newest(q, data)

    def _hand_on(self, controls: Controls, seed: int | None) -> None:
        """Give the box the page's latest change, at most every :data:`HAND_ON_S`: a change that comes
        sooner waits, and a later one replaces it (server loop). A recall's seed is kept when a knob
        change replaces the recall before it was handed on."""
        kept_seed = self._pending[1] if self._pending is not None else None
        self._pending = (controls, seed if seed is not None else kept_seed)
        self.controls = controls
        if self._hand_on_timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._hand_on_at + HAND_ON_S - loop.time()
        if wait <= 0:
            self._hand_on_now()
        else:
            self._hand_on_timer = loop.call_later(wait, self._hand_on_now)

    def _hand_on_now(self) -> None:
        self._hand_on_timer = None
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self._hand_on_at = asyncio.get_running_loop().time()
        self.on_controls(*pending)
        self._broadcast()

    # ---- the application ----------------------------------------------------------------------------

    def _app(self):
        from aiohttp import web

        @web.middleware
        async def guard(request, handler):
            return await self._guarded(request, handler)

        app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
        r = app.router
        r.add_get("/", self._page)
        r.add_post("/api/pair", self._pair)
        r.add_get("/api/session", self._session)
        r.add_post("/api/logout", self._logout)
        r.add_get("/api/state", self._state)
        r.add_get("/api/events", self._events)
        r.add_post("/api/controls", self._set_controls)
        r.add_post("/api/button", self._button)
        r.add_get("/api/presets", self._presets)
        r.add_post("/api/presets", self._save_preset)
        r.add_post("/api/presets/recall", self._recall)
        r.add_delete("/api/presets/{name}", self._delete_preset)
        r.add_get("/api/recordings", self._recording_list)
        r.add_get("/recordings/{file}", self._recording_file)
        r.add_delete("/api/recordings/{name}", self._delete_recording)
        r.add_get("/stream.wav", self._stream)
        return app

    @property
    def _web(self):
        from aiohttp import web

        return web

    async def _guarded(self, request, handler):
        """Refuse what :meth:`_check` refuses; turn every refusal and aiohttp's own HTTP errors (404,
        405, 413) into ``{"error"}`` JSON; add the security headers to every plain response; mark the
        connection busy while the request is under way (an idle one may be closed for another client)."""
        web = self._web
        transport = request.transport
        self._busy.add(transport)
        try:
            self._check(request)
            response = await handler(request)
        except Refused as exc:
            if exc.status != 401 or request.path != "/api/events":  # a closed tab's EventSource retries
                log.info("remote: refused %s %s: %s", request.method, request.path, exc.message)
            response = web.json_response(
                {"error": exc.message}, status=exc.status, headers={**HEADERS, **exc.headers}
            )
        except web.HTTPException as exc:  # the router's 404/405, a body over client_max_size (413)
            if exc.status < 400:
                raise
            response = web.json_response({"error": exc.reason}, status=exc.status, headers=HEADERS)
        finally:
            self._busy.discard(transport)
        if not response.prepared:
            response.headers.update(HEADERS)
        return response

    def _check(self, request) -> None:
        """Raise :class:`Refused` when ``request`` must be refused."""
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        host = request.headers.get("Host")
        if not host_allowed(host, self.names, sockname[0] if sockname else None):
            raise Refused(421, f"this box does not answer to the Host {host!r}; open {self.url}")
        changes = request.method not in ("GET", "HEAD")
        if changes:
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"http://{host}":
                raise Refused(403, "cross-site request")
            if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
                raise Refused(403, "cross-site request")
        if (request.method, request.path) in PUBLIC:
            return
        token = _session_token(request)
        if not self.pairing.valid(token):
            raise Refused(401, "not paired: enter the pairing code shown by the box")
        if changes and not csrf_matches(str(token), request.headers.get(CSRF_HEADER, "")):
            raise Refused(403, f"missing or wrong {CSRF_HEADER} header")

    def _client(self, request) -> str:
        return client_of(request.remote or "")

    def _limit(self, rate: RateLimit, request, what: str) -> None:
        wait = rate.wait(self._client(request))
        if wait:
            raise Refused(429, f"too many {what}; wait {wait:.1f} s", {"Retry-After": str(math.ceil(wait))})

    # ---- handlers -----------------------------------------------------------------------------------

    async def _page(self, request):
        html = resources.files("musicbox.remote").joinpath("static/index.html").read_bytes()
        return self._web.Response(body=html, content_type="text/html", charset="utf-8")

    async def _pair(self, request):
        body = await _json(request)
        code = body.get("code")
        if not isinstance(code, str):
            raise Refused(400, "code: the 6 digits the box shows, as a string")
        token, wait_s = self.pairing.pair(code, self._client(request))
        web = self._web
        if wait_s:
            raise Refused(
                429,
                f"too many wrong codes; try again in {math.ceil(wait_s)} s",
                {"Retry-After": str(math.ceil(wait_s))},
            )
        if token is None:
            raise Refused(403, "wrong pairing code")
        response = web.json_response({"paired": True, "csrf": csrf_of(token)})
        response.set_cookie(COOKIE, token, max_age=365 * 86400, httponly=True, samesite="Strict", path="/")
        return response

    async def _session(self, request):
        token = _session_token(request)
        if token is None or not self.pairing.valid(token):
            return self._web.json_response({"paired": False})
        m = self.knob_map
        return self._web.json_response(
            {
                "paired": True,
                "csrf": csrf_of(token),
                "styles": list(self.box.style_names),
                "tempo": [m.min_bpm, m.max_bpm],
                "stream": self.stream is not None,
            }
        )

    async def _logout(self, request):
        token = _session_token(request)
        if token is not None:
            self.pairing.forget(token)
        response = self._web.json_response({"paired": False})
        response.del_cookie(COOKIE, path="/")
        return response

    async def _state(self, request):
        return self._web.json_response({**self.view(), "server_cpu_s": self.cpu_s})

    async def _events(self, request):
        web = self._web
        response = web.StreamResponse(headers={**HEADERS, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        q: asyncio.Queue = asyncio.Queue(maxsize=4)
        self._clients.add(q)
        try:
            await response.write(f"data: {json.dumps(self.view())}\n\n".encode())
            while (data := await q.get()) is not None:
                await response.write(data)
        except ConnectionError:  # the page went (or, with handler cancellation, CancelledError: cleaned up)
            pass
        finally:
            self._clients.discard(q)
        return response

    async def _set_controls(self, request):
        self._limit(self.control_rate, request, "knob changes")
        body = await _json(request)
        try:
            controls = self._controls_from(body)
        except ConfigError as exc:
            raise Refused(400, str(exc)) from None
        self._hand_on(controls, None)
        return self._web.json_response({"controls": body_of(controls)})

    def _controls_from(self, body: dict) -> Controls:
        """Controls from the page's values (missing ones unchanged; checked by the box's one range check,
        ``ControlRanges``), rounded like a turned knob's."""
        checked = self.ranges.apply(self.controls, body)
        m = self.knob_map
        turned = m.controls({**m.raw_of(checked), "variation": checked.variation})
        return replace(turned, meter=checked.meter, key=checked.key)

    async def _button(self, request):
        self._limit(self.button_rate, request, "button presses")
        body = await _json(request)
        if body.get("button") == "sleep":  # the sleep timer (runtime/sleep.py)
            self.on_button(_sleep_of(body))  # type: ignore[arg-type]  # the box's event beside the buttons
            return self._web.json_response({"pressed": "sleep", "minutes": body.get("minutes")})
        button = BUTTONS.get(body.get("button")) if isinstance(body.get("button"), str) else None
        if button is None:
            raise Refused(400, f"button: got {body.get('button')!r}; allowed: {', '.join(BUTTONS)}, sleep")
        self.on_button(button)
        return self._web.json_response({"pressed": button.value})

    async def _presets(self, request):
        return self._web.json_response([p.__dict__ for p in self.presets.saved()])

    async def _save_preset(self, request):
        self._limit(self.button_rate, request, "presets saved")
        body = await _json(request)
        name = body.get("name")
        if not valid_preset_name(name):
            raise Refused(400, "name: 1 to 40 printable characters, no spaces at the ends")
        c = self.controls
        seed = self._status.seed if self._status is not None else 0
        preset = Preset(str(name), c.style, c.tempo_bpm, c.mood, seed, c.variation, c.meter)
        await asyncio.get_running_loop().run_in_executor(None, self.presets.save, preset)
        return self._web.json_response(preset.__dict__)

    async def _recall(self, request):
        self._limit(self.button_rate, request, "button presses")
        body = await _json(request)
        name = body.get("name")
        preset = self.presets.get(name) if isinstance(name, str) else None
        if preset is None:
            raise Refused(404, f"no preset {body.get('name')!r}")
        self._hand_on(preset.controls, preset.seed)
        return self._web.json_response(preset.__dict__)

    async def _delete_preset(self, request):
        self._limit(self.button_rate, request, "presets deleted")
        if not self.presets.delete(request.match_info["name"]):
            raise Refused(404, "no such preset")
        return self._web.json_response({"deleted": request.match_info["name"]})

    async def _recording_list(self, request):
        return self._web.json_response(self.recordings.listing())

    async def _recording_file(self, request):
        name = request.match_info["file"]
        path = self.recordings.file(name)
        if path is None:
            raise Refused(404, "no such recording")
        response = self._web.FileResponse(path, headers={"Content-Type": RECORDING_TYPES[path.suffix[1:]]})
        if request.query.get("download"):
            response.headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
        return response

    async def _delete_recording(self, request):
        self._limit(self.button_rate, request, "recordings deleted")
        gone = self.recordings.delete(request.match_info["name"])
        if not gone:
            raise Refused(404, "no such recording")
        return self._web.json_response({"deleted": gone})

    async def _stream(self, request):
        web = self._web
        hub = self.stream
        if hub is None:
            raise Refused(404, "the stream is off ([remote] stream = false)")
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        queued = [0]  # bytes waiting for this page (changed on the server's loop only)

        def put(data: bytes) -> None:  # the server's loop
            queued[0] += len(data)
            q.put_nowait(data)

        def deliver(data: bytes) -> bool:  # the box's main thread: queue it, never wait, never raise
            try:
                if queued[0] > hub.backlog_bytes:
                    loop.call_soon_threadsafe(_put_newest, q, None)
                    return False
                loop.call_soon_threadsafe(put, data)
            except RuntimeError:  # the server's loop has stopped
                return False
            return True

        listener = Listener(deliver)
        if not hub.add(listener):
            raise Refused(503, f"{hub.listeners} pages listen already; stop one of them first")
        self._last_listener = listener
        self._streams.add(q)  # closing the server ends it too
        response = web.StreamResponse(headers={**HEADERS, "Content-Type": "audio/wav"})
        try:
            await response.prepare(request)
            await response.write(hub.header)
            while (data := await q.get()) is not None:
                queued[0] -= len(data)
                await response.write(data)
        except ConnectionError:  # the page went (or, with handler cancellation, CancelledError: cleaned up)
            pass
        finally:
            self._streams.discard(q)
            hub.remove(listener)
        return response


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a bad header line, not HTTP at all) as an error with its
    traceback; it is the client's fault, not the box's: one line at INFO instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            first = (exc.message or str(exc)).strip().splitlines()[:1]
            record.msg = "remote: refused a malformed request from %s (%d: %s)"
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.args = (remote, exc.code, first[0] if first else "")
            record.exc_info, record.exc_text = None, None
            if record.levelno > logging.INFO:
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _http_log() -> logging.Logger:
    """The logger aiohttp's connections report to (malformed requests in one line)."""
    logger = logging.getLogger("musicbox.remote.http")
    if not any(isinstance(f, _MalformedRequests) for f in logger.filters):
        logger.addFilter(_MalformedRequests())
    return logger


def _listen(bind: str, port: int) -> socket.socket:
    """The listening socket (both IPv4 and IPv6 for "::"), non-blocking; OSError when it cannot be."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    dual = bind == "::" and socket.has_dualstack_ipv6()
    sock = socket.create_server((bind, port), family=family, backlog=128, dualstack_ipv6=dual)
    sock.setblocking(False)
    return sock


def _refuse(conn: socket.socket) -> None:
    """Tell a connection the box holds too many (503) and close it, without waiting on it."""
    try:
        conn.setblocking(False)
        conn.send(REFUSAL)
    except OSError:
        pass
    finally:
        conn.close()


def _session_token(request) -> str | None:
    """The session cookie's value, or None (also for a Cookie header that does not parse)."""
    try:
        token = request.cookies.get(COOKIE)
    except Exception:  # a malformed Cookie header is a cookie that is not there
        return None
    return token if isinstance(token, str) else None


def _put_newest(q: asyncio.Queue, item) -> None:
    """Queue ``item``, dropping the oldest if full: a slow page gets the newest, not a growing backlog."""
    if q.full():
        q.get_nowait()
    q.put_nowait(item)


def body_of(c: Controls) -> dict:
    return {
        "style": c.style,
        "tempo_bpm": c.tempo_bpm,
        "mood": c.mood,
        "variation": c.variation,
        "meter": c.meter,
    }


async def _json(request) -> dict:
    """The request's body as a JSON object ({} when empty); :class:`Refused` with a 4xx otherwise."""
    try:
        raw = await asyncio.wait_for(request.read(), BODY_S)
    except asyncio.TimeoutError:
        raise Refused(408, f"the request's body did not arrive within {BODY_S:g} s") from None
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # ValueError: also bytes that are not UTF-8
        raise Refused(400, f"the body is not JSON ({str(exc)[:80]})") from None
    if not isinstance(body, dict):
        raise Refused(400, f"the body must be a JSON object, not {type(body).__name__}")
    return body


def _sleep_of(body: dict) -> Sleep:
    """``{"button": "sleep", "minutes": M}``: a timer of M minutes (0 < M <= 600), 0 to end the running one;
    without minutes the sleep button (``[sleep] minutes``, or end the running timer)."""
    minutes = body.get("minutes")
    if minutes is None:
        return Sleep()
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 <= minutes <= 600:
        raise Refused(400, f"minutes: got {minutes!r}; allowed: a number of minutes 0..600 (0 = off)")
    return Sleep(float(minutes))
