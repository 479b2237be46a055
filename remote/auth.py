"""Pairing and sessions of the web remote: nothing is readable or changeable before a device pairs.

Pairing: the box shows a 6-digit code (terminal box, ``musicbox doctor``, the journal). A device that
sends it gets a session token in a cookie (``HttpOnly; SameSite=Strict``) and the code is replaced at
once, so a code works exactly once. Wrong codes are rate limited per client (its address, see
:func:`musicbox.remote.limits.client_of`): after ``attempts`` wrong codes within a minute a client's
pairing answers 429 until the minute has passed; another client (the owner's phone) pairs meanwhile.

Sessions: random 256-bit tokens; the state folder keeps only their SHA-256 (``sessions.json``), so a
paired phone stays paired across restarts of the box and the file does not leak a usable token. A
state-changing request must also carry the session's CSRF token (derived from the session token, handed
to the page by ``GET /api/session``) in the ``X-Musicbox-CSRF`` header: a cross-site page can neither
read it nor send a custom header without a CORS preflight the server never grants.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path

log = logging.getLogger("musicbox.remote")

COOKIE = "musicbox_session"
CSRF_HEADER = "X-Musicbox-CSRF"
MAX_SESSIONS = 16  # paired devices kept; pairing one more forgets the oldest
WINDOW_S = 60.0  # the pairing rate limit's window, seconds
MAX_CLIENTS = 1024  # clients whose wrong codes are remembered (the least recent are forgotten first)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_of(token: str) -> str:
    """The CSRF token that goes with session ``token`` (hex, 32 characters)."""
    return hashlib.sha256(b"musicbox-csrf:" + token.encode()).hexdigest()[:32]


def csrf_matches(token: str, header: str) -> bool:
    """Whether ``header`` is the CSRF token of session ``token`` (any header of other than ASCII is not)."""
    return header.isascii() and hmac.compare_digest(header, csrf_of(token))


class Pairing:
    """The current pairing code, the paired sessions and the rate limit; thread-safe.

    state_dir: folder for ``pairing.json`` (the code and the page's address, mode 0600, read by
    ``musicbox doctor``) and ``sessions.json``. url: the page's address, shown with the code.
    attempts: wrong codes allowed per :data:`WINDOW_S` seconds.
    """

    def __init__(self, state_dir: Path, url: str, attempts: int = 5):
        self.state_dir = Path(state_dir)
        self.url = url
        self.attempts = attempts
        self._lock = threading.Lock()
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._sessions = self._load_sessions()
        self._announced = False
        self.code = ""
        self._new_code()

    def announce(self) -> None:
        """Show the code from now on (log and ``pairing.json``); call once the server listens."""
        self._announced = True
        self._show()

    # ---- pairing ------------------------------------------------------------------------------------

    def pair(self, code: str, client: str = "", now: float | None = None) -> tuple[str | None, float]:
        """Check ``code`` from ``client``: (a new session token, 0) when right; (None, 0) when wrong;
        (None, seconds to wait) when that client sent too many wrong codes in the last minute."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._failures.pop(client, collections.deque())
            while failures and now - failures[0] >= WINDOW_S:
                failures.popleft()
            if failures:
                self._failures[client] = failures  # the most recent client last
                while len(self._failures) > MAX_CLIENTS:
                    self._failures.popitem(last=False)
            if len(failures) >= self.attempts:
                return None, WINDOW_S - (now - failures[0])
            if not (code.isascii() and hmac.compare_digest(code.strip().encode(), self.code.encode())):
                failures.append(now)
                self._failures[client] = failures
                log.warning(
                    "remote: wrong pairing code from %s (%d in the last minute)", client, len(failures)
                )
                return None, 0.0
            token = secrets.token_urlsafe(32)
            self._sessions[_digest(token)] = time.time()
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.pop(min(self._sessions, key=self._sessions.__getitem__))
            self._save_sessions()
            log.info("remote: a device paired (%d paired)", len(self._sessions))
            self._new_code()
            return token, 0.0

    def _new_code(self) -> None:
        self.code = f"{secrets.randbelow(10**6):06d}"
        if self._announced:
            self._show()

    def _show(self) -> None:
        log.info("remote: open %s and pair with code %s", self.url, self.code)
        _write_private(
            self.state_dir / "pairing.json", {"url": self.url, "code": self.code, "pid": os.getpid()}
        )

    # ---- sessions -----------------------------------------------------------------------------------

    def valid(self, token: str | None) -> bool:
        """True when ``token`` is a paired session's (a token of other than ASCII never is)."""
        if not token or not token.isascii():
            return False
        with self._lock:
            return _digest(token) in self._sessions

    def forget(self, token: str) -> None:
        """Unpair the session of ``token``."""
        with self._lock:
            if self._sessions.pop(_digest(token), None) is not None:
                self._save_sessions()

    def _load_sessions(self) -> dict[str, float]:
        path = self.state_dir / "sessions.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("remote: %s unreadable (%s); every device must pair again", path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: float(v) for k, v in data.items() if isinstance(k, str) and isinstance(v, (int, float))}

    def _save_sessions(self) -> None:
        _write_private(self.state_dir / "sessions.json", self._sessions)


def _write_private(path: Path, data) -> None:
    """Write JSON ``data`` to ``path`` atomically, readable by its owner only; a failure is logged."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("remote: cannot write %s: %s", path, exc)


def read_pairing(state_dir: Path) -> dict | None:
    """What ``pairing.json`` in ``state_dir`` says (url, code, pid), or None when absent/unreadable."""
    try:
        data = json.loads((Path(state_dir) / "pairing.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
