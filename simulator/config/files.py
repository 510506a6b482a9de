"""The one reader of every input file: regular files only, their size capped before reading.

A device (`/dev/zero` reports 0 bytes and never ends), a FIFO (blocks until a writer comes), a folder or a
socket is refused with one line; a file over its kind's limit is refused before a byte is read, and a gzip
file's expansion is capped the same way (a gzip bomb). Every problem is a ScenarioError naming the file.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import zlib
from pathlib import Path

from simulator.errors import ScenarioError

MiB = 2**20
MAX_YAML_BYTES = 16 * MiB    # a scenario, topology, workload, sweep or compare file; a chip; an engine
MAX_JSON_BYTES = 16 * MiB    # a model's config.json
MAX_CSV_BYTES = 64 * MiB     # a validation CSV
MAX_TRACE_BYTES = 1024 * MiB  # a trace (after gunzip): Azure, Mooncake, ShareGPT, ServeGen files


def read_bytes(path: str | Path, limit: int, shown: str | None = None, what: str = "file") -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them (after gunzip when `path` ends in .gz);
    `shown`: how errors name the file (default: the path)."""
    name = str(path) if shown is None else shown
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO opens without waiting
    except FileNotFoundError:
        raise ScenarioError("", "file not found", name) from None
    except IsADirectoryError:
        raise ScenarioError("", f"is a folder, not a {what}", name) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ScenarioError("", f"cannot be read: {getattr(exc, 'strerror', None) or exc}", name) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise ScenarioError("", f"is a folder, not a {what}", name)
        raise ScenarioError("", f"is {_kind(mode)}, not a regular file; allowed: a regular {what}", name)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(fd).st_size
        if size > limit:
            raise ScenarioError("", f"is {size / MiB:.1f} MiB; allowed: up to {limit / MiB:g} MiB", name)
        try:
            data = handle.read(limit + 1)  # a file still growing stops at the limit too
        except OSError as exc:
            raise ScenarioError("", f"cannot be read: {exc.strerror or exc}", name) from None
    if len(data) > limit:
        raise ScenarioError("", f"is over {limit / MiB:g} MiB; allowed: up to {limit / MiB:g} MiB", name)
    return _gunzip(data, limit, name) if str(path).endswith(".gz") else data


def _gunzip(data: bytes, limit: int, name: str) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as unzipped:
            out = unzipped.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise ScenarioError("", f"cannot be read: {exc}", name) from None
    if len(out) > limit:
        raise ScenarioError("", f"expands to over {limit / MiB:g} MiB; allowed: up to {limit / MiB:g} MiB "
                            "uncompressed", name)
    return out


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_text(path: str | Path, limit: int, shown: str | None = None, what: str = "file") -> str:
    """`read_bytes` decoded as UTF-8 (a leading byte-order mark dropped); a byte that is not UTF-8 is an
    error naming its line."""
    data = read_bytes(path, limit, shown, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ScenarioError(f"line {line}", f"byte {data[exc.start]:#04x} is not UTF-8 text",
                            str(path) if shown is None else shown) from None
