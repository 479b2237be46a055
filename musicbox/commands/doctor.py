"""`musicbox doctor`: placeholder until its issue lands."""

from musicbox.errors import MusicBoxError


def register(sub):
    p = sub.add_parser("doctor", help="(not built yet)")
    p.set_defaults(run=run)


def run(args):
    raise MusicBoxError("`musicbox doctor` is not built yet")
