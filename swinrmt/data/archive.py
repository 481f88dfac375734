"""Safe, atomic, cached extraction of dataset archives (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``).

Why not plain ``tarfile.extractall``: a tar member can name ``/etc/passwd`` or ``../../x``, or be a symlink / hardlink
to a path outside the extraction dir, and a later member can then write through that link. Every member is checked
first and the archive is refused as a whole, with a one-line error naming the member, before anything is written.
Extraction additionally runs under Python's ``filter="data"`` as defence in depth.

Atomicity: the archive is extracted into a fresh temporary directory beside the destination and renamed into place
only when complete, so a killed extraction never leaves a half dataset that later runs would trust. A concurrent
extraction of the same archive simply loses the rename race and discards its copy.

Cache location: ``$SWINRMT_CACHE/extracted/<stem>-<sha256[:12]>`` (``$SWINRMT_CACHE`` defaults to
``~/.cache/swinrmt``). Keying on the content hash means a changed archive is never confused with an old extraction.

Verification: the extraction records every file it wrote (relative path, size, mtime, inode, ctime) in a hidden
``.swinrmt-extracted.json`` inside it. Every later use checks the folder against that record (a stat per file, no
reading), so a deleted, added or rewritten file is noticed: the archive is extracted again, with one warning, and the
damaged copy is swapped out (never trained on).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import warnings
from pathlib import Path

from ..atomic import _umask

__all__ = ["ARCHIVE_SUFFIXES", "cache_root", "extract_archive", "is_archive", "sha256_file"]

ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")


def is_archive(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` names a tar archive by its suffix (the file need not exist)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: str | os.PathLike[str]) -> str:
    """File name without the archive suffix: ``cifar10-jpeg.tar.gz`` -> ``cifar10-jpeg``."""
    name = Path(path).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def cache_root() -> Path:
    """``$SWINRMT_CACHE`` or ``~/.cache/swinrmt``."""
    env = os.environ.get("SWINRMT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "swinrmt"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file; memoised per (path, size, mtime) so repeated dataset builds hash a large archive once."""
    st = os.stat(path)
    return _sha256_cached(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _inside(rel: str) -> bool:
    """True if a normalised POSIX path relative to the extraction root stays inside it."""
    return rel != ".." and not rel.startswith("../") and not posixpath.isabs(rel)


def _check_member(archive: str, member: tarfile.TarInfo) -> None:
    name = member.name

    def refuse(reason: str) -> None:
        raise ValueError(f"{archive}: refusing unsafe archive member {name!r}: {reason}")

    if not name or posixpath.isabs(name) or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        refuse("absolute path")
    norm = posixpath.normpath(name)
    if not _inside(norm):
        refuse("path escapes the extraction directory")
    if member.issym():
        target = member.linkname
        if posixpath.isabs(target):
            refuse(f"symlink to absolute path {target!r}")
        if not _inside(posixpath.normpath(posixpath.join(posixpath.dirname(norm), target))):
            refuse(f"symlink to {target!r} points outside the extraction directory")
    elif member.islnk():
        target = member.linkname
        if posixpath.isabs(target) or not _inside(posixpath.normpath(target)):
            refuse(f"hardlink to {target!r} points outside the extraction directory")
    elif not (member.isfile() or member.isdir()):
        refuse("device, fifo or other special file")


RECORD = ".swinrmt-extracted.json"
_VERIFIED: set[str] = set()


def _state(root: Path) -> dict[str, list[int]]:
    """{relative path: [size, mtime_ns, inode, ctime_ns]} of every file and link under `root` but the record."""
    out: dict[str, list[int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if rel == RECORD:
                continue
            st = os.lstat(p)
            out[rel] = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    return out


def _damage(dest: Path) -> str | None:
    """Why the extraction at `dest` cannot be trusted, or None."""
    try:
        recorded = json.loads((dest / RECORD).read_text())["files"]
    except FileNotFoundError:
        return "it has no record of its files (made by an older swinrmt, or damaged)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its record of files is unreadable ({exc})"
    now = _state(dest)
    if now == recorded:
        return None
    missing = sorted(set(recorded) - set(now))
    added = sorted(set(now) - set(recorded))
    changed = sorted(k for k in set(now) & set(recorded) if now[k] != recorded[k])
    for what, names in (("missing", missing), ("added", added), ("changed", changed)):
        if names:
            return f"{len(names)} file(s) {what} since extraction, e.g. {names[0]}"
    return "its files differ from the record"  # pragma: no cover


def extract_archive(archive: str | os.PathLike[str], dest_root: str | os.PathLike[str] | None = None) -> Path:
    """Extract ``archive`` once and return the extraction directory (cached; see module docstring).

    Raises ``FileNotFoundError`` if the archive is missing and ``ValueError`` (naming the archive and the member) if
    it is not a readable tar archive or holds an unsafe member; nothing is left behind in either case.
    """
    archive = os.fspath(archive)
    if not os.path.isfile(archive):
        raise FileNotFoundError(f"dataset archive not found: {archive}")
    root = Path(dest_root) if dest_root is not None else cache_root() / "extracted"
    dest = root / f"{archive_stem(archive)}-{sha256_file(archive)[:12]}"
    damaged = None
    if dest.is_dir():
        if str(dest) in _VERIFIED:  # once per process: a run builds its train and test splits from one archive
            return dest
        damaged = _damage(dest)  # a stat per file: about 2 s for Tiny-ImageNet-100's 55k files
        if damaged is None:
            _VERIFIED.add(str(dest))
            return dest
        warnings.warn(f"extracted archive {dest}: {damaged}; extracting {archive} again", RuntimeWarning,
                      stacklevel=2)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=root))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the extraction is as readable as a plain mkdir's
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(archive, member)
                tar.extractall(tmp, members=members, filter="data")
        except tarfile.FilterError as exc:  # a case the explicit checks above do not cover
            raise ValueError(f"{archive}: refusing unsafe archive member ({exc})") from None
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ValueError(f"{archive}: not a readable tar archive ({exc})") from None
        (tmp / RECORD).write_text(json.dumps({"archive": os.path.abspath(archive), "files": _state(tmp)}))
        if damaged is not None:  # swap the damaged copy out: renamed aside, then removed
            aside = Path(tempfile.mkdtemp(prefix=f".stale-{dest.name}-", dir=root))
            try:
                os.rename(dest, aside / "x")
            except OSError:  # a concurrent process swapped it already
                pass
            shutil.rmtree(aside, ignore_errors=True)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # not a lost race with a concurrent extraction: a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
