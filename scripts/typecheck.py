#!/usr/bin/env python3
"""mypy with this project's package layout: ``.venv/bin/python scripts/typecheck.py [mypy options]``.

The top-level folders install as subpackages of musicbox (``runtime/`` is ``musicbox.runtime``: pyproject's
``[tool.setuptools] package-dir``), which mypy cannot read; on its own it would name ``runtime/bundle.py``
``runtime.bundle`` and find no ``musicbox.runtime``. This runs mypy's own steps (options and ``files`` from
``[tool.mypy]`` in pyproject.toml, build, summary) after giving each file its installed module name.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import mypy.main
from mypy.fscache import FileSystemCache
from mypy.util import FancyFormatter, count_stats

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def package_dirs() -> dict[Path, str]:
    """Folder -> package, from pyproject's package-dir (longest folder first)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    dirs = {(ROOT / folder).resolve(): package for package, folder in mapping.items()}
    return dict(sorted(dirs.items(), key=lambda item: -len(item[0].parts)))


def module_name(path: Path, dirs: dict[Path, str]) -> str | None:
    """``runtime/box/worker.py`` -> ``musicbox.runtime.box.worker``; None outside every package folder."""
    path = path.resolve()
    for folder, package in dirs.items():
        if path.is_relative_to(folder):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return None


def main(args: list[str]) -> int:
    """mypy's own command line (mypy.main.main) with the module names fixed; returns its exit status."""
    fscache = FileSystemCache()
    sources, options = mypy.main.process_options(args, stdout=sys.stdout, stderr=sys.stderr, fscache=fscache)
    dirs = package_dirs()
    for source in sources:
        if source.path and (name := module_name(Path(source.path), dirs)):
            source.module, source.base_dir = name, str(ROOT)
    _, messages, blockers = mypy.main.run_build(
        sources, options, fscache, time.time(), sys.stdout, sys.stderr
    )
    n_errors, _, n_files = count_stats(messages)
    formatter = FancyFormatter(sys.stdout, sys.stderr, options.hide_error_codes)
    if n_errors:
        print(formatter.format_error(n_errors, n_files, len(sources), blockers=blockers))
        return 2 if blockers else 1
    print(formatter.format_success(len(sources)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
