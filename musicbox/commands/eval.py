"""`musicbox eval`: placeholder until its issue lands."""

from musicbox.errors import MusicBoxError


def register(sub):
    p = sub.add_parser("eval", help="(not built yet)")
    p.set_defaults(run=run)


def run(args):
    raise MusicBoxError("`musicbox eval` is not built yet")
