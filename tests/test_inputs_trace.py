"""Malformed trace files (azure CSV, mooncake JSON lines, servegen folders, sharegpt lengths CSV): the exact
one-line error with the file, the line number and the column, exit 2. test_traces.py covers the first few
of each format; these are the rest (bounds, encodings, JSON oddities, replay spans)."""

from __future__ import annotations

import gzip
import json

import pytest
import yaml
from conftest import cli_error

AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
ROW = "2023-11-16 18:17:03.5000000"
SHAREGPT = "num_prefill_tokens,num_decode_tokens\n"
SERVEGEN = "client_id,window_start_s,rate_rps,cv,iat_dist,iat_shape,iat_scale\n"
DATASET = '{"client_id": 0, "windows": {"0": {"input_tokens": "{5: 1.0}", "output_tokens": "{3: 1.0}"}}}\n'


def describe_error(tmp_path, workload: dict) -> str:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(workload))
    return cli_error("workload", "describe", path, "-o", tmp_path / "plots")


def write(path, content: str | bytes):
    """The content, gzipped when the name ends in .gz (except b.csv.gz, which stays as it is)."""
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" and path.name != "b.csv.gz" else data)
    return path


@pytest.mark.parametrize("name, content, expected", [
    ("a.csv", AZURE + f"{ROW},99999999999999999999,3\n",
     "line 2: ContextTokens: 99999999999999999999 is too large; allowed: 0 to 1000000000"),
    ("a.csv", AZURE + f"{ROW},nan,3\n", "line 2: ContextTokens: 'nan' is not an integer"),
    ("a.csv", AZURE + f"{ROW},,3\n", "line 2: ContextTokens: '' is not an integer"),
    ("a.csv", AZURE + f"{ROW},{'9' * 5000},3\n",
     "line 2: ContextTokens: '999999999999999999999999999999999999999999999999999999...9' is not an integer"),
    ("a.csv", AZURE.encode() + f"{ROW},5,3\n{ROW},".encode() + b"\xff,3\n", "line 3: byte 0xff is not UTF-8 text"),
    ("a.csv.gz", AZURE.encode() + f"{ROW},".encode() + b"\xe9,3\n", "line 2: byte 0xe9 is not UTF-8 text"),
    ("a.csv", AZURE + "2023-11-16 18:17:03+01:00,3,3\n",
     "line 2: TIMESTAMP: '2023-11-16 18:17:03+01:00' is not a time like '2023-11-16 18:17:03.9799600'"),
    ("a.csv", AZURE + "1970-01-01 00:00:00,3,3\n2023-11-16 18:17:03,3,3\n",
     "the replayed requests span 1.7e+09 s of simulated time; allowed: up to 1e+08 s of simulated time "
     "(float64 resolution)"),
    ("a.csv", "", "line 1: no header; expected a CSV header with the columns TIMESTAMP, ContextTokens, "
                  "GeneratedTokens"),
    ("b.csv.gz", b"not gzip at all", "cannot be read: Not a gzipped file (b'no')"),
    ("m.jsonl", "[1, 2]\n", "line 1: must be a JSON object, got list"),
    ("m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 2}\n\n{"timestamp": NaN, "input_length": 1, '
                '"output_length": 1}\n', "line 3: timestamp: nan is not a finite number"),
    ("m.jsonl", '{"timestamp": "soon", "input_length": 1, "output_length": 1}\n',
     "line 1: timestamp: 'soon' is not a number"),
    ("m.jsonl", '{"timestamp": 0, "input_length": true, "output_length": 1}\n',
     "line 1: input_length: True is not an integer"),
    ("m.jsonl", '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [1, "x"]}\n',
     "line 1: hash_ids: 'x' is not an integer"),
    ("m.jsonl", '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": 5}\n',
     "line 1: hash_ids: must be a list of integers, got 5"),
    ("m.jsonl", '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [-1]}\n',
     "line 1: hash_ids: -1 is negative"),
    ("m.jsonl", '{"timestamp": 0, "input_length": ' + "1" * 5000 + ', "output_length": 1}\n',
     "line 1: invalid JSON: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits; "
     "use sys.set_int_max_str_digits() to increase the limit"),
    ("m.jsonl", '{"timestamp": 0, "input_length": ' + "[" * 100_000 + "\n", "line 1: invalid JSON: nested too deeply"),
    ("m.jsonl.gz", "", "holds no requests"),
])
def test_replayed_trace_mistakes(tmp_path, name, content, expected):
    path = write(tmp_path / name, content)
    fmt = "azure" if ".csv" in name else "mooncake"
    message = describe_error(tmp_path, {"arrival": {"kind": "trace", "format": fmt, "path": str(path)}})
    assert message == f"{path}: {expected}"


@pytest.mark.parametrize("content, expected", [
    ("a,b\n1,2\n", "line 1: the header has no column 'num_prefill_tokens'; expected a CSV header with the "
                  "columns num_prefill_tokens, num_decode_tokens (the line is not shown: it may hold anything)"),
    (SHAREGPT + "5,-1\n", "line 2: num_decode_tokens: -1 is negative"),
    (SHAREGPT + "5\n", "line 2: 1 fields, the header has 2"),
    (SHAREGPT + "5,3\n7,1.5\n", "line 3: num_decode_tokens: '1.5' is not an integer"),
    (SHAREGPT, "holds no requests"),
])
def test_sharegpt_lengths_mistakes(tmp_path, content, expected):
    path = write(tmp_path / "l.csv", content)
    lengths = {"kind": "empirical", "format": "sharegpt", "path": str(path)}
    message = describe_error(tmp_path, {"arrival": {"kind": "poisson", "rate": "1 /s"}, "num_requests": 3,
                                        "prompt_tokens": lengths, "output_tokens": lengths})
    assert message == f"{path}: {expected}"


@pytest.mark.parametrize("trace, dataset, where, expected", [
    (SERVEGEN + "0,0,1e300,1,Gamma,1,1\n", DATASET, "trace.csv",
     "line 2: rate_rps: 1e+300 is out of range; allowed: 0 to 1e+06 requests per second"),
    (SERVEGEN + "0,0,-1,1,Gamma,1,1\n", DATASET, "trace.csv",
     "line 2: rate_rps: -1 is out of range; allowed: 0 to 1e+06 requests per second"),
    (SERVEGEN + "0,0,1,1,Normal,1,1\n", DATASET, "trace.csv",
     "line 2: iat_dist: 'Normal' is not one of: Gamma, Weibull (or empty)"),
    (SERVEGEN + "x,0,1,1,Gamma,1,1\n", DATASET, "trace.csv", "line 2: client_id: 'x' is not an integer"),
    (SERVEGEN, DATASET, "trace.csv", "holds no windows"),
    (SERVEGEN + "0,0,1,1,Gamma,1,1\n", DATASET.replace("{5: 1.0}", "{99999999999999999999: 1.0}"), "dataset.jsonl",
     "line 1: windows.0.input_tokens: is not a Python dict literal of {tokens: probability}; allowed: tokens 0 to "
     "1000000000, probabilities finite and >= 0"),
    (SERVEGEN + "0,0,1,1,Gamma,1,1\n", DATASET.replace("{5: 1.0}", "{5: 1e999}"), "dataset.jsonl",
     "line 1: windows.0.input_tokens: is not a Python dict literal of {tokens: probability}; allowed: tokens 0 to "
     "1000000000, probabilities finite and >= 0"),
    (SERVEGEN + "0,0,1,1,Gamma,1,1\n", DATASET.replace("{5: 1.0}", "__import__('os').system('true')"),
     "dataset.jsonl", "line 1: windows.0.input_tokens: is not a Python dict literal of {tokens: probability}; "
                      "allowed: tokens 0 to 1000000000, probabilities finite and >= 0"),
    (SERVEGEN + "0,0,1,1,Gamma,1,1\n", '{"client_id": 0, "windows": 5}\n', "dataset.jsonl",
     "line 1: windows: must be a JSON object keyed by window start"),
    (SERVEGEN + "0,0,1,1,Gamma,1,1\n", '{"client_id": ' + "7" * 30 + ', "windows": {}}\n', "dataset.jsonl",
     "line 1: client_id: 777777777777777777777777777777 is too large; allowed: 0 to 9223372036854775807"),
    (SERVEGEN + "0,0,1,1,Gamma,1,1\n", json.dumps({"client_id": 0, "windows": {"0": {"input_tokens": "{5: 1}"}}})
     + "\n", "dataset.jsonl", "line 1: windows.0: needs output_tokens and input_tokens (or text_tokens)"),
])
def test_servegen_folder_mistakes(tmp_path, trace, dataset, where, expected):
    folder = tmp_path / "sg"
    folder.mkdir()
    write(folder / "trace.csv", trace)
    write(folder / "dataset.jsonl", dataset)
    message = describe_error(tmp_path, {"arrival": {"kind": "trace", "format": "servegen", "path": str(folder)}})
    assert message == f"{folder / where}: {expected}"


def test_a_servegen_path_must_be_a_folder_with_both_files(tmp_path):
    arrival = {"kind": "trace", "format": "servegen", "path": str(tmp_path / "sg")}
    assert describe_error(tmp_path, {"arrival": arrival}) == (
        f"{tmp_path / 'sg'}: folder not found (a servegen path is a folder with trace.csv and dataset.jsonl)")
    (tmp_path / "sg").mkdir()
    write(tmp_path / "sg" / "dataset.jsonl", DATASET)
    assert describe_error(tmp_path, {"arrival": arrival}) == (
        f"{tmp_path / 'sg'}: has no trace.csv nor trace.csv.gz (a servegen path is a folder with trace.csv and "
        "dataset.jsonl)")


def test_a_trace_path_that_is_a_folder_or_missing(tmp_path):
    arrival = {"kind": "trace", "format": "azure", "path": str(tmp_path)}
    assert describe_error(tmp_path, {"arrival": arrival}) == f"{tmp_path}: is a folder, not a trace file"
    arrival["path"] = str(tmp_path / "nope.csv")
    assert describe_error(tmp_path, {"arrival": arrival}) == f"{tmp_path / 'nope.csv'}: file not found"
