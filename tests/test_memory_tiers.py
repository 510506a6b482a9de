"""Memory tiers: weights in the fastest tier with room, or streamed from a slower one when allowed."""

import pytest
from conftest import REPO

from simulator import load_scenario, run
from simulator.config.load import load_model_config
from simulator.hardware.model import model_shape
from simulator.hardware.placement import KV_SHARE_WHEN_STREAMING

SN40L = {"name": "sn40l", "model": "llama-3.1-405b",
         "cluster": {"name": "one-sn40l", "chip": "sambanova-sn40l", "chips_per_node": 1},
         "deployment": {"weights_dtype": "bf16", "weight_streaming": True},
         "workload": {"arrival": {"kind": "closed_loop", "users": 2}, "num_requests": 2,
                      "prompt_tokens": {"kind": "fixed", "value": 64}, "output_tokens": {"kind": "fixed", "value": 3}}}


def test_weights_too_big_for_hbm_stream_from_ddr_and_bound_every_token(write_scenario):
    result = run(load_scenario(write_scenario(base=SN40L)))
    plan = result.plan
    assert (plan.tier, plan.stream_tier) == ("hbm", "ddr")
    weights = model_shape(*load_model_config("llama-3.1-405b", REPO, "t")).weight_bytes("bf16")
    assert plan.weight_bytes_per_chip == pytest.approx(weights)
    # HBM holds what it can beside the KV-cache's share; every decode step reads the rest from DDR at 100 GB/s
    usable = 64e9 * 0.9
    assert plan.resident_weight_fraction * weights == pytest.approx(usable * (1 - KV_SHARE_WHEN_STREAMING))
    assert plan.kv_capacity_bytes_per_chip == pytest.approx(usable * KV_SHARE_WHEN_STREAMING)
    streamed = (1 - plan.resident_weight_fraction) * weights
    assert result.requests["tpot_s"].min() >= 0.98 * (streamed / 100e9 + (weights - streamed) / 1.6e12)
    it = result.iterations
    assert (it["stream_bytes_per_chip"] > 0.9 * weights).all()
    assert result.summary["plan"]["weight_stream_tier"] == "ddr"


def test_without_streaming_everything_sits_in_the_tier_that_holds_the_weights(write_scenario):
    data = {**SN40L, "deployment": {"weights_dtype": "bf16"}}
    plan = run(load_scenario(write_scenario(base=data))).plan
    assert (plan.tier, plan.stream_tier) == ("ddr", None)


def test_weights_that_fit_the_fast_tier_are_never_streamed(write_scenario):
    data = {**SN40L, "model": "llama-3.1-8b"}
    plan = run(load_scenario(write_scenario(base=data))).plan
    assert (plan.tier, plan.stream_tier) == ("hbm", None)


def test_weights_that_fit_no_tier_raise_a_capacity_error_with_needed_and_available_bytes(write_scenario):
    import pickle

    from simulator.errors import CapacityError

    # Llama-3.1-70B at 16 bits (70,553,706,496 x 2 bytes) on one H100: 80 GiB of HBM x memory_utilization 0.9
    path = write_scenario({"model": "llama-3.1-70b"})
    with pytest.raises(CapacityError) as err:
        run(load_scenario(path))
    e = err.value
    assert e.needed_bytes == 70_553_706_496 * 2
    assert e.available_bytes == pytest.approx(80 * 2**30 * 0.9)
    assert e.file == str(path) and str(e).startswith(f"{path}: llama-3.1-70b weights at bf16 split over 1 chip need")
    assert str(pickle.loads(pickle.dumps(e))) == str(e)  # crosses process boundaries (sweeps) intact
