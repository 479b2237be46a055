"""`musicbox data`: placeholder until its issue lands."""

from musicbox.errors import MusicBoxError


def register(sub):
    p = sub.add_parser("data", help="(not built yet)")
    p.set_defaults(run=run)


def run(args):
    raise MusicBoxError("`musicbox data` is not built yet")
