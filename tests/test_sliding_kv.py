"""Sliding-window layers in the paged KV pool and in decode attention: the blocks a sequence holds at context c
with window w (closed form), the sequences a pool admits, the attended context a decode batch reads, and a
gpt-oss run that holds and reads less KV than the same model with every layer global."""

import json
import math

import pytest
from conftest import REPO

from simulator import load_scenario, run
from simulator.config.load import load_model_config
from simulator.config.serving import ContinuousBatcher
from simulator.hardware.model import model_shape
from simulator.serving.batcher import ContinuousBatching
from simulator.serving.kv_cache import BlockLayout, KvBlockPool


def catalog_shape(name):
    model_name, config = load_model_config(name, REPO, "test")
    return model_shape(model_name, config)


def test_blocks_held_at_context_c_follow_the_closed_form():
    oss = catalog_shape("gpt-oss-120b")  # 18 sliding layers (window 128) and 18 global ones
    b = 16
    pool = KvBlockPool.for_model(oss, capacity_tokens=1_000_000, block_tokens=b, full_block_bytes=2.0)
    assert pool.layout == BlockLayout(full_groups=1, sliding_groups=1, window_blocks=128 // b + 1)
    assert pool.bytes_per_block == 1.0  # a block of one group: half the layers
    assert pool.capacity_blocks == 2 * (1_000_000 // b)
    for c in (1, 16, 17, 128, 129, 144, 145, 4096, 131_072):
        n = math.ceil(c / b)
        assert pool.blocks_for(c) == n + min(n, 9)
        # the pool's bytes bound the exact KV from above, by less than one block per group plus one slid one
        per_token = oss.kv_bytes_per_token("bf16")
        pool_bytes = pool.blocks_for(c) * b * per_token / 2
        assert oss.kv_bytes(c, "bf16") <= pool_bytes < oss.kv_bytes(c, "bf16") + 3 * b * per_token / 2


def test_a_model_sliding_on_every_layer_holds_at_most_its_window_and_one_without_holds_everything(tmp_path):
    mistral = {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
               "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 32,
               "num_key_value_heads": 8, "sliding_window": 4096, "vocab_size": 32000}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(mistral))
    shape = model_shape(*load_model_config(str(path), tmp_path, "test"))
    pool = KvBlockPool.for_model(shape, 100_000, 16, 1.0)
    assert pool.layout == BlockLayout(0, 1, 257)
    assert [pool.blocks_for(c) for c in (16, 4096, 4097, 32768)] == [1, 256, 257, 257]
    llama = KvBlockPool.for_model(catalog_shape("llama-3.1-8b"), 100_000, 16, 1.0)
    assert llama.layout == BlockLayout() and llama.capacity_blocks == 6250
    assert [llama.blocks_for(c) for c in (16, 17, 32768)] == [1, 2, 2048]


def test_gpt_oss_fits_about_twice_the_sequences_at_long_context():
    oss = catalog_shape("gpt-oss-120b")
    pool = KvBlockPool.for_model(oss, capacity_tokens=16 * 100_000, block_tokens=16, full_block_bytes=1.0)
    full = KvBlockPool(100_000, 16, 1.0)  # every layer global: the pool as it was
    for context, ratio in ((131_072, 2 * 8192 / 8201), (8192, 2 * 512 / 521)):
        with_window = pool.capacity_blocks // pool.blocks_for(context)
        without = full.capacity_blocks // full.blocks_for(context)
        assert with_window == pytest.approx(ratio * without, rel=0.01)


def _batcher(pool, window, share, prompt, output):
    cfg = ContinuousBatcher(kind="continuous", max_batch_size=8, max_batched_tokens=4096, kv_policy="paged")
    return ContinuousBatching(cfg, pool, prompt, output, None, window=window, sliding_share=share)


def test_a_decode_attends_every_position_below_the_window_and_the_global_share_beyond():
    window, share = 128, 0.5
    pool = KvBlockPool(10_000, 16, 1.0, BlockLayout(1, 1, 9))
    prompts, outputs = [60, 100], [300, 150]
    batcher = _batcher(pool, window, share, prompts, outputs)
    for rid in (0, 1):
        batcher.enqueue(rid)
    context = {}
    while (batch := batcher.schedule()) is not None:
        if batch.shape.decode_tokens:
            expected = sum(c - share * max(0, c - window) for c in context.values())
            assert batch.shape.decode_context == pytest.approx(expected, abs=1e-9)
        for rid in list(batcher.decoding):  # blocks held: the closed form of the positions it covers
            assert pool.held[rid] == pool.blocks_for(batcher.span[rid])
            assert batcher.span[rid] >= batcher._context(rid)
        first, finished = batcher.complete(batch)
        for rid in list(context):
            context[rid] += 1
        for rid in first:
            context[rid] = prompts[rid] + 1
        for rid in finished:
            context.pop(rid, None)
    assert pool.used_blocks == 0 and not batcher.attended and batcher.decode_context == 0.0
    # each holds its 9 slid blocks beside its global ones: 32 + 25, where every layer global would take 2 x 39
    assert pool.peak_blocks <= pool.blocks_for(60 + 300) + pool.blocks_for(100 + 150) == 57 < 2 * (23 + 16)


def gpt_oss_scenario(write_scenario, tmp_path, sliding=True):
    model = "gpt-oss-120b"
    if not sliding:  # the same model with every layer global
        _, config = load_model_config("gpt-oss-120b", REPO, "test")
        config = {k: v for k, v in config.items() if k not in ("layer_types", "sliding_window")}
        (tmp_path / "global.json").write_text(json.dumps(config))
        model = str(tmp_path / "global.json")
    return write_scenario({
        "model": model, "deployment": {"tensor_parallel": 1, "weights_dtype": "fp4", "compute_dtype": "fp8",
                                       "kv_dtype": "bf16"},
        "serving.batcher": {"kind": "continuous", "max_batch_size": 256, "max_batched_tokens": 8192,
                            "kv_policy": "paged"},
        "workload": {"arrival": {"kind": "closed_loop", "users": 128, "think_time": "0 s"},
                     "prompt_tokens": {"kind": "fixed", "value": 8192},
                     "output_tokens": {"kind": "fixed", "value": 256}, "num_requests": 256}},
        name=f"oss-{sliding}.yaml")


def test_gpt_oss_holds_and_reads_less_kv_than_with_every_layer_global(write_scenario, tmp_path):
    slid = run(load_scenario(gpt_oss_scenario(write_scenario, tmp_path)))
    full = run(load_scenario(gpt_oss_scenario(write_scenario, tmp_path, sliding=False)))
    a, b = slid.iterations, full.iterations
    # more sequences decode at once (half the layers hold 9 blocks instead of 520)
    assert a["batch_size"].mean() > 1.6 * b["batch_size"].mean()
    # a decode-only iteration of the same batch reads about half the KV: per request attended context
    da, db = a[(a.prefill_tokens == 0) & (a.decode_tokens > 0)], b[(b.prefill_tokens == 0) & (b.decode_tokens > 0)]
    per_request_a = (da.decode_context_tokens / da.decode_tokens).median()
    per_request_b = (db.decode_context_tokens / db.decode_tokens).median()
    assert per_request_a == pytest.approx(per_request_b / 2 + 64, rel=0.02)
    # and serves more, by less than the batch grows: the experts' weight reads are the same for both (1.29x here)
    assert slid.summary["throughput"]["output_tokens_per_s"] > 1.2 * full.summary["throughput"]["output_tokens_per_s"]


def test_run_ahead_gives_the_same_results_with_sliding_window_layers(write_scenario, tmp_path):
    path = gpt_oss_scenario(write_scenario, tmp_path)
    ahead = run(load_scenario(path, ["sim.run_ahead=true", "workload.num_requests=160"]))
    stepped = run(load_scenario(path, ["sim.run_ahead=false", "workload.num_requests=160"]))
    assert ahead.requests.equals(stepped.requests) and ahead.iterations.equals(stepped.iterations)
