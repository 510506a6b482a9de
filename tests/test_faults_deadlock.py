"""Prefix caching with large KV blocks and little memory: a request's pinned prefix blocks count towards what
it needs, so the run ends (a request is served without its prefix hit, or dropped), never in "no events left
but the run is not over"."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import load_scenario, run


def _scenario(write_scenario, tmp_path, rows, block_tokens: int, utilization: float, model="llama-3.1-8b",
              batch: int = 64):
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": o, "hash_ids": h})
                            + "\n" for t, n, o, h in rows))
    return load_scenario(write_scenario({
        "model": model, "serving.prefix_caching": True,
        "serving.batcher": {"kind": "continuous", "max_batch_size": batch, "max_batched_tokens": 16384},
        "deployment": {"tensor_parallel": 1, "weights_dtype": "bf16", "kv_block_tokens": block_tokens,
                       "memory_utilization": utilization},
        "workload": {"arrival": {"kind": "trace", "format": "mooncake", "path": str(path)}}}))


def _blocks(result) -> int:
    return int(result.plan.kv_capacity_tokens // result.plan.kv_block_tokens)


def _served(result) -> int:
    status = result.requests["status"]
    assert (status == "completed").sum() + (status == "dropped").sum() == len(result.requests)
    return int((status == "completed").sum())


PROMPT = list(range(1, 17))  # 16 blocks of 512 tokens


@pytest.mark.parametrize("block_tokens, utilization, rows", [
    # the prompt's cached entries (512 tokens each, one large KV block each) fill the whole pool: a repeat
    # pins them all and then has no room for its own block
    (4096, 0.215, [(0, 2048, 4, PROMPT[:4]), (5000, 2048, 4, PROMPT[:4])]),
    (4096, 0.22, [(0, 2560, 4, PROMPT[:5]), (5000, 2560, 4, PROMPT[:5])]),
    (8192, 0.25, [(0, 2560, 4, PROMPT[:5]), (5000, 2560, 30, PROMPT[:5]), (9000, 2560, 4, PROMPT[:5])]),
    (2048, 0.21, [(0, 3584, 4, PROMPT[:7]), (5000, 3584, 4, PROMPT[:7])]),
    (4096, 0.215, [(0, 2048, 4, PROMPT[:4]), (1, 1024, 4, PROMPT[:2]), (5000, 2048, 300, PROMPT[:4])]),
    (4096, 0.215, [(0, 2048, 4, PROMPT[:4]), (5000, 1800, 4, PROMPT[:4])]),  # a partial last block
])
def test_pinned_prefix_blocks_never_deadlock(write_scenario, tmp_path, block_tokens, utilization, rows):
    result = run(_scenario(write_scenario, tmp_path, rows, block_tokens, utilization))
    assert _blocks(result) < 16  # the case needs little memory: a few blocks
    assert _served(result) >= 1


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(block_tokens=st.sampled_from([256, 1024, 4096, 8192]), utilization=st.floats(0.2, 0.23),
       prompts=st.lists(st.tuples(st.integers(1, 16), st.integers(1, 300), st.integers(0, 3)), min_size=2,
                        max_size=5))
def test_any_mix_of_shared_prefixes_finishes(write_scenario, tmp_path, block_tokens, utilization, prompts):
    """Property: whatever the block size, memory and sharing, every request ends completed or dropped."""
    rows = [(i * 10, n * 512, out, [100 * k + b for b in range(1, n + 1)]) for i, (n, out, k) in enumerate(prompts)]
    result = run(_scenario(write_scenario, tmp_path, rows, block_tokens, utilization))
    _served(result)
