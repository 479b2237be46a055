"""A bundle folder's files against its manifest: what is in the folder, sizes, sha256, the whole digest.

No onnxruntime and no numpy here: ``musicbox doctor``, ``musicbox bundle`` and ``Bundle.open``
(runtime/bundle.py) check bundles with these same functions and the typed manifest reader
(runtime/manifest.py).

A bundle folder holds folders and regular files only: a symbolic link, a hard link, a device, a FIFO or a
socket anywhere in it is refused (:func:`bundle_tree`), as ``musicbox bundle install`` refuses them in an
archive. The bundle's **digest** (:func:`BundleCheck.digest`) is the sha256 of every file's sha256 and
path: two bundles with the same digest are the same bundle, file for file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from musicbox.errors import BundleError
from musicbox.runtime.digest import sha256_file
from musicbox.runtime.manifest import Manifest, Variant, load_manifest

FIX = "re-copy the bundle folder, or rebuild it with `musicbox quantize`"


@dataclass(frozen=True)
class BundleCheck:
    """A bundle that passed :func:`verify_bundle`: its ``manifest``, every file's sha256 by path relative
    to the bundle folder (``hashes``, the manifest included) and how many of them the manifest lists
    (``listed``)."""

    manifest: Manifest
    hashes: dict[str, str]
    listed: int

    @property
    def digest(self) -> str:
        """sha256 over every file's ``sha256  path`` line, in path order: the whole bundle in 64 hex."""
        lines = "".join(f"{sha}  {rel}\n" for rel, sha in sorted(self.hashes.items()))
        return hashlib.sha256(lines.encode()).hexdigest()


def bundle_tree(root: Path) -> list[str]:
    """The regular files under ``root``, as sorted paths relative to it; a BundleError for anything else
    (links of either kind, devices, FIFOs, sockets), naming it."""
    root = Path(root)
    try:
        if not stat.S_ISDIR(root.lstat().st_mode):
            raise BundleError(f"{root}: not a folder (a link or a file); give the bundle folder itself")
    except FileNotFoundError:
        raise BundleError(f"{root}: no such folder") from None
    files: list[str] = []
    for folder, dirs, names in os.walk(root, onerror=_walk_error):
        for name in [*dirs, *names]:
            path = Path(folder) / name
            kind = _refused_kind(path.lstat())
            if kind:
                raise BundleError(
                    f"{path}: {kind}; a bundle holds only folders and regular files (copy the files "
                    "themselves in, e.g. with `cp -rL`, or rebuild it with `musicbox quantize`)"
                )
            if name in names:
                files.append(str(path.relative_to(root)))
    return sorted(files)


def _walk_error(exc: OSError) -> None:
    raise BundleError(f"{exc.filename}: cannot read it ({exc.strerror}); check its permissions")


def _refused_kind(st: os.stat_result) -> str:
    """What is wrong with a file of this ``lstat`` in a bundle, or "" when nothing is."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return ""
    if not stat.S_ISREG(mode):
        return "a special file (device, FIFO or socket)"
    if st.st_nlink > 1:
        return f"a hard link ({st.st_nlink} names for one file)"
    return ""


def check_file(root: Path, rel: str, size: int, sha256: str | None) -> None:
    """Size (always) and sha256 (when given) of ``root / rel``, else a BundleError saying what to do."""
    path = root / rel
    if not path.is_file():
        raise BundleError(f"{path}: missing (listed in {root / 'manifest.json'}); {FIX}")
    _compare(path, path.stat().st_size, size, None if sha256 is None else (sha256_file(path), sha256))


def _compare(path: Path, actual_size: int, size: int, shas: tuple[str, str] | None) -> None:
    if actual_size != size:
        raise BundleError(
            f"{path}: {actual_size} bytes, the manifest says {size} (truncated or altered); {FIX}"
        )
    if shas is not None and shas[0] != shas[1]:
        raise BundleError(f"{path}: sha256 differs from the manifest's (damaged or altered); {FIX}")


def verify_variant(root: Path, variant: Variant, hashes: bool = True) -> None:
    """Check every file of ``variant`` (and its external weights) against the manifest."""
    for stage in variant.files():
        check_file(root, stage.file, stage.bytes, stage.sha256 if hashes else None)
        if stage.external_data:
            ext = stage.external_data
            check_file(root, ext.file, ext.bytes, ext.sha256 if hashes else None)


def verify_bundle(root: Path) -> BundleCheck:
    """The whole bundle folder: only folders and regular files (:func:`bundle_tree`), a valid manifest,
    and every file of every variant of its size and sha256 (each file read once). Raises ManifestError /
    BundleError (exit 78) naming the file and what to do."""
    root = Path(root)
    files = bundle_tree(root)
    manifest = load_manifest(root / "manifest.json")
    hashes = {rel: sha256_file(root / rel) for rel in files}
    listed = 0
    for variant in manifest.variants.values():
        for stage in variant.files():
            entries = [(stage.file, stage.bytes, stage.sha256)]
            if stage.external_data:
                ext = stage.external_data
                entries.append((ext.file, ext.bytes, ext.sha256))
            for rel, size, sha in entries:
                path = root / rel
                if rel not in hashes:
                    raise BundleError(f"{path}: missing (listed in {root / 'manifest.json'}); {FIX}")
                _compare(path, path.stat().st_size, size, (hashes[rel], sha))
                listed += 1
    return BundleCheck(manifest, hashes, listed)
