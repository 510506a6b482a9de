"""The iteration store keeps rows in the order they ended, spools them to disk beyond its memory budget
without changing them, and the run-end check finds overlapping iterations across chunks."""

import numpy as np
import pandas as pd

from simulator import load_scenario, run
from simulator.results.collect import overlapping_replicas
from simulator.results.iteration_store import ITERATION_COLUMNS, ROW, IterationStore


def _row(replica: int, start: float, duration: float) -> bytes:
    values = [0.0] * len(ITERATION_COLUMNS)
    values[0], values[1], values[2] = replica, start, duration
    return ROW.pack(*values)


def _fill(store: IterationStore, rows, clock: list[float]) -> None:
    """Append (replica, start, duration, clock when recorded) rows, flushing after each group of 3."""
    for i, (replica, start, duration, now) in enumerate(rows):
        clock[0] = now
        store.pending.append(_row(replica, start, duration))
        if i % 3 == 2:
            store.flush()
    store.finish()


# two replicas; replica 1 records ahead of the clock (run-ahead), replica 0 at each iteration's end
ROWS = [(1, 0.0, 1.0, 0.0), (1, 1.0, 1.0, 0.0), (1, 2.0, 1.0, 0.0), (0, 0.0, 0.5, 0.5), (0, 0.5, 1.0, 1.5),
        (0, 1.5, 0.5, 2.0), (1, 3.0, 2.0, 2.0), (0, 2.0, 1.0, 3.0), (0, 3.0, 2.0, 5.0), (1, 5.0, 0.25, 5.0)]


def test_rows_come_out_in_the_order_they_ended_ties_by_replica():
    clock = [0.0]
    store = IterationStore(lambda: clock[0])
    _fill(store, ROWS, clock)
    it = store.frame()
    end = (it["start_s"] + it["duration_s"]).to_numpy()
    assert list(zip(end, it["replica"])) == [(0.5, 0), (1.0, 1), (1.5, 0), (2.0, 0), (2.0, 1), (3.0, 0), (3.0, 1),
                                             (5.0, 0), (5.0, 1), (5.25, 1)]
    assert len(store) == len(ROWS) and overlapping_replicas(store) == []


def test_a_spooled_store_holds_exactly_the_rows_of_one_in_memory(tmp_path):
    clock = [0.0]
    memory, spooled = IterationStore(lambda: clock[0]), IterationStore(lambda: clock[0], memory_rows=2)
    _fill(memory, ROWS, clock)
    _fill(spooled, ROWS, clock)
    assert spooled.spooled and not memory.spooled
    pd.testing.assert_frame_equal(spooled.frame(), memory.frame())
    np.testing.assert_array_equal(spooled["start_s"], memory["start_s"])
    assert spooled["batch_size"].dtype == np.int64
    spooled.write_parquet(tmp_path / "it.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "it.parquet"), memory.frame())


def test_iterations_parquet_is_the_file_pandas_writes(tmp_path):
    """write_parquet builds no DataFrame, yet writes byte for byte what `frame().to_parquet` writes (same schema,
    pandas metadata, compression), for rows in several chunks and for none."""
    clock = [0.0]
    store = IterationStore(lambda: clock[0])
    _fill(store, ROWS, clock)
    assert len(store._chunks) > 1  # the columns are joined across chunks
    empty = IterationStore(lambda: 0.0)
    empty.finish()
    for name, s in (("rows", store), ("none", empty)):
        s.write_parquet(tmp_path / f"{name}.parquet")
        s.frame().to_parquet(tmp_path / f"{name}-pandas.parquet", index=False)
        assert (tmp_path / f"{name}.parquet").read_bytes() == (tmp_path / f"{name}-pandas.parquet").read_bytes()


def test_iterations_encoded_ahead_are_the_same_file(tmp_path):
    """encode_ahead (a run that will be written encodes its table in a thread) writes the same bytes as a
    direct write; rows merged after it are not lost (the early encoding is dropped)."""
    clock = [0.0]
    store, direct = IterationStore(lambda: clock[0]), IterationStore(lambda: clock[0])
    _fill(store, ROWS, clock)
    _fill(direct, ROWS, clock)
    store.encode_ahead()
    store.write_parquet(tmp_path / "ahead.parquet")
    direct.write_parquet(tmp_path / "direct.parquet")
    assert (tmp_path / "ahead.parquet").read_bytes() == (tmp_path / "direct.parquet").read_bytes()
    other = IterationStore(lambda: 10.0)
    other.pending.append(_row(2, 6.0, 1.0))
    other.finish()
    other.save_rows(tmp_path / "other.npy")
    store.merge([tmp_path / "other.npy"])
    store.write_parquet(tmp_path / "merged.parquet")
    assert len(pd.read_parquet(tmp_path / "merged.parquet")) == len(ROWS) + 1


def test_overlapping_iterations_are_found_across_chunks():
    clock = [0.0]
    store = IterationStore(lambda: clock[0], memory_rows=2)
    rows = [(0, 0.0, 1.0, 1.0), (1, 0.0, 1.0, 1.0), (0, 1.0, 1.0, 2.0),  # one chunk
            (0, 1.5, 1.0, 2.5), (1, 1.0, 1.0, 2.5), (1, 2.0, 0.0, 2.5)]  # replica 0 overlaps; 1: zero length
    _fill(store, rows, clock)
    assert overlapping_replicas(store) == [0, 1]


def test_a_long_run_spools_its_iterations_and_reports_the_same(write_scenario, monkeypatch):
    path = write_scenario({"workload.output_tokens": {"kind": "fixed", "value": 200}})
    in_memory = run(load_scenario(path))
    monkeypatch.setattr("simulator.results.iteration_store.MEMORY_ROWS", 300)
    for module in ("simulator.results.collect", "simulator.engine.run_ahead"):  # flush every 100 rows
        monkeypatch.setattr(f"{module}.ROWS_PER_CHUNK", 100)
    spooled = run(load_scenario(path))
    assert spooled.iteration_store.spooled and len(spooled.iteration_store) > 1000  # many 100-row chunks
    pd.testing.assert_frame_equal(spooled.iterations, in_memory.iterations)
    strip = lambda s: {k: v for k, v in s.items() if k != "sim"}  # noqa: E731
    assert strip(spooled.summary) == strip(in_memory.summary)


def test_rows_saved_by_two_runs_merge_in_the_order_they_ended(tmp_path):
    clock = [0.0]
    one, two, merged = (IterationStore(lambda: clock[0], memory_rows=2) for _ in range(3))
    _fill(one, [r for r in ROWS if r[0] == 0], clock)
    _fill(two, [r for r in ROWS if r[0] == 1], clock)
    one.save_rows(tmp_path / "a.npy")
    two.save_rows(tmp_path / "b.npy")
    merged.merge([tmp_path / "a.npy", tmp_path / "b.npy"])
    together = IterationStore(lambda: clock[0])
    _fill(together, ROWS, clock)
    pd.testing.assert_frame_equal(merged.frame(), together.frame())
