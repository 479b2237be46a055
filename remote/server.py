"""The web remote's HTTP server: aiohttp on its own thread and event loop in the box's main process.

Why aiohttp: one well-kept library (aio-libs, regular releases; manylinux aarch64 wheels of aiohttp and
its C parts — multidict, yarl, frozenlist, propcache — for Python 3.10 (JetPack 6) and 3.11 (Raspberry Pi
OS bookworm), as for x86) that has all the remote needs — a C HTTP parser, streamed responses for Server-Sent Events and the MP3
stream, static files — and no other service; its import adds about 15 MB RSS (``musicbox bench remote``),
under the 20 MB budget, where starlette + uvicorn bring anyio, h11 and click on top, and the standard
library's ``http.server`` is documented as unfit for serving a network. The event loop waits in
``epoll`` and does nothing while no page is open; the supervisor's once-a-second :meth:`publish` only
stores a reference then. Nothing here runs on the audio thread.

Routes (all but ``/``, ``/api/pair`` and ``/api/session`` need a paired session; every POST/DELETE also
needs the CSRF header and a same-origin request, see :mod:`musicbox.remote.auth`):

- ``GET /``: the page. ``POST /api/pair {"code"}``: pair. ``GET /api/session``: paired? CSRF token,
  styles, tempo range. ``POST /api/logout``.
- ``GET /api/state``: the box now; ``GET /api/events``: the same, pushed (Server-Sent Events) every
  second and at every knob change.
- ``POST /api/controls {"style", "tempo_bpm", "mood", "variation", "meter"}`` (any subset; the meter is ""
  for the style's own or one of the styles' meters; the state's ``next_meter`` steps through the playing
  style's), ``POST /api/button
  {"button"}`` (play_pause, next, save, keep, new).
- ``GET/POST /api/presets``, ``POST /api/presets/recall {"name"}``, ``DELETE /api/presets/{name}``.
- ``GET /api/recordings``, ``GET /recordings/{file}`` (``?download=1`` to save it),
  ``DELETE /api/recordings/{name}``.
- ``GET /stream.mp3``: the music, as it plays.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from musicbox.device.buttons import Button
from musicbox.errors import ConfigError
from musicbox.remote.auth import COOKIE, CSRF_HEADER, Pairing, csrf_of
from musicbox.remote.library import RECORDING_TYPES, Preset, Presets, Recordings, valid_preset_name
from musicbox.remote.stream import BACKLOG, Listener, StreamHub
from musicbox.runtime.controls import ControlRanges, Controls

log = logging.getLogger("musicbox.remote")

PUBLIC = {("GET", "/"), ("POST", "/api/pair"), ("GET", "/api/session")}
BUTTONS = {b.value: b for b in (Button.PLAY_PAUSE, Button.NEXT, Button.SAVE, Button.KEEP, Button.NEW)}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; media-src 'self' blob:; frame-ancestors 'none'; "
    "form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


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
        self.on_controls = on_controls
        self.on_button = on_button
        self.url = page_url(settings.bind, settings.port)
        self.state_dir = state_dir(settings.state_dir)
        self.pairing = Pairing(self.state_dir, self.url, settings.pair_attempts)  # shown once listening
        self.presets = Presets(self.state_dir / "presets.json")
        self.recordings = Recordings(recordings)
        self.stream = StreamHub(sample_rate, kbps=settings.stream_kbps) if settings.stream else None
        self.controls = Controls()
        self.follow: Callable[[Controls], None] = lambda controls: None  # the knob backend's, once open
        self._stats: dict = {}
        self._clients: set[asyncio.Queue] = set()  # one per open page (Server-Sent Events)
        self._streams: set[asyncio.Queue] = set()  # one per page listening
        self._last_listener: Listener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None  # aiohttp's AppRunner, on the server thread
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
        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        try:
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.settings.bind, self.settings.port, shutdown_timeout=1.0)
            loop.run_until_complete(site.start())
            if not self._runner.addresses:  # asyncio skips a socket family it may not use, silently
                raise OSError("no socket could be opened (a sandbox without AF_INET/AF_INET6?)")
        except Exception as exc:  # the address is taken or not ours: start() reports it
            failure.append(exc)
            started.set()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()
            return
        self._loop = loop
        started.set()
        loop.run_forever()
        loop.close()

    async def _stop(self) -> None:
        for q in list(self._clients) + list(self._streams):
            _put_newest(q, None)  # ends the page's response
        await self._runner.cleanup()

    # ---- from the box (any thread) ------------------------------------------------------------------

    def publish(self, stats: dict) -> None:
        """The supervisor's stats (every second): kept, and pushed to the open pages if any."""
        self._stats = stats
        self.controls = Controls(**stats["controls"])
        self._push()

    def controls_changed(self, controls: Controls) -> None:
        """The knobs moved: the open pages show it now rather than at the next stats."""
        self.controls = controls
        self._push()

    def _push(self) -> None:
        loop = self._loop
        if self._clients and loop is not None:
            loop.call_soon_threadsafe(self._broadcast)

    def view(self) -> dict:
        """What the page shows: the stats' figures, the knobs, the bar playing as notes."""
        s = self._stats
        c = self.controls
        names = self.box.style_names
        view = {key: s.get(key) for key in ("state", "bars_played", "underruns", "xruns", "worker_restarts")}
        view["controls"] = body_of(c)
        view["style_name"] = names[min(len(names) - 1, max(0, round(c.style)))] if names else ""
        view["meter"] = s.get("meter") or ""  # the bar playing's
        view["next_meter"] = self.knob_map.next_meter(c)
        view["seed"] = s.get("seed")
        view["saves"] = s.get("saves", 0)
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
        data = f"data: {json.dumps(self.view())}\n\n".encode()
        for q in list(self._clients):
            _put_newest(q, data)

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
        r.add_get("/stream.mp3", self._stream)
        return app

    @property
    def _web(self):
        from aiohttp import web

        return web

    async def _guarded(self, request, handler):
        """Refuse what :meth:`_refusal` refuses; add the security headers to every plain response."""
        problem = self._refusal(request)
        if problem is not None:
            status, message = problem
            log.info("remote: refused %s %s: %s", request.method, request.path, message)
            return self._web.json_response({"error": message}, status=status, headers=HEADERS)
        response = await handler(request)
        if not response.prepared:
            response.headers.update(HEADERS)
        return response

    def _refusal(self, request) -> tuple[int, str] | None:
        """(status, why) when ``request`` must be refused, else None."""
        changes = request.method not in ("GET", "HEAD")
        if changes:
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"http://{request.host}":
                return 403, "cross-site request"
            if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
                return 403, "cross-site request"
        if (request.method, request.path) in PUBLIC:
            return None
        token = request.cookies.get(COOKIE)
        if not self.pairing.valid(token):
            return 401, "not paired: enter the pairing code shown by the box"
        if changes and not hmac.compare_digest(request.headers.get(CSRF_HEADER, ""), csrf_of(str(token))):
            return 403, f"missing or wrong {CSRF_HEADER} header"
        return None

    # ---- handlers -----------------------------------------------------------------------------------

    async def _page(self, request):
        html = resources.files("musicbox.remote").joinpath("static/index.html").read_bytes()
        return self._web.Response(body=html, content_type="text/html", charset="utf-8")

    async def _pair(self, request):
        body = await _json(request)
        token, wait_s = self.pairing.pair(str(body.get("code", "")))
        web = self._web
        if wait_s:
            return web.json_response(
                {"error": f"too many wrong codes; try again in {math.ceil(wait_s)} s"},
                status=429,
                headers={"Retry-After": str(math.ceil(wait_s))},
            )
        if token is None:
            return web.json_response({"error": "wrong pairing code"}, status=403)
        response = web.json_response({"paired": True, "csrf": csrf_of(token)})
        response.set_cookie(COOKIE, token, max_age=365 * 86400, httponly=True, samesite="Strict", path="/")
        return response

    async def _session(self, request):
        token = request.cookies.get(COOKIE)
        if not self.pairing.valid(token):
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
        self.pairing.forget(request.cookies[COOKIE])
        response = self._web.json_response({"paired": False})
        response.del_cookie(COOKIE, path="/")
        return response

    async def _state(self, request):
        return self._web.json_response(self.view())

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
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(q)
        return response

    async def _set_controls(self, request):
        body = await _json(request)
        try:
            controls = self._controls_from(body)
        except ValueError as exc:
            return self._web.json_response({"error": str(exc)}, status=400)
        self.controls = controls
        self.on_controls(controls, None)
        self._broadcast()
        return self._web.json_response({"controls": body_of(controls)})

    def _controls_from(self, body: dict) -> Controls:
        """Controls from the page's values (missing ones unchanged), rounded like a turned knob's."""
        m, c = self.knob_map, self.controls
        limits = {
            "style": (0.0, max(0, m.n_styles - 1)),
            "tempo_bpm": (m.min_bpm, m.max_bpm),
            "mood": (-1.0, 1.0),
            "variation": (0.0, 1.0),
        }
        unknown = set(body) - {*limits, "meter"}
        if unknown:
            raise ValueError(f"unknown control {sorted(unknown)[0]!r}; allowed: {', '.join(limits)}, meter")
        values = body_of(c)
        meter = ControlRanges((), m.min_bpm, m.max_bpm, m.meters).check_meter(
            body.get("meter", c.meter), "meter"
        )
        del values["meter"]
        for key, (lo, hi) in limits.items():
            if key not in body:
                continue
            v = body[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError(f"{key}: got {v!r}; allowed: a number from {lo:g} to {hi:g}")
            values[key] = float(v)
        turned = m.controls({**m.raw_of(Controls(**values)), "variation": values["variation"]})
        return replace(turned, meter=meter)

    async def _button(self, request):
        body = await _json(request)
        button = BUTTONS.get(body.get("button"))
        if button is None:
            return self._web.json_response(
                {"error": f"button: got {body.get('button')!r}; allowed: {', '.join(BUTTONS)}"}, status=400
            )
        self.on_button(button)
        return self._web.json_response({"pressed": body["button"]})

    async def _presets(self, request):
        return self._web.json_response([p.__dict__ for p in self.presets.saved()])

    async def _save_preset(self, request):
        body = await _json(request)
        name = body.get("name")
        if not valid_preset_name(name):
            return self._web.json_response(
                {"error": "name: 1 to 40 printable characters, no spaces at the ends"}, status=400
            )
        c = self.controls
        seed = int(self._stats.get("seed") or 0)
        preset = Preset(str(name), c.style, c.tempo_bpm, c.mood, seed, c.variation, c.meter)
        await asyncio.get_running_loop().run_in_executor(None, self.presets.save, preset)
        return self._web.json_response(preset.__dict__)

    async def _recall(self, request):
        body = await _json(request)
        preset = self.presets.get(str(body.get("name")))
        if preset is None:
            return self._web.json_response({"error": f"no preset {body.get('name')!r}"}, status=404)
        controls = Controls(preset.style, preset.tempo_bpm, preset.mood, preset.variation, preset.meter)
        self.controls = controls
        self.on_controls(controls, preset.seed)
        self._broadcast()
        return self._web.json_response(preset.__dict__)

    async def _delete_preset(self, request):
        if not self.presets.delete(request.match_info["name"]):
            return self._web.json_response({"error": "no such preset"}, status=404)
        return self._web.json_response({"deleted": request.match_info["name"]})

    async def _recording_list(self, request):
        return self._web.json_response(self.recordings.listing())

    async def _recording_file(self, request):
        name = request.match_info["file"]
        path = self.recordings.file(name)
        if path is None:
            return self._web.json_response({"error": "no such recording"}, status=404)
        response = self._web.FileResponse(path, headers={"Content-Type": RECORDING_TYPES[path.suffix[1:]]})
        if request.query.get("download"):
            response.headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
        return response

    async def _delete_recording(self, request):
        gone = self.recordings.delete(request.match_info["name"])
        if not gone:
            return self._web.json_response({"error": "no such recording"}, status=404)
        return self._web.json_response({"deleted": gone})

    async def _stream(self, request):
        web = self._web
        if self.stream is None:
            return web.json_response({"error": "the stream is off ([remote] stream = false)"}, status=404)
        response = web.StreamResponse(headers={**HEADERS, "Content-Type": "audio/mpeg"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()

        def deliver(data: bytes) -> bool:  # the encoder thread
            if q.qsize() >= BACKLOG:
                loop.call_soon_threadsafe(q.put_nowait, None)
                return False
            loop.call_soon_threadsafe(q.put_nowait, data)
            return True

        listener = self._last_listener = Listener(deliver)
        self.stream.add(listener)
        self._streams.add(q)  # closing the server ends it too
        try:
            while (data := await q.get()) is not None:
                await response.write(data)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._streams.discard(q)
            self.stream.remove(listener)
        return response


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
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}
