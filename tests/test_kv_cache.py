"""Paged KV-cache: capacity never exceeded, every block freed, preemption by recompute or by swap to host."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import load_scenario, run
from simulator.config.serving import ContinuousBatcher
from simulator.errors import ScenarioError
from simulator.serving.batcher import ContinuousBatching
from simulator.serving.kv_cache import KvBlockPool, PrefixCache


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.tuples(st.integers(1, 300), st.integers(1, 300)), min_size=1, max_size=40),
    capacity=st.integers(8, 80), block=st.sampled_from([1, 4, 16]), max_batch=st.integers(1, 16),
    policy=st.sampled_from(["reserve", "paged"]), preemption=st.sampled_from(["recompute", "swap"]),
    chunked=st.booleans(), caching=st.sampled_from([None, "prompts", "answers"]),
)
def test_kv_pool_never_exceeds_capacity_and_frees_every_block(lengths, capacity, block, max_batch, policy,
                                                               preemption, chunked, caching):
    cfg = ContinuousBatcher(max_batch_size=max_batch, max_batched_tokens=512, kv_policy=policy,
                            preemption=preemption, chunked_prefill=chunked)
    pool = KvBlockPool(capacity, block, bytes_per_block=1.0)
    prompts, outputs = [p for p, _ in lengths], [o for _, o in lengths]
    # with a prefix cache: requests of 3 families share their first 5 blocks, the rest is their own
    hashes = [tuple((rid % 3) * 100 + j if j < 5 else 10_000 * (rid + 1) + j for j in range((p + o) // block))
              for rid, (p, o) in enumerate(lengths)] if caching else None
    batcher = ContinuousBatching(cfg, pool, prompts, outputs, max_context=None, prefix_hashes=hashes,
                                 prefix_block_tokens=block, answer_blocks=caching == "answers")
    for rid in range(len(lengths)):
        batcher.enqueue(rid)
    done, dropped = set(), set()
    swapped_out = swapped_in = 0.0
    for _ in range(100_000):
        batch = batcher.schedule()
        dropped.update(rid for rid, _ in batcher.take_dropped())
        assert pool.used_blocks <= pool.capacity_blocks and not pool.check()
        if batch is None:
            break
        swapped_out += batch.swap_out_bytes
        swapped_in += batch.swap_in_bytes
        _, finished = batcher.complete(batch)
        done.update(finished)
    assert done | dropped == set(range(len(lengths))) and not done & dropped
    if batcher.prefix is not None:  # what is left is the cache's, unused, so every entry can be evicted
        assert not batcher.pinned and batcher.prefix.make_room(capacity)
    assert pool.used_blocks == 0 and not pool.held  # every block freed
    assert swapped_out == swapped_in  # everything swapped out came back


def pressure(write_scenario, **batcher):
    # Llama-3.1-8B on one H100 with ~1 GB of KV-cache: 8k tokens for 48 requests of 400 + 300 tokens
    return write_scenario({
        "cluster": {"name": "h100-with-host", "chip": "h100-sxm", "chips_per_node": 1,
                    "host": {"bandwidth_per_dir": "63 GB/s", "source": "PCIe 5.0 x16"}},
        "deployment.memory_utilization": 0.2, "serving.batcher": {"kind": "continuous", "max_batch_size": 48,
                                                                  "max_batched_tokens": 4096, **batcher},
        "workload.arrival": {"kind": "closed_loop", "users": 48}, "workload.num_requests": 96,
        "workload.prompt_tokens": {"kind": "fixed", "value": 400},
        "workload.output_tokens": {"kind": "fixed", "value": 300}})


def test_paged_kv_runs_bigger_batches_than_reserving_and_preempts_under_pressure(write_scenario):
    reserve = run(load_scenario(pressure(write_scenario)))
    paged = run(load_scenario(pressure(write_scenario, kv_policy="paged")))
    assert paged.iterations["batch_size"].max() > reserve.iterations["batch_size"].max()
    assert reserve.summary["kv_cache"]["preemptions"] == 0 < paged.summary["kv_cache"]["preemptions"]
    assert paged.summary["requests"]["completed"] == 96
    # recompute: preempted requests prefill their prompt and generated tokens again
    assert paged.iterations["prefill_tokens"].sum() > paged.requests["prompt_tokens"].sum()
    assert paged.iterations["output_tokens"].sum() == paged.requests["output_tokens"].sum()


def test_swapping_kv_to_host_takes_at_least_bytes_over_pcie_bandwidth(write_scenario):
    result = run(load_scenario(pressure(write_scenario, kv_policy="paged", preemption="swap")))
    s, it, links = result.summary, result.iterations, result.links
    assert s["kv_cache"]["swapped_bytes"] > 0 and s["requests"]["completed"] == 96
    swapping = it[it["swap_bytes_per_chip"] > 0]
    assert (swapping["network_s"] >= swapping["swap_bytes_per_chip"] / 63e9).all()
    assert (swapping["duration_s"] >= swapping["swap_bytes_per_chip"] / 63e9).all()
    pcie = links[links["fabric"] == "pcie"]
    out = pcie[pcie["dst"].str.endswith("/host")]["bytes"].sum()
    back = pcie[pcie["src"].str.endswith("/host")]["bytes"].sum()
    assert out == pytest.approx(back) and out + back == pytest.approx(s["kv_cache"]["swapped_bytes"])
    # no recomputation: every prompt token is prefilled exactly once
    assert it["prefill_tokens"].sum() == result.requests["prompt_tokens"].sum()


def test_swap_needs_a_host_link(write_scenario):
    path = write_scenario({"serving.batcher": {"kind": "continuous", "max_batch_size": 8,
                                               "max_batched_tokens": 4096, "kv_policy": "paged",
                                               "preemption": "swap"}})
    with pytest.raises(ScenarioError, match="swap needs host memory behind PCIe, but topology single-h100 "
                                            "has no `host:` block; allowed here: recompute"):
        run(load_scenario(path))


def test_the_prefix_cache_evicts_the_least_recently_released_unused_block_and_never_a_used_one():
    pool = KvBlockPool(capacity_blocks=4, block_tokens=16, bytes_per_block=1.0)
    cache = PrefixCache(pool, 16)
    pool.allocate(1, 3)
    assert cache.adopt(1, [10, 11, 12]) == [10, 11, 12]  # request 1 hands its 3 written blocks over
    assert pool.held[1] == 0 and pool.used_blocks == 3
    pool.allocate(2, 1)
    assert cache.adopt(2, [10]) == []  # cached already: request 2's copy stays its own
    cache.unpin([12, 10])  # released in this order: 12 is evicted first, 11 (still used) never
    pool.free(2)
    assert cache.make_room(2) and 12 not in cache and 10 in cache
    assert not cache.make_room(4) and 10 not in cache and 11 in cache
    cache.unpin([11])
    assert cache.make_room(4) and cache.entries() == 0 and pool.used_blocks == 0
    assert pool.check() == []


def test_a_recompute_that_outgrows_the_token_budget_without_chunking_is_dropped_not_stuck():
    """Two requests share 46 blocks of 16 tokens; the 300-token one is preempted (recompute) and comes back
    with 300 + ~213 tokens to prefill, more than the 512-token budget: without chunked prefill no step could
    ever run it, so it is dropped ('token_budget', as vLLM ignores such a sequence) and the run ends."""
    cfg = ContinuousBatcher(max_batch_size=2, max_batched_tokens=512, kv_policy="paged", preemption="recompute",
                            chunked_prefill=False)
    pool = KvBlockPool(46, 16, bytes_per_block=1.0)
    batcher = ContinuousBatching(cfg, pool, [1, 300], [214, 214], max_context=None)
    batcher.enqueue(0)
    batcher.enqueue(1)
    done, dropped = set(), []
    while (batch := batcher.schedule()) is not None:
        dropped += batcher.take_dropped()
        done.update(batcher.complete(batch)[1])
    dropped += batcher.take_dropped()
    assert done == {0} and dropped == [(1, "token_budget")]
    assert pool.used_blocks == 0 and not batcher.running
