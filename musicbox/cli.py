"""The ``musicbox`` console command.

Each subcommand lives in ``musicbox/commands/<name>.py`` with two functions: ``register(subparsers)``,
which only declares arguments, and ``run(args) -> int``, which imports its heavy modules lazily. So
``musicbox --help`` and ``musicbox play`` never import torch (tests/test_dependency_wall.py).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from musicbox import __version__
from musicbox.errors import MusicBoxError

COMMANDS = (
    "data",
    "train",
    "distill",
    "restyle",
    "eval",
    "quantize",
    "render",
    "play",
    "bench",
    "doctor",
    "install_service",
    "bundle",
    "report",
)


class _Version(argparse.Action):
    """``--version``: this musicbox and the bundle it would play (looked up only when asked)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="the version and the bundle it plays, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text(), flush=True)  # flushed here, so a closed pipe is caught by main()
        parser.exit()


def version_text() -> str:
    """``musicbox X.Y.Z`` and the bundle a plain ``musicbox play`` opens: folder, model, training date,
    the precisions it holds and the one configured."""
    from musicbox.config import load_config, resolve_bundle
    from musicbox.runtime.manifest import load_manifest

    lines = [f"musicbox {__version__}"]
    try:
        config = load_config()
        root = resolve_bundle(config.bundle.path)
        manifest = load_manifest(root / "manifest.json")
    except MusicBoxError as exc:
        return "\n".join([*lines, f"bundle: none usable ({exc})"])
    model = manifest.model
    lines.append(f"bundle: {root}")
    lines.append(
        f"model: {model.name}, {model.parameters:,} parameters, trained {model.provenance.trained} "
        f"(checkpoint {model.provenance.checkpoint_sha256[:12]})"
    )
    lines.append(f"precision: {config.bundle.precision} (bundle holds {', '.join(manifest.variants)})")
    return "\n".join(lines)


VERBOSE_HELP = "debug logging (before or after the command)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help ends with the styles of the shipped bundle, read from its manifest
    only when help is shown (the manifest's typed reader; no onnxruntime)."""

    def format_help(self) -> str:
        self.epilog = shipped_styles_line()
        return super().format_help()


def shipped_styles_line() -> str:
    """``styles (--style, knob order): chorale, ...`` from the shipped bundle's manifest (its typed reader,
    ``runtime/manifest.py``), or why there are none."""
    from musicbox.config import shipped_bundle
    from musicbox.runtime.manifest import load_manifest

    try:
        styles = load_manifest(shipped_bundle()).controls.styles
    except (MusicBoxError, OSError) as exc:
        return f"styles: none listed ({exc})"
    names = ", ".join(f"{i} {s.name}" for i, s in enumerate(styles))
    return f"styles of the shipped bundle (--style NAME or position): {names}"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="musicbox", description="An offline AI music box.")
    parser.add_argument("--version", action=_Version)
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"musicbox.commands.{name}")
        module.register(sub)
    for command in sub.choices.values():  # the global flag after the command too; absent = the global one
        command.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
        )
    return parser


PIPE_CLOSED = 141
"""Exit status when the reader of stdout went away (``musicbox --version | head -1``): 128 + SIGPIPE,
what the shell reports for a command a pipe stopped."""


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader is gone: stop quietly, no traceback, nothing more to flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return PIPE_CLOSED


def _main(argv: list[str] | None) -> int:
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
