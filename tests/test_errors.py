"""Bad input: one line naming file, field and what is allowed; exit code 2; never a traceback."""

import subprocess
import sys

import pytest
from conftest import REPO, cli_error


@pytest.mark.parametrize("overrides, expected", [
    ({"cluster": {"name": "x", "chip": "h100", "chips_per_node": 1}},
     "{f}: cluster.chip: 'h100' is not a catalog chip (a100-sxm-80gb, b200, cerebras-wse3, gb200, gb300, groq-lpu, "
     "h100-sxm, h200-sxm, mi300x, mi325x, mi355x, sambanova-sn40l, tpu-v4, tpu-v5e, tpu-v5p, tpu-v6e, tpu-v7) nor "
     "a path to a chip YAML"),
    ({"model": "llama-9b"},
     "{f}: model: 'llama-9b' is not a catalog model (deepseek-v3, gpt-3-175b, gpt-j-6b, gpt-oss-120b, "
     "llama-2-13b, llama-2-70b, llama-2-7b, llama-3.1-405b, llama-3.1-70b, llama-3.1-8b, llama-3.3-70b, "
     "llama-4-scout-17b-16e, "
     "mistral-nemo-12b, mixtral-8x22b, mixtral-8x7b, opt-13b, opt-175b, palm-540b, qwen2.5-72b, qwen2.5-7b, "
     "qwen3-235b-a22b, qwen3-32b) "
     "nor a path to a config.json"),
    ({"serving.batcher.max_batch_sise": 8},
     "{f}: serving.batcher.max_batch_sise: unknown key; allowed: chunked_prefill, kind, kv_policy, "
     "max_batch_size, max_batched_tokens, preemption, priority"),
    ({"workload.arrival.rate": -5}, "{f}: workload.arrival.rate: must be > 0, got -5"),
    ({"workload.arrival.rate": "5 parsecs"},
     "{f}: workload.arrival.rate: expected rate like '5 /s' or '300 /min', got unit 'parsecs'"),
    ({"serving.batcher.kind": "vlm"}, "{f}: serving.batcher.kind: 'vlm' is not one of: continuous, static"),
    ({"workload.arrival.kind": "hawkes"},
     "{f}: workload.arrival.kind: 'hawkes' is not one of: closed_loop, daily, gamma, offline, on_off, poisson, "
     "stages, trace"),
    ({"model": "llama-3.1-70b", "cluster": str(REPO / "topologies" / "hgx-h100.yaml"),
      "deployment.tensor_parallel": 3},
     "{f}: deployment.tensor_parallel: 3 does not divide the 64 attention heads of llama-3.1-70b; "
     "allowed: 1, 2, 4, 8"),
    ({"model": "llama-3.1-70b"},
     "{f}: llama-3.1-70b weights at bf16 split over 1 chip need 141.1 GB, 77.31 GB available; per chip: hbm "
     "85.9 GB x memory_utilization 0.9; the weights alone need at least 2 h100-sxm chips"),
    ({"deployment.weights_dtype": "fp9"},
     "{f}: deployment.weights_dtype: 'fp9' is not one of: bf16, fp16, fp32, fp4, fp8, int4, int8"),
    ({"workload.num_requests": "many"},
     "{f}: workload.num_requests: input should be a valid integer, unable to parse string as an integer, "
     "got 'many'"),
    ({"serving.batcher.max_batched_tokens": 16},
     "{f}: serving.batcher: max_batched_tokens (16) must be >= max_batch_size (64): every running request "
     "decodes one token per iteration"),
])
def test_scenario_mistakes(write_scenario, overrides, expected):
    path = write_scenario(overrides)
    assert cli_error("run", path, "-o", path.parent / "out") == expected.format(f=path)


def test_errors_in_a_referenced_file_name_that_file(tmp_path, write_scenario):
    topo = tmp_path / "topo.yaml"
    topo.write_text("name: t\nchip: h100-sxm\nchips_per_node: 0\n")
    path = write_scenario({"cluster": str(topo)})
    assert cli_error("run", path) == f"{topo}: chips_per_node: must be >= 1, got 0"


def test_unknown_topology_name_lists_the_known_ones(write_scenario):
    path = write_scenario({"cluster": "hgx-h900"})
    message = cli_error("run", path)
    assert message.startswith(f"{path}: cluster: 'hgx-h900' is not one of: a100-4x, cerebras-cs3-4, dgx-b200, ")
    assert ", hgx-h100, hgx-h100-x2-ndr400, hgx-h200, " in message


def test_file_level_problems(tmp_path):
    assert cli_error("run", tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: file not found"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert cli_error("run", bad).startswith(f"{bad}: line 2: invalid YAML:")
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    assert cli_error("run", listy) == f"{listy}: must be a YAML mapping of keys to values, got list"
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert cli_error("run", empty) == f"{empty}: must be a YAML mapping of keys to values, got NoneType"


def test_bad_overrides(write_scenario):
    path = write_scenario()
    assert cli_error("run", path, "--set", "serving") == "--set: 'serving' must look like dotted.key=value"
    assert cli_error("run", path, "--set", "serving.batcher.max_batch_size=-1") == \
        f"{path}: serving.batcher.max_batch_size: must be >= 1, got -1"
    assert cli_error("run", path, "--set", "workload.arrival.rate=.nan") == \
        f"{path}: workload.arrival.rate: must be a finite number, got nan"


def test_list_rejects_unknown_things():
    assert cli_error("list", "gpus") == "list: 'gpus' is not one of: chips, models, topologies"


def test_real_process_exit_code_and_single_line(write_scenario):
    path = write_scenario({"model": "llama-9b"})
    proc = subprocess.run([sys.executable, "-m", "simulator", "run", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {path}: model: 'llama-9b' is not a catalog model")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and proc.stdout == ""


def test_tensor_parallel_without_a_fabric_is_a_clear_error(write_scenario):
    path = write_scenario({"cluster": {"name": "two-loose", "chip": "h100-sxm", "chips_per_node": 2},
                           "deployment.tensor_parallel": 2})
    assert cli_error("run", path) == (
        f"{path}: cluster: no scale-up path from c0 to c1: the deployment needs chips c0 and c1 to talk; give "
        "the topology a scaleup (inside a node) or scaleout (between nodes) fabric")
