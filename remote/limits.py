"""What keeps one client of the web remote from stopping the box: descriptors, connections, rates, Host.

- **Descriptors.** :func:`connection_budget` raises the process's soft ``RLIMIT_NOFILE`` toward its hard
  limit (at most :data:`FD_CEILING`) and gives the server a share of what is left after the descriptors
  open now and :data:`RESERVED_FDS` more, kept for the box itself (worker restarts, the audio device,
  SAVE's files). Each connection counts twice (its socket and a recording file it may send).
- **Connections.** :class:`ConnectionGate` admits at most ``total`` connections, at most ``per_client``
  from one client; when full, a newcomer from a client holding fewer than the busiest one takes the
  busiest one's oldest idle connection (one between requests or before its first), so a flood from some
  addresses never shuts out another. Idle connections also close by themselves (aiohttp's keep-alive
  timeout, :data:`IDLE_S`), and a request must send its body within :data:`BODY_S`.
- **Rates.** :class:`RateLimit`: a token bucket per client (controls, buttons), and the pairing lockout
  per client in :mod:`musicbox.remote.auth`.
- **Host.** :func:`host_allowed`: the names and addresses of this box only, so a page of another site
  whose name was pointed at the box (DNS rebinding) gets a 421 on every route.

A client is its address (an IPv6 address by its /64, the part a host picks freely).
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import os
import resource
import socket
import time
from collections.abc import Callable, Iterable

log = logging.getLogger("musicbox.remote")

FD_CEILING = 65536  # the soft descriptor limit is raised at most to this (or to the hard limit)
RESERVED_FDS = 64  # descriptors beyond those open at start kept for the box, never given to clients
MAX_CONNECTIONS = 128  # connections at most, whatever the descriptor limit
PER_CLIENT = 16  # connections at most from one client (a browser opens 6 per host, +events, +stream)
IDLE_S = 15.0  # an idle connection (no request under way) is closed after this many seconds
BODY_S = 10.0  # seconds a request may take to send its body
MAX_TRACKED = 1024  # clients a rate limit remembers (the least recently seen are forgotten first)

REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b'Retry-After: 5\r\nContent-Length: 62\r\n\r\n{"error": "too many connections to the box; try again in 5 s"}'
)


def client_of(address: str) -> str:
    """The client an address belongs to: an IPv4 address (also when IPv4-mapped), an IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def connection_budget(reserved: int = RESERVED_FDS) -> tuple[int, int]:
    """(connections the server may hold, the soft descriptor limit), after raising the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FD_CEILING if hard == resource.RLIM_INFINITY else min(hard, FD_CEILING)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.info("remote: cannot raise the descriptor limit from %d: %s", soft, exc)
    limit = FD_CEILING if soft == resource.RLIM_INFINITY else soft
    spare = limit - _open_descriptors() - reserved
    connections = min(MAX_CONNECTIONS, spare // 2)
    if connections < 4:
        log.warning(
            "remote: the descriptor limit (%d) leaves the page %d connections; raise LimitNOFILE",
            limit,
            spare,
        )
    return max(1, connections), limit


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


class ConnectionGate:
    """The connections the server holds, by client (used on the server's event loop only).

    total, per_client: the caps. busy(transport): whether a request is under way on it.
    """

    def __init__(self, total: int, per_client: int, busy: Callable[[object], bool]):
        self.total = total
        self.per_client = min(per_client, total)
        self._busy = busy
        self._open: dict[str, list] = {}  # client -> its transports, oldest first

    def __len__(self) -> int:
        return sum(len(ts) for ts in self._open.values())

    def admit(self, client: str) -> str | None:
        """None when a connection from ``client`` may be held (room made if needed), else why not."""
        self._prune()
        mine = len(self._open.get(client, ()))
        if mine >= self.per_client:
            return f"{mine} connections from {client} already"
        if len(self) < self.total:
            return None
        busiest = max(self._open, key=lambda c: len(self._open[c]))
        if len(self._open[busiest]) > mine + 1:
            idle = next((t for t in self._open[busiest] if not self._busy(t)), None)
            if idle is not None:
                idle.close()
                self._open[busiest].remove(idle)
                return None
        return f"{self.total} connections held already"

    def add(self, client: str, transport) -> None:
        self._open.setdefault(client, []).append(transport)

    def _prune(self) -> None:
        for client in list(self._open):
            kept = [t for t in self._open[client] if not t.is_closing()]
            if kept:
                self._open[client] = kept
            else:
                del self._open[client]


class RateLimit:
    """At most ``rate`` actions a second per client on average, ``burst`` at once (a token bucket).
    ``clock``: seconds, monotonic (a test passes its own)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def wait(self, client: str) -> float:
        """0 when ``client`` may act now (and it is counted), else the seconds until it may."""
        now = self.clock()
        tokens, then = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        waiting = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens - 1.0 if not waiting else tokens, now)
        while len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
        return waiting


def box_names(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names this box answers to (lower case): localhost, its host name and
    ``<hostname>.local`` (mDNS), the configured ``extra`` ones and the bound address; any address of the
    box is allowed besides (:func:`host_allowed`)."""
    host = socket.gethostname().lower()
    names = {"localhost", host, f"{host.split('.')[0]}.local", *(n.lower().rstrip(".") for n in extra)}
    if bind not in ("", "0.0.0.0", "::"):
        names.add(bind.lower())
    return frozenset(names)


def split_host(header: str) -> str:
    """The name or address of a Host header, without the port and the brackets of an IPv6 address."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header[1:]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(header: str | None, names: frozenset[str], local_address: str | None) -> bool:
    """Whether a request's Host header names this box: one of ``names``, a loopback address, or the
    address the request came in on (``local_address``, the socket's own)."""
    if not header or not header.isascii():
        return False
    host = split_host(header).rstrip(".")
    if host in names:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if local_address is None:
        return False
    try:
        local = ipaddress.ip_address(local_address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(local, ipaddress.IPv6Address) and local.ipv4_mapped is not None:
        local = local.ipv4_mapped
    return ip == local
