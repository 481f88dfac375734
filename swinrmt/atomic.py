"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of each; and the lock that
keeps a second writer out of an output folder.

Every checkpoint, report, JSON and figure swinrmt writes goes through here: write a temp file in the same directory,
fsync it, rename it over the target, fsync the directory so the rename itself survives a power cut. The file gets the
mode a plain ``open()`` would give it (0666 less the umask), not the 0600 of a temp file. A temp file that a killed
process left behind (``.<name>.<random>.tmp``) is removed by :func:`remove_stale_temps` when the folder's owner next
starts (it holds the folder's lock, so no live writer owns one).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def atomic_write(path: str | Path, write: Callable[[str], None], replace: bool = True) -> None:
    """Call `write(tmp_path)`, then atomically move the result to `path` (temp file removed on failure). With
    `replace=False` an existing `path` is kept and FileExistsError raised (a hard link cannot land over a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # some filesystems cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _umask() -> int:
    """The process umask, read without changing it where /proc says it (os.umask can only be read by setting it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temps(folder: str | Path) -> int:
    """Remove the temp files of atomic writes into `folder` that never finished (a killed writer); returns how many.
    Call only while holding the folder's lock: a live writer's temp file looks the same."""
    n = 0
    for p in Path(folder).glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, obj: Any, indent: int = 1, replace: bool = True) -> None:
    text = json.dumps(obj, indent=indent) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text), replace=replace)


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> None:
    """matplotlib figure -> PNG, atomically."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))


@contextlib.contextmanager
def exclusive(folder: Path, lock: str, who: str, error: type[Exception] = ValueError) -> Iterator[None]:
    """One writer per output folder (an flock on `folder/lock`, released when the process dies): two would train the
    same runs into the same directories. A second one gets `error` naming `who` and the lock file."""
    import fcntl

    f = open(folder / lock, "a")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise error(f"another {who} is running in {folder} (it holds {folder / lock})") from None
        yield
    finally:
        f.close()
