"""Whole runs: conservation of requests, KV capacity bounding the batch, determinism, batching behaviour."""

import json
import math

import numpy as np
import pytest

from simulator import load_scenario, run
from simulator.results.summary import summary_json


def run_file(path, *overrides, seed=None):
    return run(load_scenario(path, list(overrides)), seed=seed)


def test_every_request_is_completed_dropped_or_in_flight(write_scenario):
    result = run_file(write_scenario())
    r = result.summary["requests"]
    assert r["arrived"] == 300 == r["completed"] + r["dropped"] + r["in_flight"]
    assert r["completed"] == 300 and r["in_flight"] == 0
    stopped = run_file(write_scenario(), "sim.max_time=5 s").summary["requests"]
    assert stopped["in_flight"] > 0
    assert stopped["arrived"] == stopped["completed"] + stopped["dropped"] + stopped["in_flight"]
    assert stopped["arrived"] < 300  # arrivals after 5 s never happened


def test_requests_that_can_never_fit_are_dropped_with_a_reason(write_scenario):
    # max context of Llama-2-7B is 4096 tokens
    result = run_file(write_scenario({"model": "llama-2-7b",
                                      "workload.prompt_tokens": {"kind": "uniform", "low": 3000, "high": 5000}}))
    req = result.requests
    too_long = req["prompt_tokens"] + req["output_tokens"] > 4096
    assert (req.loc[too_long, "status"] == "dropped").all() and too_long.any()
    assert (req.loc[too_long, "drop_reason"] == "context").all()
    assert (req.loc[~too_long, "status"] == "completed").all()


def test_kv_capacity_bounds_the_batch(write_scenario):
    # Llama-3.1-8B bf16 on one H100: weights 16.06 GB; memory_utilization 0.222 leaves ~3 GB of KV-cache,
    # room for ~22,000 tokens, i.e. 19 requests of 1,000 + 100 tokens (69 blocks of 16 tokens each)
    path = write_scenario({"deployment.memory_utilization": 0.222,
                           "serving.batcher.max_batch_size": 256,
                           "workload.arrival": {"kind": "poisson", "rate": "1000 /s"},
                           "workload.prompt_tokens": {"kind": "fixed", "value": 1000},
                           "workload.output_tokens": {"kind": "fixed", "value": 100}})
    result = run_file(path)
    plan = result.plan
    per_request_blocks = math.ceil(1100 / plan.kv_block_tokens)
    bound = plan.kv_capacity_blocks // per_request_blocks
    assert 10 < bound < 256
    assert result.iterations["batch_size"].max() == bound  # reached under overload, never exceeded
    assert result.iterations["kv_blocks_used"].max() <= plan.kv_capacity_blocks


def test_tpot_never_beats_reading_the_weights_once_per_token(write_scenario):
    result = run_file(write_scenario())
    floor = result.plan.weight_bytes_per_chip / result.plan.tier_bandwidth
    assert result.requests["tpot_s"].dropna().min() >= floor


def test_chunked_prefill_never_exceeds_the_token_budget(write_scenario):
    result = run_file(write_scenario({"workload.prompt_tokens": {"kind": "fixed", "value": 6000}}))
    it = result.iterations
    assert (it["prefill_tokens"] + it["decode_tokens"]).max() <= 4096
    assert result.summary["requests"]["completed"] == 300


def test_without_chunking_prefills_run_alone_and_whole(write_scenario):
    result = run_file(write_scenario({"serving.batcher.chunked_prefill": False}))
    it = result.iterations
    assert not ((it["prefill_tokens"] > 0) & (it["decode_tokens"] > 0)).any()
    assert result.summary["requests"]["completed"] == 300


def test_closed_loop_keeps_at_most_users_requests_in_the_system(write_scenario):
    path = write_scenario({"workload.arrival": {"kind": "closed_loop", "users": 8, "think_time": "0.5 s"}})
    result = run_file(path)
    assert result.iterations["batch_size"].max() <= 8
    req = result.requests.sort_values("arrival_s")
    # each request after the first 8 arrives exactly think_time after some earlier request finished
    finishes = np.sort(req["finish_s"].to_numpy())
    later = req["arrival_s"].to_numpy()[8:]
    gaps = later[:, None] - 0.5 - finishes[None, :]
    assert np.all(np.min(np.abs(gaps), axis=1) < 1e-9)


def test_same_seed_same_bytes_and_other_seed_other_results(write_scenario):
    path = write_scenario()
    a, b = run_file(path), run_file(path)
    c = run_file(path, seed=4)

    def stable(summary):
        return summary_json({**summary, "sim": {**summary["sim"], "wall_s": 0}})

    assert stable(a.summary) == stable(b.summary)
    assert a.requests.equals(b.requests) and a.iterations.equals(b.iterations)
    assert stable(a.summary) != stable(c.summary)
    assert json.loads(stable(c.summary))["seed"] == 4


def test_throughput_and_utilisation_are_consistent(write_scenario):
    s = run_file(write_scenario()).summary
    t = s["throughput"]
    assert t["output_tokens_per_s"] == pytest.approx(t["output_tokens_per_s_per_chip"] * s["chips"])
    assert 0 < s["utilization"]["compute_mean"] < 1 and 0 < s["utilization"]["memory_bw_mean"] < 1
    assert sum(s["bottleneck_share"].values()) == pytest.approx(1.0)
    assert s["energy_j_per_output_token"] > 0 and s["cost_usd_per_million_output_tokens"] > 0


def test_tokens_produced_by_iterations_equal_tokens_delivered(write_scenario):
    result = run_file(write_scenario())
    req, it = result.requests, result.iterations
    assert it["output_tokens"].sum() == req["output_tokens"].sum()
    assert it["prefill_tokens"].sum() == req["prompt_tokens"].sum()


@pytest.mark.parametrize("engine", ["vllm", "trtllm"])
def test_a_served_engines_front_end_is_in_the_clients_ttft_and_e2e_not_in_the_schedule(write_scenario, engine):
    """vLLM's OpenAI server adds its front end (HTTP, tokenisation, IPC: catalog/engines/vllm.yaml) to every
    TTFT and E2E a client measures; TensorRT-LLM benchmarks run in process. TPOT never includes it."""
    from simulator.config.load import load_engine

    result = run(load_scenario(write_scenario({"workload.num_requests": 40, "serving.engine": engine})))
    req = result.requests[result.requests["status"] == "completed"]
    front = load_engine(engine).frontend_latency
    assert (front > 0) == (engine == "vllm")
    assert (req["ttft_s"] - (req["first_token_s"] - req["arrival_s"])).to_numpy() == pytest.approx(front, abs=1e-12)
    assert (req["e2e_s"] - (req["finish_s"] - req["arrival_s"])).to_numpy() == pytest.approx(front, abs=1e-12)
    many = req[req["output_tokens"] > 1]
    tpot = (many["finish_s"] - many["first_token_s"]) / (many["output_tokens"] - 1)
    assert many["tpot_s"].to_numpy() == pytest.approx(tpot.to_numpy())
