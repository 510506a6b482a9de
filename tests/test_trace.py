"""`infersim run --trace`: a Chrome/Perfetto trace-event file that is well formed, nests, and agrees with the run's
own tables to the nanosecond; its window and count bounds."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, cli_error
from typer.testing import CliRunner

from simulator.cli import app
from simulator.results.trace import TraceBounds


def _run(tmp_path: Path, *extra: str, scenario: Path = REPO / "scenarios" / "default.yaml") -> Path:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(scenario), "-o", str(out), "--no-plots", "--trace", *extra])
    assert result.exit_code == 0, result.output
    return out


def _ns(text_us) -> int:
    """A trace timestamp (microseconds with three decimals) as integer nanoseconds, exactly."""
    return int(Decimal(str(text_us)) * 1000)


def _load(path: Path) -> dict:
    return json.loads(path.read_text(), parse_float=Decimal)


def _check_format_and_nesting(trace: dict) -> dict[tuple[int, int], list[tuple[int, int, str]]]:
    """Every event has ph/ts/pid/tid; complete events have a non-negative dur; on each track the spans nest
    (no two partly overlap). Returns the spans per (pid, tid)."""
    tracks: dict[tuple[int, int], list[tuple[int, int, str]]] = defaultdict(list)
    for event in trace["traceEvents"]:
        assert {"ph", "ts", "pid", "tid"} <= event.keys(), event
        assert event["ph"] in {"X", "M", "C"}, event
        if event["ph"] == "X":
            start, dur = _ns(event["ts"]), _ns(event["dur"])
            assert dur >= 0, event
            tracks[(event["pid"], event["tid"])].append((start, start + dur, event["name"]))
    for spans in tracks.values():
        spans.sort(key=lambda s: (s[0], -s[1]))
        open_ends: list[int] = []
        for start, end, _ in spans:
            while open_ends and open_ends[-1] <= start:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1], f"span [{start}, {end}] crosses its parent's end"
            open_ends.append(end)
    return tracks


def test_trace_is_well_formed_nests_and_matches_the_requests_table(tmp_path):
    out = _run(tmp_path, "--set", "workload.num_requests=120")
    trace = _load(out / "trace.json")
    tracks = _check_format_and_nesting(trace)
    requests = pd.read_parquet(out / "requests.parquet")
    assert trace["otherData"]["requests_shown"] == len(requests) == 120

    by_request = {tid - 1: spans for (pid, tid), spans in tracks.items() if pid == 1}
    assert set(by_request) == set(requests["request_id"])
    for row in requests.itertuples():
        spans = {name: (a, b) for a, b, name in by_request[row.request_id]}
        assert set(spans) == {f"request {row.request_id}", "queue", "prefill", "decode"} - (
            {"decode"} if row.output_tokens == 1 else set()) - ({"queue"} if row.queue_s == 0 else set())
        whole = spans[f"request {row.request_id}"]
        for (a, b), seconds in ((whole, (row.arrival_s, row.finish_s)), (spans["prefill"],
                                                                         (row.admit_s, row.first_token_s))):
            assert abs(a - seconds[0] * 1e9) <= 0.5 + 1e-6 * seconds[0] and abs(b - seconds[1] * 1e9) <= 0.5 + 1e-6 * \
                seconds[1]
        # the phases tile the request: queue, prefill and decode end to end
        phases = sorted(v for k, v in spans.items() if k != f"request {row.request_id}")
        assert phases[0][0] == whole[0] and phases[-1][1] == whole[1]
        assert all(x[1] == y[0] for x, y in itertools.pairwise(phases))

    iterations = pd.read_parquet(out / "iterations.parquet")
    replica_spans = [s for (pid, _), spans in tracks.items() if pid >= 10 for s in spans
                     if s[2] in {"prefill", "decode", "prefill + decode", "idle step"}]
    assert len(replica_spans) == len(iterations) == trace["otherData"]["iterations_shown"]
    starts = np.sort([s[0] for s in replica_spans])
    assert np.abs(starts - np.sort(iterations["start_s"].to_numpy()) * 1e9).max() <= 1.0
    # an iteration's breakdown children cover it: busy time plus bubble is its duration
    totals: dict[tuple[int, int], int] = defaultdict(int)
    for spans in tracks.values():
        parents = [s for s in spans if s[2] in {"prefill", "decode", "prefill + decode", "idle step"}]
        bounds = {(a, b) for a, b, _ in parents}
        for a, b, name in spans:
            if name in {"compute-bound", "memory-bound", "overhead", "network wait", "bubble"}:
                owner = next((p for p in bounds if p[0] <= a and b <= p[1]), None)
                assert owner is not None
                totals[owner] += b - a
    assert all(abs(totals[p] - (p[1] - p[0])) <= 5 for p in totals)


def test_report_rebuilds_the_same_trace_from_the_folder(tmp_path):
    out = _run(tmp_path, "--set", "workload.num_requests=60")
    written = (out / "trace.json").read_bytes()
    (out / "trace.json").unlink()
    result = CliRunner().invoke(app, ["report", str(out), "--trace"])
    assert result.exit_code == 0, result.output
    assert (out / "trace.json").read_bytes() == written


def test_trace_has_a_counter_per_busy_link_and_a_track_per_replica(tmp_path):
    out = _run(tmp_path, "--set", "workload.num_requests=40", "--set", "deployment.tensor_parallel=4",
               "--set", "deployment.replicas=2", scenario=REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml")
    trace = _load(out / "trace.json")
    _check_format_and_nesting(trace)
    links = pd.read_parquet(out / "links.parquet")
    busy = links.groupby("link")["utilization"].max()
    counters = {e["name"] for e in trace["traceEvents"] if e["ph"] == "C"}
    assert counters == set(busy[busy > 0].index)
    names = {e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"}
    assert {"replica 0", "replica 1", "requests", "links (utilisation)"} <= names


def test_trace_window_and_counts_bound_the_file(tmp_path):
    out = _run(tmp_path, "--set", "workload.num_requests=300", "--trace-window", "2:6", "--trace-requests", "10",
               "--trace-iterations", "150")
    trace = _load(out / "trace.json")
    _check_format_and_nesting(trace)
    other = trace["otherData"]
    end = float(other["window_s"][1])  # the window ends where the iteration budget ran out
    assert 2 < end < 6
    assert other["iterations_shown"] <= 150 < other["iterations_in_window"]
    requests = pd.read_parquet(out / "requests.parquet")
    in_window = requests[(requests["arrival_s"] >= 2) & (requests["arrival_s"] < end)]
    assert other["requests_in_window"] == len(in_window) > 10
    assert 5 <= other["requests_shown"] <= 10
    shown = {e["tid"] - 1 for e in trace["traceEvents"] if e["ph"] == "X" and e["pid"] == 1}
    assert shown <= set(in_window["request_id"]) and len(shown) == other["requests_shown"]
    for event in trace["traceEvents"]:
        if event["ph"] == "X" and event["pid"] >= 10:
            assert 2e6 <= event["ts"] < Decimal(str(end)) * 1_000_000


@pytest.mark.parametrize("window", ["5", "6:2", "a:b", "-1:3"])
def test_a_bad_trace_window_is_one_line(window):
    message = cli_error("run", REPO / "scenarios" / "default.yaml", "--trace-window", window)
    assert message.startswith("--trace-window: ") and window in message


def test_bounds_parse_open_ends():
    assert TraceBounds.parse_window("10:") == TraceBounds(10.0, float("inf"))
    assert TraceBounds.parse_window(":60", max_requests=5) == TraceBounds(0.0, 60.0, max_requests=5)


def test_report_of_a_folder_that_is_no_results_is_one_line(tmp_path):
    assert cli_error("report", tmp_path) == (f"{tmp_path}: not a results folder (none of: summary.json, "
                                             "sweep.parquet, compare.parquet, validation.csv)")
    (tmp_path / "sweep.parquet").write_bytes(b"")
    assert cli_error("report", tmp_path, "--trace") == (f"--trace: {tmp_path} holds a sweep, not a run (a trace "
                                                        "is of one run)")
    assert cli_error("report", tmp_path).startswith(f"{tmp_path}: cannot rebuild the sweep report: ")
