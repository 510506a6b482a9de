from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_scenario(tmp_path):
    """Write a scenario YAML (a dict, merged over a small valid base) and return its path."""

    def write(overrides: dict | None = None, name: str = "s.yaml", base: dict | None = None) -> Path:
        data = base if base is not None else small_scenario()
        for key, value in (overrides or {}).items():
            node = data
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def small_scenario() -> dict:
    return {
        "name": "test",
        "seed": 3,
        "model": "llama-3.1-8b",
        "cluster": str(REPO / "topologies" / "single-h100.yaml"),
        "deployment": {"tensor_parallel": 1, "weights_dtype": "bf16"},
        "serving": {"batcher": {"kind": "continuous", "max_batch_size": 64, "max_batched_tokens": 4096}},
        "workload": {
            "arrival": {"kind": "poisson", "rate": "20 /s"},
            "prompt_tokens": {"kind": "uniform", "low": 100, "high": 900},
            "output_tokens": {"kind": "uniform", "low": 1, "high": 200},
            "num_requests": 300,
        },
    }


def cli_error(*args) -> str:
    """Run the CLI expecting a user error: exit code 2, one line on stderr, no traceback; the line's text."""
    from simulator.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.stderr
    return lines[0].removeprefix("error: ")
