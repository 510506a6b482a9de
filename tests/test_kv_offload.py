"""The host-DRAM KV tier (serving.kv_offload): evicted prefix blocks kept and read back over PCIe instead of
recomputed, bytes = blocks x block bytes, its capacity respected, swap bounded by it."""

import pytest
from conftest import cli_error

from simulator import load_scenario, run
from simulator.serving.kv_offload import HostKvTier

HOST = {"bandwidth_per_dir": "63 GB/s", "source": "shared/data/catalog/links.csv row PCIe 5.0 x16"}
# 40 system prompts of 4,000 tokens, 4 users each, 3 turns: ~170k tokens of reusable prefixes against room for
# ~107k tokens in HBM (Llama-3.1-8B at 35% of an H100)
PREFIX_REUSE = {
    "cluster": {"name": "h100-host", "chip": "h100-sxm", "chips_per_node": 1, "host": HOST},
    "deployment": {"tensor_parallel": 1, "weights_dtype": "bf16", "memory_utilization": 0.35},
    "serving": {"batcher": {"kind": "continuous", "max_batch_size": 64, "max_batched_tokens": 8192,
                            "kv_policy": "paged"},
                "prefix_caching": True, "kv_offload": {"capacity": "200 GB"}},
    "workload": {"arrival": {"kind": "poisson", "rate": "6 /s"}, "prompt_tokens": {"kind": "fixed", "value": 200},
                 "output_tokens": {"kind": "fixed", "value": 100}, "num_requests": 800,
                 "shared_prefix": {"system_prompts": 40, "users_per_prompt": 4, "system_prompt_tokens": 4000,
                                   "turns": 3}},
}
BLOCK_BYTES = 16 * 131072.0  # Llama-3.1-8B: 16-token blocks of 128 kB/token (32 layers x 2 x 8 heads x 128 x 2 B)


def test_a_prefix_cache_larger_than_hbm_gets_a_lower_ttft_with_the_offload_tier(write_scenario):
    path = write_scenario(PREFIX_REUSE)
    on = run(load_scenario(path))
    off = run(load_scenario(path, ["serving.kv_offload=null"]))
    assert on.summary["plan"]["kv_capacity_tokens_per_replica"] < 40 * 4000  # the prefixes do not fit in HBM
    assert "kv_offload" not in off.summary  # a run without the tier keeps its summary as it was
    tier = on.summary["kv_offload"]
    assert tier["hit_blocks"] > 0 and tier["offloaded_blocks"] > 0
    assert on.summary["kv_cache"]["prefix_hit_rate"] > off.summary["kv_cache"]["prefix_hit_rate"] + 0.1
    assert on.summary["ttft_s"]["p50"] < 0.7 * off.summary["ttft_s"]["p50"]
    # bytes moved = blocks x block bytes, each way, and every one of them crossed the PCIe links
    assert tier["offload_bytes"] == tier["offloaded_blocks"] * BLOCK_BYTES
    assert tier["reload_bytes"] == tier["hit_blocks"] * BLOCK_BYTES
    assert on.summary["kv_cache"]["swapped_bytes"] == pytest.approx(tier["offload_bytes"] + tier["reload_bytes"])
    assert on.iterations["swap_bytes_per_chip"].sum() == pytest.approx(tier["offload_bytes"] + tier["reload_bytes"])


def test_the_tier_never_holds_more_than_its_capacity_and_drops_least_recently_used(write_scenario):
    result = run(load_scenario(write_scenario(PREFIX_REUSE), ["serving.kv_offload.capacity=20 GB"]))
    tier = result.summary["kv_offload"]
    assert tier["dropped_blocks"] > 0
    assert tier["peak_bytes_per_replica"] <= 20e9
    assert tier["peak_bytes_per_replica"] > 20e9 - BLOCK_BYTES  # filled to within one block before dropping


def test_tier_accounting_closed_form():
    tier = HostKvTier(capacity_bytes=3 * 10.0)
    assert [tier.store(h, 10.0) for h in (1, 2, 3)] == [10.0, 10.0, 10.0]
    assert tier.store(2, 10.0) == 0.0  # held already: nothing crosses the link; 2 is now most recently used
    assert tier.store(4, 10.0) == 10.0 and list(tier.entries) == [3, 2, 4]  # 1 dropped, least recently used
    assert tier.match([3, 2, 5, 4]) == 2
    assert tier.reload([3, 2], missed=1) == 20.0 and list(tier.entries) == [4, 3, 2]
    tier.protect([4])  # matched by a request being admitted: kept while room is made
    assert tier.store(5, 10.0) == 10.0 and list(tier.entries) == [4, 2, 5]  # 3 dropped, not 4
    tier.protect([])
    assert tier.hold_swap(99, 25.0)  # a swapped sequence drops every entry it needs room from
    assert tier.dropped_blocks == 5 and tier.used_bytes == 25.0 and not tier.check()
    assert not tier.hold_swap(100, 10.0) and tier.swaps_refused == 1  # no room: it recomputes
    tier.release_swap(99)
    assert tier.used_bytes == 0.0


def test_swap_beyond_the_host_tier_recomputes_instead(write_scenario):
    swap = {**PREFIX_REUSE, "serving": {"batcher": {"kind": "continuous", "max_batch_size": 64,
                                                    "max_batched_tokens": 8192, "kv_policy": "paged",
                                                    "preemption": "swap"},
                                        "kv_offload": {"capacity": "1 GB", "prefixes": False}},
            "workload": {"arrival": {"kind": "poisson", "rate": "40 /s"},
                         "prompt_tokens": {"kind": "fixed", "value": 3000},
                         "output_tokens": {"kind": "fixed", "value": 1000}, "num_requests": 200}}
    path = write_scenario(swap)
    bounded = run(load_scenario(path))
    unbounded = run(load_scenario(path, ["serving.kv_offload=null"]))
    assert unbounded.summary["kv_cache"]["preemptions"] > 0
    assert bounded.summary["kv_offload"]["swaps_refused"] > 0
    assert bounded.summary["kv_offload"]["peak_bytes_per_replica"] <= 1e9
    assert bounded.summary["requests"]["completed"] == 200


def test_offload_needs_a_host_link_and_prefixes_need_prefix_caching(write_scenario):
    no_host = write_scenario({"serving.kv_offload": {"capacity": "100 GB", "prefixes": False}}, name="a.yaml")
    assert "serving.kv_offload: the host-DRAM tier sits behind PCIe" in cli_error("run", no_host, "--no-plots")
    no_cache = write_scenario({"serving.kv_offload": {"capacity": "100 GB"}}, name="b.yaml")
    assert "kv_offload.prefixes: true needs prefix_caching: true" in cli_error("explain", no_cache)
