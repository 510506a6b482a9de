"""The iteration rows of a run: packed in memory, spooled to a parquet file once they outgrow it.

A long run records millions of iterations (22 float64 values each, `collect.ITERATION_COLUMNS`), more than
memory should hold. Rows arrive packed (`ROW.pack`, the hot path), ROWS_PER_CHUNK at a time they are put in
the order they ended (ties by replica); once more than `memory_rows` are held they go to a parquet file in a
temporary folder, row group by row group, and are read back one column at a time, so memory stays flat
however long the run.

Steady decode iterations arrive as spans (decode_spans.py), turned into rows when they are ordered.

Rows may be recorded ahead of the clock (engine/run_ahead.py), but never one that ends before the clock:
so the rows ending before the clock's time are final in order, and the rest wait for the next chunk.
"""

from __future__ import annotations

import functools
import shutil
import struct
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from simulator.results.decode_spans import DecodeSpan, span_columns

ITERATION_COLUMNS = (
    "replica", "start_s", "duration_s", "compute_s", "memory_s", "compute_bound_s", "memory_bound_s", "network_s",
    "overhead_s", "bubble_s", "flops_per_chip", "memory_bytes_per_chip", "stream_bytes_per_chip",
    "network_bytes_per_chip", "swap_bytes_per_chip", "chips",
    "prefill_tokens", "decode_tokens", "output_tokens", "batch_size", "decode_context_tokens", "kv_blocks_used",
)
INTEGER_COLUMNS = {"replica", "chips", "prefill_tokens", "decode_tokens", "batch_size", "decode_context_tokens",
                   "kv_blocks_used"}
ROW = struct.Struct(f"<{len(ITERATION_COLUMNS)}d")
ROWS_PER_CHUNK = 1 << 16
MEMORY_ROWS = 1 << 18  # about 46 MB of rows; beyond, they are spooled to disk
_WIDTH = len(ITERATION_COLUMNS)
_INDEX = {name: i for i, name in enumerate(ITERATION_COLUMNS)}


class IterationStore:
    """Append packed rows to `pending` (and call `flush` every ROWS_PER_CHUNK), `finish` after the run, then
    read columns (`store[name]`), the whole frame, or write the parquet file."""

    def __init__(self, clock: Callable[[], float], memory_rows: int | None = None):
        self.pending: list[bytes] = []
        self.clock = clock
        self.memory_rows = MEMORY_ROWS if memory_rows is None else memory_rows
        self._carry = np.zeros((0, _WIDTH))  # rows not yet final: they may end after rows still to come
        self._chunks: list[np.ndarray] = []  # final rows, in order, in memory
        self._columns: dict[str, np.ndarray] = {}  # in memory: columns read so far (the summary reads each often)
        self._ahead: tuple[threading.Thread, Path, list[BaseException]] | None = None  # encode_ahead's thread
        self._rows = 0
        self._spool: Path | None = None
        self._writer: Any = None  # a pyarrow ParquetWriter once rows are spooled (pyarrow is imported lazily)
        self._finished = False
        self.spans: list[DecodeSpan] = []  # pending too: steady decode spans, rows once they are ordered
        self._span_rows = 0

    def __len__(self) -> int:
        return self._rows + len(self._carry) + len(self.pending) + self._span_rows

    def append_span(self, span: DecodeSpan) -> None:
        """Append a span of steady decode iterations (decode_spans.py): its rows, when they are needed."""
        self.spans.append(span)
        self._span_rows += len(span.ends)
        if len(self.pending) + self._span_rows >= ROWS_PER_CHUNK:
            self.flush()

    @property
    def spooled(self) -> bool:
        return self._spool is not None

    def flush(self, final: bool = False) -> None:
        """Order the pending rows with those not final yet, and move on the ones that end before the clock."""
        rows = np.frombuffer(b"".join(self.pending), dtype="<f8").reshape(-1, _WIDTH)
        self.pending.clear()
        if self.spans:
            spanned = np.empty((self._span_rows, _WIDTH))
            for name, column in span_columns(self.spans).items():
                spanned[:, _INDEX[name]] = column
            rows = np.concatenate([rows, spanned])
            self.spans.clear()
            self._span_rows = 0
        if len(self._carry):
            rows = np.concatenate([self._carry, rows])
        end = rows[:, 1] + rows[:, 2]
        if np.any(end[1:] < end[:-1]) or np.any((end[1:] == end[:-1]) & (rows[1:, 0] < rows[:-1, 0])):
            order = np.lexsort((rows[:, 0], end))
            rows, end = rows[order], end[order]
        cut = len(rows) if final else int(np.searchsorted(end, self.clock(), side="left"))
        self._carry = rows[cut:].copy()
        if cut:
            self._emit(rows[:cut])

    def finish(self) -> None:
        """The run is over: every row is final."""
        if self._finished:
            return
        self.flush(final=True)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._finished = True

    def _emit(self, rows: np.ndarray) -> None:
        self._rows += len(rows)
        self._columns.clear()
        self._ahead = None  # rows came after it (merge): an early encoding is out of date
        self._chunks.append(np.array(rows))
        if self._writer is not None or sum(len(c) for c in self._chunks) > self.memory_rows:
            self._spill()

    def _spill(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            folder = Path(tempfile.mkdtemp(prefix="infersim-iterations-"))
            weakref.finalize(self, shutil.rmtree, folder, True)
            self._spool = folder / "iterations.parquet"
            # dictionaries only for the counts: on unique floats they cost 4x the writing time and save nothing
            self._writer = pq.ParquetWriter(self._spool, _schema(), use_dictionary=sorted(INTEGER_COLUMNS))
        while self._chunks:
            self._writer.write_table(_table([self._chunks.pop(0)]))

    def save_rows(self, path: Path) -> None:
        """Every row, in order, as one (rows x ITERATION_COLUMNS) float64 .npy file, written chunk by chunk."""
        out = np.lib.format.open_memmap(path, mode="w+", dtype="<f8", shape=(len(self), _WIDTH))
        at = 0
        for part in self.chunks(list(ITERATION_COLUMNS)):
            n = len(part["replica"])
            for i, name in enumerate(ITERATION_COLUMNS):
                out[at:at + n, i] = part[name]
            at += n
        out.flush()
        del out

    def merge(self, paths: list[Path]) -> None:
        """Take the rows other runs saved (`save_rows`, replica_groups.py), each file in order, interleaved by
        end time (ties by replica); then the store is finished. Memory: the sort keys and one chunk."""
        self.finish()
        files = [np.load(path, mmap_mode="r") for path in paths]
        ends = np.concatenate([np.zeros(0), *(f[:, 1] + f[:, 2] for f in files)])
        replicas = np.concatenate([np.zeros(0), *(f[:, 0] for f in files)])
        order = np.lexsort((replicas, ends))
        del ends, replicas
        offsets = np.cumsum([0, *(len(f) for f in files)])
        for start in range(0, len(order), ROWS_PER_CHUNK):
            picked = order[start:start + ROWS_PER_CHUNK]
            which = np.searchsorted(offsets, picked, side="right") - 1
            chunk = np.empty((len(picked), _WIDTH))
            for i, f in enumerate(files):
                mine = which == i
                if mine.any():  # rows of one file come in their order: reads go forward through it
                    chunk[mine] = f[picked[mine] - offsets[i]]
            self._emit(chunk)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __getitem__(self, name: str) -> np.ndarray:
        """One column of every row, in order (int64 for counts, float64 otherwise)."""
        self.finish()
        if self._spool is not None:  # one read of the whole column (threads), then one copy
            import pyarrow.parquet as pq
            return pq.ParquetFile(self._spool).read(columns=[name]).column(0).to_numpy()
        column = self._columns.get(name)
        if column is None:  # gathered once: the summary and the report read most columns several times
            i = _INDEX[name]
            column = np.concatenate([np.zeros(0), *(chunk[:, i] for chunk in self._chunks)])
            if name in INTEGER_COLUMNS:
                column = column.astype(np.int64)
            self._columns[name] = column
        return column.copy()

    def chunks(self, names: list[str]):
        """The rows chunk by chunk, in order, as {name: column} (memory bounded by one chunk)."""
        self.finish()
        if self._spool is not None:
            import pyarrow.parquet as pq
            spool = pq.ParquetFile(self._spool)
            for group in range(spool.num_row_groups):
                table = spool.read_row_group(group, columns=names)
                yield {name: table.column(name).to_numpy() for name in names}
            return
        for chunk in self._chunks:
            yield {name: chunk[:, _INDEX[name]].astype(np.int64) if name in INTEGER_COLUMNS
                   else chunk[:, _INDEX[name]].copy() for name in names}

    def frame(self) -> pd.DataFrame:
        """Every row as a DataFrame (a long run's may be large: prefer columns)."""
        self.finish()
        if self._spool is not None:
            return pd.read_parquet(self._spool)
        return _frame(np.concatenate(self._chunks) if self._chunks else np.zeros((0, _WIDTH)))

    def encode_ahead(self) -> None:
        """For a caller that will write iterations.parquet: start encoding it now, in a thread, into a private
        temporary file that `write_parquet` then copies. Arrow encodes and compresses without the GIL, so the
        encoding runs beside the summary and the other outputs instead of after them."""
        self.finish()
        if self._spool is not None or self._ahead is not None:
            return  # spooled: the file is written already
        folder = Path(tempfile.mkdtemp(prefix="infersim-iterations-"))
        weakref.finalize(self, shutil.rmtree, folder, True)
        path, chunks, errors = folder / "iterations.parquet", list(self._chunks), []

        def encode() -> None:
            try:
                _write(chunks, path)
            except BaseException as exc:  # noqa: BLE001 - write_parquet writes it itself then
                errors.append(exc)

        thread = threading.Thread(target=encode, name="infersim-iterations-parquet", daemon=True)
        thread.start()
        self._ahead = (thread, path, errors)

    def write_parquet(self, path: Path) -> None:
        """iterations.parquet: the very file `frame().to_parquet(path, index=False)` writes (the same schema,
        pandas metadata and options), made from the columns without building a DataFrame."""
        self.finish()
        if self._spool is not None:
            shutil.copyfile(self._spool, path)
            return
        if self._ahead is not None:
            thread, encoded, errors = self._ahead
            thread.join()
            if not errors:
                shutil.copyfile(encoded, path)
                return
        _write(self._chunks, path)


def _write(chunks: list[np.ndarray], path: Path) -> None:
    import pyarrow.parquet as pq
    pq.write_table(_table(chunks), path, compression="snappy")


def _frame(rows: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({name: rows[:, i].astype(np.int64) if name in INTEGER_COLUMNS else rows[:, i].copy()
                         for i, name in enumerate(ITERATION_COLUMNS)})


@functools.cache
def _schema() -> Any:
    """The arrow schema pandas gives a frame of these columns (with its metadata, so that pandas reads the
    file back as it wrote it)."""
    import pyarrow as pa
    return pa.Table.from_pandas(_frame(np.zeros((0, _WIDTH))), preserve_index=False).schema


def _table(chunks: list[np.ndarray]) -> Any:
    """Rows (chunks in order) as one arrow table of contiguous columns, as `pa.Table.from_pandas` makes it."""
    import pyarrow as pa
    rows = chunks[0] if len(chunks) == 1 else np.concatenate([np.zeros((0, _WIDTH)), *chunks])
    return pa.Table.from_arrays([pa.array(rows[:, i].astype(np.int64) if name in INTEGER_COLUMNS
                                          else np.ascontiguousarray(rows[:, i]))
                                 for i, name in enumerate(ITERATION_COLUMNS)], schema=_schema())
