"""Run a command under a systemd unit's system-call and socket-family filters, without systemd.

``python3 unit_sandbox.py UNIT -- COMMAND...`` reads ``SystemCallFilter=`` (allow list, then ``~`` deny
lists), ``SystemCallErrorNumber=`` and ``RestrictAddressFamilies=`` from the unit file, expands the
``@groups`` with ``systemd-analyze syscall-filter`` (the same tables systemd uses), installs the resulting
seccomp filter with libseccomp (Debian python3-seccomp, the system Python's) and execs COMMAND under it,
so a test can check that the box still plays with exactly what the unit allows. ``PrivateNetwork=yes``
(the last assignment wins, as in systemd) runs COMMAND in a network namespace of its own with only a
loopback device, as systemd does: a server it starts cannot be reached from outside.

A drop-in is modelled by appending it to the unit file (systemd reads drop-ins after the unit).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import socket
import struct
import subprocess
import sys


@functools.cache
def expand(group: str) -> frozenset[str]:
    """The system calls of ``@group`` (nested groups expanded), per this machine's systemd."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True, text=True).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if word and not word.startswith("#"):
            names |= expand(word) if word.startswith("@") else {word}
    return frozenset(names)


def unit_settings(path: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, values in order (repeated keys accumulate)."""
    settings: dict[str, list[str]] = {}
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";", "[")):
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def allowed_syscalls(settings: dict[str, list[str]]) -> set[str]:
    """The unit's SystemCallFilter= as a set of allowed calls (an allow list first, then ~deny lists)."""
    allowed: set[str] = set()
    for value in settings.get("SystemCallFilter", []):
        deny = value.startswith("~")
        items = value.lstrip("~").split()
        names = set().union(*(expand(i) if i.startswith("@") else {i} for i in items))
        allowed = allowed - names if deny else allowed | names
    return allowed


def address_families(settings: dict[str, list[str]]) -> list[str]:
    """The unit's RestrictAddressFamilies= allow lists merged, as systemd merges them (a drop-in adds
    families; an empty assignment starts over)."""
    families: list[str] = []
    for value in settings.get("RestrictAddressFamilies", []):
        families = [] if not value else families + [f for f in value.split() if f not in families]
    return families


def private_network(settings: dict[str, list[str]]) -> bool:
    """The unit's effective ``PrivateNetwork=`` (the last assignment; systemd's boolean spellings)."""
    values = settings.get("PrivateNetwork", [])
    return bool(values) and values[-1].lower() in ("yes", "true", "on", "1")


CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def enter_private_network() -> None:
    """A network namespace of this process's own with ``lo`` up (what systemd gives PrivateNetwork=yes);
    a user namespace too when not root, mapping this user to itself."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNET if uid == 0 else CLONE_NEWNET | CLONE_NEWUSER
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    if uid != 0:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1"),
            ("gid_map", f"{gid} {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH", b"lo", 0)
        current = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", current | IFF_UP))


def main(argv: list[str]) -> None:
    unit, command = argv[0], argv[argv.index("--") + 1 :]
    import seccomp  # the system Python's (Debian python3-seccomp); tests import the rest of this file

    settings = unit_settings(unit)
    if private_network(settings):
        enter_private_network()
    err = getattr(errno, settings.get("SystemCallErrorNumber", ["EPERM"])[-1])
    families = [getattr(socket, f) for f in address_families(settings)]
    sandbox = seccomp.SyscallFilter(defaction=seccomp.ERRNO(err))
    for name in sorted(allowed_syscalls(settings) - {"socket"}):
        with contextlib.suppress(RuntimeError, ValueError):  # not a system call on this architecture
            sandbox.add_rule(seccomp.ALLOW, name)
    for family in families:
        sandbox.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, family))
    sandbox.load()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
