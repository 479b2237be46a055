"""`musicbox bundle pack|install|rollback|list`: model updates.

``pack DIR`` checks a bundle folder (one written by ``musicbox quantize``) the way ``install`` will and
writes it as one ``musicbox-bundle.tar.gz``, the file the README installs.

``install FILE|DIR`` takes a bundle folder or a .tar/.tar.gz/.tar.xz of one, copies it into the store
(:func:`musicbox.config.bundle_store`, /var/lib/musicbox/bundles) beside the current one, checks it there
(only folders and regular files, the manifest, every file's size and sha256: runtime/bundle_files.py) and
only then switches the ``current`` link, atomically (a new link renamed over the old). A folder is held to
the archive's rules: a link of either kind, a device, FIFO or socket in it is refused before anything is
copied. Installed bundles are named ``<model>-<trained>-<digest>``, the digest covering every file's
sha256, so a bundle that differs in any file (a new manifest with the same checkpoint too) is installed
as a new one, and installing the current bundle again says so. Every bad input (a missing path, a
truncated archive, a damaged file) is one line and exit 78; the store is left as it was.

``rollback`` swaps ``current`` and ``previous``; ``rollback --shipped`` returns to the bundle shipped with
musicbox (no ``current`` link: :func:`musicbox.config.resolve_bundle` then opens the shipped one).
``previous`` is ``shipped`` after the first install, so a plain rollback also gets there. Bundles that are
neither current nor previous are deleted. A running box keeps the folder it opened until it restarts
(``sudo systemctl restart musicbox``).
"""

from __future__ import annotations

import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

CURRENT, PREVIOUS = "current", "previous"
SHIPPED = "shipped"
"""The target of ``previous`` when the bundle before was the one shipped with musicbox."""
ARCHIVE = "musicbox-bundle.tar.gz"
DAMAGED_ARCHIVE = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)
"""What reading a truncated or damaged archive raises (gzip: EOFError/zlib.error, xz: LZMAError)."""


def register(sub):
    p = sub.add_parser("bundle", help="pack, install, roll back or list model bundles (install as root)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    pack = actions.add_parser("pack", help=f"check a bundle folder and write it as {ARCHIVE}")
    pack.add_argument("folder", type=Path, help="bundle folder (from `musicbox quantize --out FOLDER`)")
    pack.add_argument("--out", type=Path, default=Path(ARCHIVE), help=f"archive to write (default {ARCHIVE})")
    install = actions.add_parser("install", help="verify a bundle folder or archive and switch to it")
    install.add_argument(
        "source", type=Path, help="bundle folder (with manifest.json) or .tar[.gz|.xz] of one"
    )
    rollback = actions.add_parser("rollback", help="switch back to the bundle before the current one")
    rollback.add_argument(
        "--shipped", action="store_true", help="switch back to the bundle shipped with musicbox"
    )
    actions.add_parser("list", help="the installed bundles, current and previous")
    p.set_defaults(run=run)


def run(args) -> int:
    from musicbox.config import bundle_store

    store = bundle_store()
    restart = "`sudo systemctl restart musicbox` plays it"
    if args.action == "pack":
        out, check = pack(args.folder, args.out)
        size = out.stat().st_size / 2**20
        print(
            f"packed {args.folder} ({len(check.hashes)} files, digest {check.digest[:12]}) -> {out} ({size:.1f} MiB)"
        )
    elif args.action == "install":
        name, switched = install(args.source, store)
        if switched:
            print(f"installed {store / name} and made it current; {restart}")
        else:
            print(
                f"{args.source} is the current bundle already ({store / name}, every file's sha256 the same)"
            )
    elif args.action == "rollback":
        name = rollback(store, shipped=args.shipped)
        print(f"current is {_where(store, name)} again; {restart}")
    else:
        for line in describe(store):
            print(line)
    return 0


def pack(folder: Path, out: Path):
    """Check ``folder`` as ``install`` will, then write it to ``out`` (a .tar.gz, written beside it and
    renamed into place) with the files under ``<model name>/``, owned by root, 0644/0755, in path order.
    Returns ``out`` and the check."""
    from musicbox.errors import BundleError
    from musicbox.runtime.bundle_files import verify_bundle

    check = verify_bundle(folder)
    top = check.manifest.model.name
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")

    def normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    try:
        folders = sorted({str(p) for rel in check.hashes for p in Path(rel).parents[:-1]})
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(folder, arcname=top, recursive=False, filter=normalized)
            for rel in [*folders, *sorted(check.hashes)]:
                tar.add(folder / rel, arcname=f"{top}/{rel}", recursive=False, filter=normalized)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BundleError(
            f"{out}: cannot write the archive ({exc.strerror or exc}); choose another --out"
        ) from None
    return out, check


def install(source: Path, store: Path) -> tuple[str, bool]:
    """Copy ``source`` into ``store``, verify it, switch ``current`` to it. Returns its folder name and
    whether ``current`` changed (False: the very same bundle is current already)."""
    from musicbox.errors import BundleError
    from musicbox.runtime.bundle_files import verify_bundle

    source = Path(source)
    try:
        store.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=store))
    except OSError as exc:
        raise BundleError(
            f"{store}: cannot write there ({exc.strerror}); run it as root (`sudo musicbox bundle install`)"
        ) from None
    try:
        root = _unpack(source, staging)
        check = verify_bundle(root)
        info = check.manifest.model
        name = f"{info.name}-{info.provenance.trained}-{check.digest[:12]}"
        current = _target(store, CURRENT)
        if name == current:
            return name, False
        _readable(root)
        target = store / name
        if target.exists():
            shutil.rmtree(target)
        os.rename(root, target)
    except OSError as exc:  # a full or read-only disk while copying: the store stays as it was
        if isinstance(exc, BundleError):
            raise
        raise BundleError(
            f"{store}: cannot install there ({exc}); free some space or check the disk"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _link(store, PREVIOUS, current or SHIPPED)
    _link(store, CURRENT, name)
    _prune(store)
    return name, True


def rollback(store: Path, shipped: bool = False) -> str:
    """Swap ``current`` and ``previous`` (``shipped``: make the shipped bundle current); returns the name
    now current (:data:`SHIPPED` for the shipped one)."""
    from musicbox.errors import BundleError

    now = _target(store, CURRENT) or SHIPPED
    back = SHIPPED if shipped else _target(store, PREVIOUS)
    if back is None:
        raise BundleError(f"no previous bundle in {store} to roll back to (`musicbox bundle list`)")
    if back == now:
        raise BundleError(f"{_where(store, now)} is current already (`musicbox bundle list`)")
    if back != SHIPPED and not (store / back / "manifest.json").is_file():
        raise BundleError(
            f"{store / back}: the previous bundle is gone; install one with `musicbox bundle install`"
        )
    if back == SHIPPED:
        (store / CURRENT).unlink()
    else:
        _link(store, CURRENT, back)
    _link(store, PREVIOUS, now)
    return back


def describe(store: Path) -> list[str]:
    """One line per installed bundle and the shipped one, marked current/previous."""
    from musicbox.config import shipped_bundle

    marks = {_target(store, CURRENT) or SHIPPED: CURRENT}
    marks.setdefault(_target(store, PREVIOUS) or "", PREVIOUS)
    names = (
        sorted(p.name for p in store.iterdir() if p.is_dir() and not p.is_symlink()) if store.is_dir() else []
    )
    lines = [f"{marks.get(n, ''):>8}  {store / n}" for n in names if not n.startswith(".")]
    return [*lines, f"{marks.get(SHIPPED, ''):>8}  {shipped_bundle()} (shipped with musicbox)"]


def _where(store: Path, name: str) -> str:
    from musicbox.config import shipped_bundle

    return f"the shipped bundle {shipped_bundle()}" if name == SHIPPED else str(store / name)


def _target(store: Path, link: str) -> str | None:
    """What ``store/link`` names, or None when there is no such link."""
    path = store / link
    return os.readlink(path) if path.is_symlink() else None


def _unpack(source: Path, staging: Path) -> Path:
    """``source`` (folder or tar archive) copied under ``staging``; returns the folder with manifest.json."""
    from musicbox.errors import BundleError

    root = staging / "bundle"
    if source.is_symlink() and source.is_dir():
        source = source.resolve()  # a link *to* a bundle folder is fine; links inside it are not
    if source.is_dir():
        _copy_folder(source, root)
    elif source.is_file():
        _extract(source, root)
    elif source.exists():
        raise BundleError(f"{source}: neither a bundle folder nor a .tar/.tar.gz/.tar.xz archive of one")
    else:
        raise BundleError(f"{source}: no such file or folder; give a bundle folder or a .tar.gz of one")
    found = sorted(p.parent for p in root.rglob("manifest.json"))
    if len(found) != 1:
        raise BundleError(
            f"{source}: expected one manifest.json, found {len(found)}; is it a bundle from `musicbox quantize`?"
        )
    return found[0]


def _copy_folder(source: Path, root: Path) -> None:
    """Copy the folder ``source`` to ``root``, after checking it holds folders and regular files only
    (what an archive may hold), so nothing outside it is ever read."""
    from musicbox.runtime.bundle_files import bundle_tree

    files = bundle_tree(source)
    root.mkdir()
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(source / rel, os.O_RDONLY | os.O_NOFOLLOW)  # a link swapped in meanwhile: refused
        with os.fdopen(fd, "rb") as src, open(root / rel, "wb") as dst:
            shutil.copyfileobj(src, dst)


def _extract(source: Path, root: Path) -> None:
    """Unpack the archive ``source`` into ``root``: regular files and folders only, every path inside."""
    from musicbox.errors import BundleError

    try:
        if not tarfile.is_tarfile(source):
            raise BundleError(f"{source}: neither a bundle folder nor a .tar/.tar.gz/.tar.xz archive of one")
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
    except DAMAGED_ARCHIVE as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(
            f"{source}: the archive is damaged or truncated ({exc}); copy it again, or make it anew with "
            "`musicbox bundle pack`"
        ) from None


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
    keep = {_target(store, link) for link in (CURRENT, PREVIOUS)}
    for path in store.iterdir():
        if (
            path.is_dir()
            and not path.is_symlink()
            and not path.name.startswith(".")
            and path.name not in keep
        ):
            shutil.rmtree(path)
