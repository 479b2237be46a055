"""`musicbox quantize`: placeholder until its issue lands."""

from musicbox.errors import MusicBoxError


def register(sub):
    p = sub.add_parser("quantize", help="(not built yet)")
    p.set_defaults(run=run)


def run(args):
    raise MusicBoxError("`musicbox quantize` is not built yet")
