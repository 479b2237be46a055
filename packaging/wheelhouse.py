"""Download the binary wheels a target Python and CPU need, every environment marker evaluated for the target.

    python3 packaging/wheelhouse.py --python 3.10 --machine aarch64 --out DIR [--find-links DIR] REQ...

``pip download --python-version 3.10`` picks wheels by their tags but evaluates environment markers with
the Python that runs pip: building for JetPack 6 (Python 3.10) on Debian 12 (3.11) it takes
``onnxruntime==1.31.1; python_version >= '3.11'`` and leaves out what a dependency needs only below 3.11
(aiohttp's ``async-timeout``). This walks the requirements itself: each round downloads the new ones with
``--no-deps`` (binary wheels only, for the target's platform tags), reads the downloaded wheels'
``Requires-Dist`` and keeps those whose markers hold for the target, until nothing is new. It needs pip
and the ``packaging`` library (pip's own copy is used when ``packaging`` is not installed).
"""

from __future__ import annotations

import argparse
import email.parser
import subprocess
import sys
import zipfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename
except ImportError:  # pip vendors it
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

PLATFORMS = ("manylinux2014", "manylinux_2_17", "manylinux_2_27", "manylinux_2_28", "linux")
"""Platform tags a board of Debian 12 / Ubuntu 22.04 (glibc 2.35+) runs, newest accepted last."""


def environment(python: str, machine: str) -> dict[str, str]:
    """Marker variables of CPython ``python`` (``3.10``) on Linux ``machine`` (``aarch64``)."""
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_machine": machine,
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "implementation_version": f"{python}.0",
        "platform_release": "",
        "platform_version": "",
        "extra": "",
    }


def wanted(req: Requirement, env: dict[str, str], extras: set[str]) -> bool:
    """Whether ``req`` applies on the target (for a package asked for with ``extras``)."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": extra}) for extra in (extras or {""}) | {""})


def requires(wheel: Path) -> list[Requirement]:
    """The ``Requires-Dist`` lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(z.read(name).decode())
    return [Requirement(line) for line in meta.get_all("Requires-Dist") or []]


def download(reqs: list[str], python: str, machine: str, out: Path, find_links: list[Path]) -> list[Path]:
    """Every wheel ``reqs`` need on the target, in ``out``; returns them."""
    env = environment(python, machine)
    out.mkdir(parents=True, exist_ok=True)
    pending = [r for r in map(Requirement, reqs) if wanted(r, env, set())]
    have: dict[str, Path] = {}
    while pending:
        todo: dict[str, list[Requirement]] = {}
        for req in pending:  # each one's marker already holds for the target
            name = canonicalize_name(req.name)
            if name in have:
                version = parse_wheel_filename(have[name].name)[1]
                if not req.specifier.contains(version, prereleases=True):
                    sys.exit(f"wheelhouse: {req} conflicts with {have[name].name} already chosen")
                continue
            todo.setdefault(name, []).append(req)
        if not todo:
            break
        specs = [
            f"{name}{','.join(str(r.specifier) for r in group if r.specifier)}"
            for name, group in todo.items()
        ]
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(out),
        ]
        cmd += ["--python-version", python, "--implementation", "cp"]
        cmd += [arg for p in PLATFORMS for arg in ("--platform", f"{p}_{machine}")]
        cmd += [arg for d in find_links for arg in ("--find-links", str(d))]
        subprocess.run(cmd + specs, check=True)
        by_name = {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in out.glob("*.whl")}
        pending = []
        for name, group in todo.items():
            have[name] = by_name[name]
            extras = set().union(*(r.extras for r in group))
            pending += [r for r in requires(have[name]) if wanted(r, env, extras)]
    return sorted(have.values())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", required=True, help="the target's Python, e.g. 3.10")
    p.add_argument("--machine", required=True, help="the target's CPU: aarch64 or x86_64")
    p.add_argument("--out", type=Path, required=True, help="folder for the wheels")
    p.add_argument("--find-links", type=Path, action="append", default=[], help="also take wheels from here")
    p.add_argument("requirements", nargs="+")
    args = p.parse_args(argv)
    for wheel in download(args.requirements, args.python, args.machine, args.out, args.find_links):
        print(wheel.name)


if __name__ == "__main__":
    main()
