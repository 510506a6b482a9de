"""Every command's output folder is written all or nothing: into a staging folder beside it, then swapped in.

A writer killed at any moment (even `kill -9` while files are being written) leaves the folder as it was
before, complete, or no folder at all (for the instant between the two renames of the swap), never a mix of
old and new files. Because the swap replaces the whole folder, it only replaces a folder that holds nothing
but that command's outputs: anything else there is refused up front, before simulating, as is a folder that
could not be created (under a file, not writable, a name too long for the file system once staged).

One writer at a time: `claim(out)` holds a lock file beside the folder (`.<name>.lock`, flock, removed when
released) from the check before simulating to the swap; a second writer of the same folder is refused with
one line.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from simulator.errors import InfersimError, one_line

OUTPUT_NAMES = frozenset({"summary.json", "requests.parquet", "iterations.parquet", "links.parquet", "memory.parquet",
                          "report.md",
                          "plots", "report.html", "trace.json"})
STAGING_SUFFIX = ".new-4194304-xxxxxxxx"  # the longest tail a staging name adds: pid (<= 2^22) and mkdtemp's
NAME_MAX = 255  # bytes in one file name (Linux, macOS) when the file system does not say


class OutputFolderError(InfersimError):
    """The output folder cannot be (re)written."""


def check_output_folder(out: Path, names: Iterable[str] = OUTPUT_NAMES) -> None:
    """Raise OutputFolderError unless `out` can be written: absent (and creatable), empty or holding only
    `names` (what this command writes)."""
    if out.name in ("", ".", ".."):
        raise OutputFolderError(f"{out}: an output folder must end in a folder name, not {out.name or '/'!r}")
    limit = _name_max(out.parent)
    staged = len(os.fsencode(f".{out.name}{STAGING_SUFFIX}"))
    if staged > limit:
        raise OutputFolderError(f"{out}: the folder name is {len(os.fsencode(out.name))} bytes; allowed: up to "
                                f"{limit - staged + len(os.fsencode(out.name))} (the staging name beside it adds "
                                f"{staged - len(os.fsencode(out.name))})")
    try:
        if out.exists() and not out.is_dir():
            raise OutputFolderError(f"{out}: the output folder is a file")
        if out.is_dir():
            allowed = set(names)
            foreign = sorted(p.name for p in out.iterdir() if p.name not in allowed)
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise OutputFolderError(f"{out}: the output folder holds files this command did not write "
                                        f"({shown}); it replaces its whole folder, so give -o an empty or new "
                                        "folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(out.parent, os.W_OK | os.X_OK):
            raise OutputFolderError(f"{out}: cannot be written: permission denied in {out.parent}")
    except OSError as exc:  # a parent that is a file, no permission, a read-only file system
        raise OutputFolderError(one_line(f"{out}: cannot be created: {exc.strerror or exc}")) from None


def _name_max(folder: Path) -> int:
    for candidate in (folder, *folder.parents):
        try:
            return int(os.pathconf(candidate, "PC_NAME_MAX"))
        except (OSError, ValueError):
            continue
    return NAME_MAX


_HELD: dict[Path, int] = {}  # lock files this process holds -> their descriptors


@contextmanager
def claim(out: Path, names: Iterable[str] = OUTPUT_NAMES) -> Iterator[None]:
    """Check `out` and hold its lock for the block: the check is before the long work, the lock until the
    swap; a folder another writer holds is refused. Re-entrant within one process."""
    check_output_folder(out, names)
    key = out.absolute()
    if key in _HELD:
        yield
        return
    lock = out.parent / f".{out.name}.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputFolderError(one_line(f"{out}: cannot be created: {exc.strerror or exc}")) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(lock).st_ino != os.fstat(fd).st_ino:  # its holder removed it as we opened it: theirs
            raise BlockingIOError(errno.EWOULDBLOCK, "replaced")
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, errno.ENOENT):
            raise OutputFolderError(f"{out}: another infersim is writing this folder now; wait for it to "
                                    "finish or give another -o") from None
        raise OutputFolderError(one_line(f"{out}: cannot be locked: {exc.strerror or exc}")) from None
    _HELD[key] = fd
    try:
        yield
    finally:
        del _HELD[key]
        try:
            os.unlink(lock)  # while still held: a writer that opened it meanwhile sees it replaced
        except OSError:
            pass
        os.close(fd)


@contextmanager
def staged_folder(out: Path, names: Iterable[str] = OUTPUT_NAMES, keep: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a staging folder to write into; on success it replaces `out`, on any failure it is removed.
    `keep`: subfolders of the current `out` carried into the new one (hard links: a sweep's point cache)."""
    with claim(out, names):
        _remove_stale(out)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-{os.getpid()}-", dir=out.parent))
        except OSError as exc:
            raise OutputFolderError(one_line(f"{out}: cannot be created: {exc.strerror or exc}")) from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # as a folder made by mkdir would be (mkdtemp's is private)
        try:
            yield staging
            for name in keep:
                if (out / name).is_dir() and not (staging / name).exists():
                    shutil.copytree(out / name, staging / name, copy_function=_link_or_copy)
            _swap(staging, out)
        except OSError as exc:  # a full disk, a quota, a file system gone read-only while writing
            shutil.rmtree(staging, ignore_errors=True)
            raise OutputFolderError(one_line(f"{out}: cannot be written: {exc.strerror or exc}")) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _remove_stale(out: Path) -> None:
    """Staging folders of writers that were killed (their process is gone)."""
    for stale in out.parent.glob(f".{out.name}.new-*"):
        try:
            os.kill(int(stale.name.split("-")[-2]), 0)
        except (ValueError, IndexError):
            continue  # not one of ours
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            continue  # alive, someone else's


def _swap(new: Path, out: Path) -> None:
    if not out.exists():
        os.rename(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / out.name)
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)
