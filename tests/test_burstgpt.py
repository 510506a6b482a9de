"""The BurstGPT trace reader (format: burstgpt). No real BurstGPT rows are available on this machine (the
repository's data file is a Git LFS pointer), so these tests use SYNTHETIC FIXTURES written here in BurstGPT's
documented column format (github.com/HPMLL/BurstGPT README, "Schema"): the rows are invented, not a slice of
the real trace."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from conftest import cli_error

from simulator.config.workload import WorkloadSpec
from simulator.workload.arrivals import generate
from simulator.workload.traces import read_trace

# SYNTHETIC fixture in the release-v1 layout (BurstGPT_1.csv's columns); times unsorted on purpose
V1 = ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
      "5,ChatGPT,472,18,490,Conversation log\n"
      "45,ChatGPT,1087,0,1087,Conversation log\n"
      "20.5,GPT-4,417,276,693,API log\n"
      "110,GPT-4,2210,505,2715,API log\n")
# SYNTHETIC fixture in the newer layout (BurstGPT_3.csv's columns: Session ID and Elapsed time added)
V3 = ("Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
      "19440110.0,a1,43,GPT-4,906,446,1352,Conversation log\n"
      "19440161.0,b2,2,ChatGPT,36,29,65,Conversation log\n"
      "19440192.0,a1,8,GPT-4,1779,123,1902,Conversation log\n")


def test_rows_become_requests_in_time_order_from_zero(tmp_path):
    path = tmp_path / "burst.csv"
    path.write_text(V1)
    trace = read_trace("burstgpt", path)
    assert trace.arrival_s.tolist() == [0.0, 15.5, 40.0, 105.0]
    assert trace.prompt_tokens.tolist() == [472, 417, 1087, 2210]
    assert trace.output_tokens.tolist() == [18, 276, 1, 505]  # a failure (0 response tokens) counts as 1


def test_the_newer_columns_are_read_past_and_large_timestamps_start_at_zero(tmp_path):
    path = tmp_path / "burst3.csv.gz"
    import gzip

    path.write_bytes(gzip.compress(V3.encode()))
    trace = read_trace("burstgpt", path)
    assert trace.arrival_s.tolist() == [0.0, 51.0, 82.0]
    assert trace.prompt_tokens.tolist() == [906, 36, 1779] and trace.output_tokens.tolist() == [446, 29, 123]


def test_a_burstgpt_workload_replays_scaled_to_a_rate(tmp_path):
    path = tmp_path / "burst.csv"
    path.write_text(V1)
    spec = WorkloadSpec.model_validate({"arrival": {"kind": "trace", "format": "burstgpt", "path": str(path),
                                                    "rate": "2 /s"}})
    requests = generate(spec, 0)
    assert len(requests) == 4
    # mean rate = (n - 1) / span after scaling: 3 gaps over 105 s scaled to 2 requests/s
    assert requests.arrival_s[-1] == pytest.approx(3 / 2.0)
    assert np.all(np.diff(requests.arrival_s) >= 0)


@pytest.mark.parametrize("text, expected", [
    ("Timestamp,Model,Request tokens,Total tokens,Log Type\n5,ChatGPT,1,1,API log\n",
     "line 1: the header has no column 'Response tokens'; expected a CSV header with the columns Timestamp, "
     "Request tokens, Response tokens (the line is not shown: it may hold anything)"),
    (V1 + "soon,ChatGPT,1,1,2,API log\n", "line 6: Timestamp: 'soon' is not a number"),
    (V1 + "7,ChatGPT,-3,1,2,API log\n", "line 6: Request tokens: -3 is negative"),
    (V1 + "7,ChatGPT,3,x,2,API log\n", "line 6: Response tokens: 'x' is not an integer"),
    (V1 + "7,ChatGPT,3,1,4\n", "line 6: 5 fields, the header has 6"),
])
def test_a_malformed_burstgpt_row_is_one_line(tmp_path, text, expected):
    path = tmp_path / "burst.csv"
    path.write_text(text)
    workload = tmp_path / "w.yaml"
    workload.write_text(yaml.safe_dump({"arrival": {"kind": "trace", "format": "burstgpt", "path": str(path)}}))
    assert cli_error("workload", "describe", workload, "-o", tmp_path / "plots") == f"{path}: {expected}"
