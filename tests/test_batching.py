"""Batching policies as engines behave: static vs continuous, prefill priority, chunked prefill."""

import pytest

from simulator import load_scenario, run


def trace_scenario(write_scenario, tmp_path, rows, batcher, name="s.yaml"):
    """A scenario replaying an Azure-format trace written from (seconds, prompt, output) rows."""
    csv = tmp_path / "trace.csv"
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:00:{t:010.7f},{p},{o}\n" for t, p, o in rows))
    return write_scenario({"serving.batcher": batcher,
                           "workload": {"arrival": {"kind": "trace", "format": "azure", "path": str(csv)}}},
                          name=name)


def test_a_late_request_waits_for_a_static_batch_but_joins_a_continuous_one_next_iteration(write_scenario,
                                                                                           tmp_path):
    rows = [(0.0, 200, 400), (0.5, 200, 10)]
    cont = run(load_scenario(trace_scenario(write_scenario, tmp_path, rows,
                                            {"kind": "continuous", "max_batch_size": 8}, "c.yaml")))
    stat = run(load_scenario(trace_scenario(write_scenario, tmp_path, rows,
                                            {"kind": "static", "max_batch_size": 8}, "s.yaml")))
    c, s = cont.requests.set_index("request_id"), stat.requests.set_index("request_id")
    longest_iteration = cont.iterations["duration_s"].max()
    assert c.loc[1, "queue_s"] <= longest_iteration  # joins at the next iteration boundary
    assert s.loc[1, "admit_s"] >= s.loc[0, "finish_s"]  # waits for the whole batch to finish
    assert s.loc[1, "ttft_s"] > 10 * c.loc[1, "ttft_s"]


def test_static_batch_starts_when_full_or_when_the_oldest_has_waited_max_wait(write_scenario, tmp_path):
    rows = [(0.0, 100, 20), (0.2, 100, 20), (0.3, 100, 20)]
    result = run(load_scenario(trace_scenario(write_scenario, tmp_path, rows,
                                              {"kind": "static", "max_batch_size": 4, "max_wait": "1 s"})))
    assert result.requests["admit_s"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert result.iterations["batch_size"].max() == 3
    full = run(load_scenario(trace_scenario(write_scenario, tmp_path, rows,
                                            {"kind": "static", "max_batch_size": 3, "max_wait": "1 s"},
                                            "full.yaml")))
    assert full.requests["admit_s"].tolist() == pytest.approx([0.3, 0.3, 0.3])  # full at the third arrival


def test_chunked_prefill_bounds_iterations_by_the_budget_and_cuts_tpot_tails(write_scenario):
    long_prompts = {"workload.prompt_tokens": {"kind": "uniform", "low": 6000, "high": 8000},
                    "workload.output_tokens": {"kind": "fixed", "value": 200},
                    "workload.arrival": {"kind": "poisson", "rate": "2 /s"}, "workload.num_requests": 120}
    chunked = run(load_scenario(write_scenario({**long_prompts, "serving.batcher": {
        "kind": "continuous", "max_batch_size": 64, "max_batched_tokens": 2048, "chunked_prefill": True}},
        name="chunked.yaml")))
    whole = run(load_scenario(write_scenario({**long_prompts, "serving.batcher": {
        "kind": "continuous", "max_batch_size": 64, "max_batched_tokens": 16384, "chunked_prefill": False}},
        name="whole.yaml")))
    it = chunked.iterations
    assert (it["prefill_tokens"] + it["decode_tokens"]).max() <= 2048
    # a request's TPOT averages its pauses over its 200 tokens, so the tail it shortens is small (7% here)
    assert chunked.summary["tpot_s"]["p99"] < whole.summary["tpot_s"]["p99"]

    def decode_gap_p99(iterations):
        decoding = iterations[iterations["decode_tokens"] > 0]
        return decoding["start_s"].diff().quantile(0.99)

    # a whole 6-8k token prefill pauses every decoding request; a chunk of 2,048 tokens barely does
    assert whole.iterations["duration_s"].max() > 3 * it["duration_s"].max()
    assert decode_gap_p99(whole.iterations) > 2 * decode_gap_p99(it)


def test_prefill_first_pauses_decodes_and_decode_first_never_does(write_scenario):
    base = {"workload.arrival": {"kind": "poisson", "rate": "20 /s"}}
    first = run(load_scenario(write_scenario({**base, "serving.batcher.priority": "prefill_first"},
                                             name="p.yaml"))).iterations
    decode = run(load_scenario(write_scenario({**base, "serving.batcher.priority": "decode_first"},
                                              name="d.yaml"))).iterations
    assert not ((first["prefill_tokens"] > 0) & (first["decode_tokens"] > 0)).any()
    assert ((decode["prefill_tokens"] > 0) & (decode["decode_tokens"] > 0)).any()
