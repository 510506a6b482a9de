"""A run's output folder is written all or nothing: into a staging folder beside it, then swapped in.

A run killed at any moment (even `kill -9` while files are being written) leaves the folder as it was before,
complete, or no folder at all (for the instant between the two renames of the swap), never a mix of old and
new files. Because the swap replaces the whole folder, it only replaces a folder that holds nothing but a
previous run's outputs: anything else there is refused up front, before simulating.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from simulator.errors import InfersimError

OUTPUT_NAMES = frozenset({"summary.json", "requests.parquet", "iterations.parquet", "links.parquet", "report.md",
                          "plots", "report.html", "trace.json"})


class OutputFolderError(InfersimError):
    """The output folder cannot be (re)written."""


def check_output_folder(out: Path) -> None:
    """Raise OutputFolderError unless `out` is absent, empty or a previous run's outputs."""
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"{out}: the output folder is a file")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_NAMES)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise OutputFolderError(f"{out}: the output folder holds files a run did not write ({shown}); "
                                    "a run replaces its whole folder, so give -o an empty or new folder")


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield a staging folder to write into; on success it replaces `out`, on any failure it is removed."""
    check_output_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-{os.getpid()}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # as a folder made by mkdir would be (mkdtemp's is private)
    try:
        yield staging
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


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
