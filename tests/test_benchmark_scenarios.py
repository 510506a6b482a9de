"""The scenarios benchmarks/suite.py --blis times against BLIS load, and still describe BLIS's W1 and W3."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import load_scenario

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "scenarios"


@pytest.mark.parametrize(("name", "model", "tp", "rate"), [("blis-w1", "llama-3.1-8b", 1, 5.0),
                                                          ("blis-w3", "llama-3.1-70b", 8, 20.0)])
def test_blis_workload_scenarios(name: str, model: str, tp: int, rate: float) -> None:
    spec = load_scenario(BENCH / f"{name}.yaml").spec
    w, b, d = spec.workload, spec.serving.batcher, spec.deployment
    assert (spec.model, d.tensor_parallel, d.weights_dtype, d.memory_utilization) == (model, tp, "bf16", 0.9)
    assert (w.arrival.kind, w.arrival.rate, w.num_requests) == ("poisson", rate, 10_000)
    assert (w.prompt_tokens.value, w.output_tokens.value) == (512, 128)
    assert (b.max_batch_size, b.max_batched_tokens, b.chunked_prefill, b.kv_policy) == (256, 2048, True, "paged")
