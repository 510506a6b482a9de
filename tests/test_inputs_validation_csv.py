"""Malformed validation CSVs (`infersim validate FILE`): the exact one-line error with file, line and column,
exit 2, before any case is simulated. test_validate.py covers a few columns; these are the rest."""

from __future__ import annotations

import csv
import io

import pytest
from conftest import REPO, cli_error

ROWS = list(csv.DictReader((REPO / "validation" / "calibration.csv").open(encoding="utf-8")))
HEADER = list(ROWS[0])
GPTJ = next(r for r in ROWS if r["case_id"] == "TRT05_A100x1_GPTJ_BS1_DECODE")


def validate_error(tmp_path, content: str | bytes) -> str:
    path = tmp_path / "cases.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    message = cli_error("validate", path, "-o", tmp_path / "out", "--no-plots")
    assert message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


def one_row(**changes) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, HEADER)
    writer.writeheader()
    writer.writerow({**GPTJ, **changes})
    return out.getvalue()


@pytest.mark.parametrize("changes, expected", [
    ({"tp": "0"}, "line 2: tp: must be from 1 to 100000, got 0"),
    ({"tp": "1000000"}, "line 2: tp: must be from 1 to 100000, got 1000000"),
    ({"num_chips": "x"}, "line 2: num_chips: 'x' is not an integer"),
    ({"num_chips": "1.0"}, "line 2: num_chips: '1.0' is not an integer"),
    ({"value": "nan"}, "line 2: value: must be a positive finite number, got 'nan'"),
    ({"value": "inf"}, "line 2: value: must be a positive finite number, got 'inf'"),
    ({"value": "-1"}, "line 2: value: must be a positive finite number, got '-1'"),
    ({"tolerance": "2"}, "line 2: tolerance: a relative tolerance must be < 1, got 2.0"),
    ({"input_tokens": "10000000000"}, "line 2: input_tokens: must be from 1 to 1000000000, got 10000000000"),
    ({"concurrency": "10000000"}, "line 2: concurrency: must be from 1 to 1000000, got 10000000"),
    ({"mode": "rate", "rate_per_s": "1e9"}, "line 2: rate_per_s: must be at most 1e+06, got '1e9'"),
    ({"mode": "turbo"}, "line 2: mode: 'turbo' is not one of: offline, concurrency, rate, batch"),
    ({"case_id": ""}, "line 2: case_id: must not be empty"),
    ({"case_id": "../x"}, "line 2: case_id: '../x' cannot name a scenario; allowed: letters, digits, '_', '.', "
                          "'+', '-', starting with a letter or digit, at most 100 characters"),
    ({"weights_dtype": "fp9"}, "line 2: weights_dtype: 'fp9' is not one of: fp32, bf16, fp16, fp8, int8, fp4, int4"),
])
def test_bad_cells(tmp_path, changes, expected):
    assert validate_error(tmp_path, one_row(**changes)) == expected


@pytest.mark.parametrize("content, expected", [
    ("", "line 1: missing column(s): " + ", ".join(HEADER)),
    ("case_id\n", "line 1: missing column(s): " + ", ".join(HEADER[1:])),
    (",".join(HEADER) + "\n", "no cases (a header and no rows)"),
    (b"\xff\xfe", "line 1: byte 0xff is not UTF-8 text"),
    (one_row().encode() + b"X\xe9,", "line 3: byte 0xe9 is not UTF-8 text"),
    (one_row().rstrip() + ",extra\n", f"line 2: {len(HEADER) + 1} fields, the header has {len(HEADER)}"),
    (one_row() + one_row().splitlines()[1] + "\n", "line 3: case_id: 'TRT05_A100x1_GPTJ_BS1_DECODE' appears twice"),
    (",".join(HEADER) + '\n"' + "x" * 200_000 + '"\n',
     "line 2: not a readable CSV row: field larger than field limit (131072)"),
])
def test_bad_files(tmp_path, content, expected):
    assert validate_error(tmp_path, content) == expected


def test_a_missing_file(tmp_path):
    assert cli_error("validate", tmp_path / "none.csv", "-o", tmp_path / "out") == \
        f"{tmp_path / 'none.csv'}: file not found"
