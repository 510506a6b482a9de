"""Impossible configurations: every key valid on its own, the combination physically impossible. Each must be
one line naming the file, the field and what is allowed (exit 2), never a run with exit 0; and the run's own
invariants must stop a plan that puts a group on fewer chips than it claims, or a result below the speed of
light, as a bug."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, cli_error
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config.load import load_scenario, validate
from simulator.config.model_config import check_model_config
from simulator.errors import ScenarioError

MODELS = REPO / "simulator" / "catalog" / "models"
TPU = yaml.safe_load((REPO / "topologies" / "tpu-v5e-256.yaml").read_text())
H100 = yaml.safe_load((REPO / "simulator" / "catalog" / "chips" / "h100-sxm.yaml").read_text())


def _model(name: str, **changes) -> dict:
    config = json.loads((MODELS / f"{name}.json").read_text())
    config.update(changes)
    return config


# ---------------------------------------------------------------- topologies

def _torus(dims, chips: int = 8) -> dict:
    topo = copy.deepcopy(TPU)
    topo.update(chips_per_node=chips, name="t")
    topo["scaleup"]["dims"] = dims
    return topo


@pytest.mark.parametrize("dims, chips", [([-2, -4], 8), ([-1, -1, 8], 8), ([2, -2, -2], 8), ([-8], 8),
                                         ([4, -1, -1], 4), ([0, 4], 4), ([16, -16], 256)])
def test_torus_dims_must_be_positive(tmp_path, write_scenario, dims, chips):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(_torus(dims, chips)))
    message = cli_error("explain", write_scenario({"cluster": str(path), "deployment.tensor_parallel": 8 if
                                                   chips >= 8 else 4}))
    assert message.startswith(f"{path}: scaleup.dims"), message
    assert ">= 1" in message


def test_dims_on_a_switch_are_refused(tmp_path, write_scenario):
    topo = yaml.safe_load((REPO / "topologies" / "hgx-h100.yaml").read_text())
    topo["scaleup"]["dims"] = [2, 4]
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(topo))
    message = cli_error("explain", write_scenario({"cluster": str(path)}))
    assert message == f"{path}: scaleup.dims: only a torus has dims; this scaleup is kind 'switch'"


# ---------------------------------------------------------------- models

MODEL_CASES = [
    ("llama-3.1-8b", {"num_key_value_heads": 3}, "num_key_value_heads", "divide"),
    ("llama-3.1-8b", {"num_key_value_heads": 64}, "num_key_value_heads", "divide"),
    ("qwen3-32b", {"num_key_value_heads": 7}, "num_key_value_heads", "divide"),
    ("llama-3.1-8b", {"hidden_size": 4097}, "hidden_size", "head_dim"),
    ("gpt-j-6b", {"n_embd": 4100}, "n_embd", "n_head"),
    ("mixtral-8x7b", {"num_experts_per_tok": 9}, "num_experts_per_tok", "from 1 to"),
    ("mixtral-8x7b", {"num_experts_per_tok": 0}, "num_experts_per_tok", "from 1 to"),
    ("qwen3-235b-a22b", {"num_experts_per_tok": 129}, "num_experts_per_tok", "from 1 to"),
    ("gpt-oss-120b", {"num_experts_per_tok": 200}, "num_experts_per_tok", "from 1 to"),
    ("deepseek-v3", {"num_experts_per_tok": 0}, "num_experts_per_tok", "from 1 to"),
    ("deepseek-v3", {"num_experts_per_tok": 257}, "num_experts_per_tok", "from 1 to"),
    ("deepseek-v3", {"first_k_dense_replace": 62}, "first_k_dense_replace", "num_hidden_layers"),
    ("deepseek-v3", {"first_k_dense_replace": 1000}, "first_k_dense_replace", "num_hidden_layers"),
]


@pytest.mark.parametrize("name, changes, key, allowed", MODEL_CASES)
def test_impossible_model_configs(tmp_path, write_scenario, name, changes, key, allowed):
    path = tmp_path / "m" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_model(name, **changes)))
    message = cli_error("explain", write_scenario({"model": str(path)}))
    assert message.startswith(f"{path}: {key}: "), message
    assert allowed in message, message


def test_every_catalog_model_passes_the_relations():
    for path in MODELS.glob("*.json"):
        check_model_config(json.loads(path.read_text()), str(path))


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(heads=st.integers(1, 128), kv=st.integers(1, 160), experts=st.integers(0, 64), top_k=st.integers(0, 80))
def test_relations_hold_or_are_refused(heads, kv, experts, top_k):
    """Property: a config passes the check exactly when KV heads divide the heads and, with experts, top-k is
    in 1..experts; when it passes, every parameter count is positive."""
    from simulator.hardware.model import model_shape

    config = _model("mixtral-8x7b", num_attention_heads=heads, num_key_value_heads=kv, hidden_size=heads * 64,
                    num_local_experts=experts, num_experts_per_tok=top_k)
    ok = heads % kv == 0 and (experts == 0 or 1 <= top_k <= experts)
    try:
        check_model_config(config, "m.json")
    except ScenarioError:
        assert not ok
        return
    assert ok
    shape = model_shape("m", config)
    assert shape.total_params > 0 and shape.active_params > 0 and shape.n_moe_layers >= 0
    assert shape.active_params <= shape.total_params + shape.lm_head_params


# ---------------------------------------------------------------- chips

def _chip_file(tmp_path, **power) -> str:
    chip = copy.deepcopy(H100)
    chip["power"].update(power)
    path = tmp_path / "my-chip.yaml"
    path.write_text(yaml.safe_dump(chip))
    return str(path)


@pytest.mark.parametrize("power, field", [({"idle": "800 W"}, "power.idle"), ({"idle": "701 W"}, "power.idle"),
                                          ({"tdp": "10 W"}, "power.idle")])
def test_idle_above_tdp(tmp_path, power, field):
    from simulator.config.cluster import ChipSpec

    path = _chip_file(tmp_path, **power)
    with pytest.raises(ScenarioError) as info:
        validate(ChipSpec, yaml.safe_load(Path(path).read_text()), path)
    assert str(info.value).startswith(f"{path}: {field}: "), str(info.value)
    assert "tdp" in str(info.value)


def test_catalog_chips_pass_the_relations():
    from simulator.config.load import chip_ids, load_chip

    for chip_id in chip_ids():
        load_chip(chip_id)


def test_chip_outside_the_catalog_is_refused_by_name(write_scenario, tmp_path):
    """A catalog id that walks out of the catalog folder is not a catalog chip."""
    path = _chip_file(tmp_path)
    relative = "../../../../../../../../" + path.removesuffix(".yaml")
    topo = yaml.safe_load((REPO / "topologies" / "single-h100.yaml").read_text())
    topo["chip"] = relative
    topo_path = tmp_path / "topo.yaml"
    topo_path.write_text(yaml.safe_dump(topo))
    message = cli_error("explain", write_scenario({"cluster": str(topo_path)}))
    assert message.startswith(f"{topo_path}: chip: "), message
    assert "is not one of: " in message


# ---------------------------------------------------------------- run-time invariants

def test_plan_with_two_shards_on_one_chip_stops_as_a_bug(write_scenario):
    """A placement that claims 2 chips for a TP group but has them on one stops the run (an InvariantError)."""
    from dataclasses import replace

    from simulator.hardware import prepare as prep
    from simulator.results.collect import InvariantError
    from simulator.run import run

    scenario = load_scenario(write_scenario({"cluster": str(REPO / "topologies" / "hgx-h100.yaml"),
                                             "deployment.tensor_parallel": 2, "workload.num_requests": 20}))
    real = prep.prepare

    def squeezed(s):
        prepared = real(s)
        pool = prepared.pools[0]
        plan = replace(pool.plan, replica_chips=((0, 0),))
        return replace(prepared, pools=[replace(pool, plan=plan)])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(importlib.import_module("simulator.run"), "prepare", squeezed)
        with pytest.raises(InvariantError, match="claims 2 chips but is placed on 1 distinct"):
            run(scenario)


def test_result_below_the_speed_of_light_stops_as_a_bug(write_scenario):
    """A peak 1000x below the chip's (the cost model told a lie) is caught against the catalog chip's peak."""
    from simulator.results.collect import speed_of_light_problems

    scenario = load_scenario(write_scenario({"workload.num_requests": 30}))
    from simulator.run import run

    result = run(scenario)
    assert speed_of_light_problems(result.iteration_store, result.model, [result.plan], scenario.chip) == []
    faster = result.iterations.assign(duration_s=result.iterations["duration_s"] / 1000)
    problems = speed_of_light_problems(faster, result.model, [result.plan], scenario.chip)
    assert problems and "speed of light" in problems[0]
