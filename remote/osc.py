"""OSC for installations and show control (``[osc]``, docs/rig.md), with python-osc over UDP.

In: ``/musicbox/<knob> value`` for each knob (``style`` a position or a style name, ``tempo`` BPM,
``mood``, ``variation``; checked by ``ControlRanges`` like every other surface), ``/musicbox/meter "3/4"``,
``/musicbox/key "D"`` (a tonic, "" = the seed's; it changes at the next phrase start),
``/musicbox/<button>`` for each :class:`~musicbox.runtime.controls.Button` (``play_pause``, ``next``,
``save``, ``keep``, ``new``, ``volume_up``, ``volume_down``, ``shutdown``), and ``/musicbox/subscribe``
(the sender gets the bar and beat from then on). A bad value is answered with ``/musicbox/error
"<what, allowed>"`` and changes nothing.

Out: ``/musicbox/bar <bar number>`` at each bar line and ``/musicbox/beat <beat in bar>`` at each beat,
to ``send_to`` and the subscribers.

Bound like the web remote: off unless ``enabled``; only senders on the LAN are heard (private,
link-local and loopback addresses; a datagram from elsewhere is dropped and logged once per sender).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from musicbox.errors import ConfigError
from musicbox.runtime.controls import FIELDS, KNOBS, Button, ControlRanges, Controls

log = logging.getLogger("musicbox.osc")
PREFIX = "/musicbox/"


def lan_only(host: str) -> bool:
    """Whether ``host`` is a LAN sender (private, link-local or loopback)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_link_local or address.is_loopback


class OscServer:
    """The OSC surface of a playing box. ``controls()``: the knobs now; ``on_controls(Controls)`` and
    ``on_button(Button)`` hand changes to the box (and the other surfaces); ``position()``: (bar, beat)
    playing, for the bar/beat messages (None: no bar/beat out)."""

    def __init__(
        self,
        config,
        ranges: ControlRanges,
        controls: Callable[[], Controls],
        on_controls: Callable[[Controls], None],
        on_button: Callable[[Button], None],
        position: Callable[[], tuple[int, int]] | None = None,
    ):
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import ThreadingOSCUDPServer
        from pythonosc.udp_client import SimpleUDPClient

        self.ranges, self.controls = ranges, controls
        self.on_controls, self.on_button, self.position = on_controls, on_button, position
        self._client = SimpleUDPClient
        self.subscribers: dict[tuple[str, int], object] = {}
        self.refused: set[str] = set()
        if config.send_to:
            host, _, port = config.send_to.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f'[osc] send_to = {config.send_to!r}: give "host:port", or ""')
            self.subscribers[(host, int(port))] = SimpleUDPClient(host, int(port))
        dispatcher = Dispatcher()
        for knob in KNOBS:
            dispatcher.map(PREFIX + knob, self._knob, knob, needs_reply_address=True)
        for choice in ("meter", "key"):
            dispatcher.map(PREFIX + choice, self._knob, choice, needs_reply_address=True)
        for button in Button:
            dispatcher.map(PREFIX + button.value, self._button, button, needs_reply_address=True)
        dispatcher.map(PREFIX + "subscribe", self._subscribe, needs_reply_address=True)
        outer = self

        class LanServer(ThreadingOSCUDPServer):
            def verify_request(self, request, client_address) -> bool:
                host = client_address[0]
                if lan_only(host):
                    return True
                if host not in outer.refused:
                    outer.refused.add(host)
                    log.warning("OSC from %s refused: only LAN senders are heard", host)
                return False

        try:
            self.server = LanServer((config.bind, config.port), dispatcher)
        except OSError as exc:
            raise ConfigError(
                f"[osc] cannot listen on {config.bind}:{config.port} ({exc}); choose another [osc] port"
            ) from exc
        self.address = self.server.server_address
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self.server.serve_forever, name="musicbox-osc", daemon=True)]
        if position is not None:
            self._threads.append(
                threading.Thread(target=self._announce, name="musicbox-osc-out", daemon=True)
            )

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        log.info("OSC on udp://%s:%d", *self.address[:2])

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    # ---- in ----------------------------------------------------------------------------------------

    def _knob(self, sender, address: str, args, *values) -> None:
        (knob,) = args
        if len(values) != 1:
            return self._error(sender, f"{address}: give one value")
        where = f"OSC {address}"
        change: dict[str, str | float]
        try:
            if knob == "meter":
                change = {"meter": self.ranges.check_meter(values[0], where)}
            elif knob == "key":
                change = {"key": self.ranges.check_key(values[0], where)}
            else:
                change = {FIELDS[knob]: self.ranges.check(knob, values[0], where)}
        except ConfigError as exc:
            return self._error(sender, str(exc))
        self.on_controls(replace(self.controls(), **change))  # type: ignore[arg-type]  # checked above

    def _button(self, sender, address: str, args, *values) -> None:
        (button,) = args
        self.on_button(button)

    def _subscribe(self, sender, address: str, *values) -> None:
        host, port = sender[0], sender[1]
        self.subscribers[(host, port)] = self._client(host, port)

    def _error(self, sender, message: str) -> None:
        log.warning("%s (from %s)", message, sender[0])
        self._client(sender[0], sender[1]).send_message(PREFIX + "error", message)

    # ---- out ---------------------------------------------------------------------------------------

    def _announce(self, period_s: float = 0.005) -> None:
        last = (-1, -1)
        while not self._stop.wait(period_s):
            now = self.position() if self.position is not None else last
            if now == last or now[0] < 0:
                continue
            for client in list(self.subscribers.values()):
                if now[0] != last[0]:
                    client.send_message(PREFIX + "bar", now[0])  # type: ignore[attr-defined]
                client.send_message(PREFIX + "beat", now[1])  # type: ignore[attr-defined]
            last = now


def box_position(box) -> tuple[int, int]:
    """(bar, beat in the bar, 0-based) the box's player is at; (-1, -1) before the first bar."""
    _, bar, _ = box.ring.playing()
    if bar < 0:
        return -1, -1
    info = box.bar_info(bar, box.ring.playing()[2])
    beats = info.meter.beats if info is not None else (0, 4, 8, 12)
    step = box.player.bar_step()
    return bar, max(0, sum(1 for b in beats if b <= step) - 1)
