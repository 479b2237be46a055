"""`musicbox install-service`: placeholder until its issue lands."""

from musicbox.errors import MusicBoxError


def register(sub):
    p = sub.add_parser("install-service", help="(not built yet)")
    p.set_defaults(run=run)


def run(args):
    raise MusicBoxError("`musicbox install-service` is not built yet")
