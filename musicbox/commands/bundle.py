"""`musicbox bundle install FILE|DIR`, `musicbox bundle rollback`, `musicbox bundle list`: model updates.

A bundle (a folder written by ``musicbox quantize``, or a .tar/.tar.gz/.tar.xz of one) is copied into the
store (:func:`musicbox.config.bundle_store`, /var/lib/musicbox/bundles) beside the current one, its
manifest and every file's size and sha256 are verified there (the runtime's own checks), and only then
the ``current`` link is switched, atomically (a new link renamed over the old). ``previous`` keeps the
one before, for ``rollback``; older ones are deleted. A bundle that fails verification is deleted and
nothing else changes: the box keeps the bundle it has. A running box keeps the folder it opened until
it restarts (``sudo systemctl restart musicbox``).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

CURRENT, PREVIOUS = "current", "previous"


def register(sub):
    p = sub.add_parser("bundle", help="install, roll back or list model bundles (as root on a box)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser("install", help="verify a bundle folder or archive and switch to it")
    install.add_argument(
        "source", type=Path, help="bundle folder (with manifest.json) or .tar[.gz|.xz] of one"
    )
    actions.add_parser("rollback", help="switch back to the bundle installed before the current one")
    actions.add_parser("list", help="the installed bundles, current and previous")
    p.set_defaults(run=run)


def run(args) -> int:
    from musicbox.config import bundle_store

    store = bundle_store()
    if args.action == "install":
        name = install(args.source, store)
        print(f"installed {store / name} and made it current; `sudo systemctl restart musicbox` plays it")
    elif args.action == "rollback":
        name = rollback(store)
        print(f"current is {store / name} again; `sudo systemctl restart musicbox` plays it")
    else:
        for line in describe(store):
            print(line)
    return 0


def install(source: Path, store: Path) -> str:
    """Copy ``source`` into ``store``, verify it, switch ``current`` to it; returns its folder name."""
    from musicbox.runtime.bundle import verify_bundle

    store.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=store))
    try:
        root = _unpack(Path(source), staging)
        manifest, _files = verify_bundle(root)
        info = manifest.model
        name = f"{info.name}-{info.provenance.trained}-{info.provenance.checkpoint_sha256[:12]}"
        current = os.readlink(store / CURRENT) if (store / CURRENT).is_symlink() else None
        if name == current:
            return name  # the same model (same checkpoint) is already current: nothing to switch
        _readable(root)
        target = store / name
        if target.exists():
            shutil.rmtree(target)
        os.rename(root, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if current is not None:
        _link(store, PREVIOUS, current)
    _link(store, CURRENT, name)
    _prune(store)
    return name


def rollback(store: Path) -> str:
    """Swap ``current`` and ``previous``; returns the name now current."""
    from musicbox.errors import BundleError

    previous = store / PREVIOUS
    if not (previous / "manifest.json").is_file():
        raise BundleError(f"no previous bundle in {store} to roll back to (`musicbox bundle list`)")
    back, now = os.readlink(previous), os.readlink(store / CURRENT)
    _link(store, CURRENT, back)
    _link(store, PREVIOUS, now)
    return back


def describe(store: Path) -> list[str]:
    """One line per installed bundle, marked current/previous."""
    marks = {}
    for link in (CURRENT, PREVIOUS):
        if (store / link).is_symlink():
            marks[os.readlink(store / link)] = link
    names = (
        sorted(p.name for p in store.iterdir() if p.is_dir() and not p.is_symlink()) if store.is_dir() else []
    )
    names = [n for n in names if not n.startswith(".")]
    if not names:
        return [f"no bundle installed in {store}: the box plays the one shipped with it"]
    return [f"{marks.get(n, ''):>8}  {store / n}" for n in names]


def _unpack(source: Path, staging: Path) -> Path:
    """``source`` (folder or tar archive) copied under ``staging``; returns the folder with manifest.json."""
    from musicbox.errors import BundleError

    if source.is_dir():
        root = staging / "bundle"
        shutil.copytree(source, root, symlinks=False)
    elif tarfile.is_tarfile(source):
        root = staging / "bundle"
        with tarfile.open(source) as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if not (member.isfile() or member.isdir()) or name.is_absolute() or ".." in name.parts:
                    raise BundleError(
                        f"{source}: refusing archive member {member.name!r} (links, devices and paths "
                        "outside the bundle are not allowed)"
                    )
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(root, **safe)
    else:
        raise BundleError(f"{source}: neither a bundle folder nor a .tar/.tar.gz/.tar.xz archive of one")
    found = sorted(p.parent for p in root.rglob("manifest.json"))
    if len(found) != 1:
        raise BundleError(
            f"{source}: expected one manifest.json, found {len(found)}; is it a bundle from `musicbox quantize`?"
        )
    return found[0]


def _readable(root: Path) -> None:
    """Folders 0755 and files 0644, so the service user can read a bundle that root installed."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _link(store: Path, name: str, target: str) -> None:
    """Point ``store/name`` at ``target`` atomically (a new link renamed over the old one)."""
    tmp = store / f".{name}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, store / name)


def _prune(store: Path) -> None:
    """Delete installed bundles that are neither current nor previous."""
    keep = {os.readlink(store / link) for link in (CURRENT, PREVIOUS) if (store / link).is_symlink()}
    for path in store.iterdir():
        if (
            path.is_dir()
            and not path.is_symlink()
            and not path.name.startswith(".")
            and path.name not in keep
        ):
            shutil.rmtree(path)
