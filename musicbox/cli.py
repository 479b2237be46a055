"""The ``musicbox`` console command.

Each subcommand lives in ``musicbox/commands/<name>.py`` with two functions: ``register(subparsers)``,
which only declares arguments, and ``run(args) -> int``, which imports its heavy modules lazily. So
``musicbox --help`` and ``musicbox play`` never import torch (tests/test_dependency_wall.py).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from musicbox import __version__
from musicbox.errors import MusicBoxError

COMMANDS = ("data", "train", "eval", "quantize", "render", "play", "bench", "doctor", "install_service")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musicbox", description="An offline AI music box.")
    parser.add_argument("--version", action="version", version=f"musicbox {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"musicbox.commands.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our own loggers speak at INFO; libraries (onnxruntime's quantizer logs every tensor at INFO) only
    # from WARNING, unless --verbose.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("musicbox").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.run(args) or 0)
    except MusicBoxError as exc:
        print(f"musicbox: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
