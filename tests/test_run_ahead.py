"""Run-ahead (sim.run_ahead) commits decode iterations that nothing can interrupt without an event each: it
must give exactly the results of one event per iteration, in every configuration that uses it."""

import json

import numpy as np
import pytest
from conftest import REPO

from simulator import load_scenario, run

CASES = {
    "poisson": {},
    "paged-recompute": {"serving.batcher.kv_policy": "paged", "deployment.memory_utilization": 0.25,
                        "workload.arrival": {"kind": "poisson", "rate": "200 /s"}},
    "paged-low-load": {"serving.batcher": {"kind": "continuous", "max_batch_size": 64, "max_batched_tokens": 2048,
                                           "chunked_prefill": True, "kv_policy": "paged"},
                       "workload.arrival": {"kind": "poisson", "rate": "5 /s"}},
    "paged-long-decodes": {"serving.batcher.kv_policy": "paged", "workload.num_requests": 40,
                           "workload.output_tokens": {"kind": "fixed", "value": 700},
                           "workload.arrival": {"kind": "poisson", "rate": "0.5 /s"}},
    "paged-blocks-run-out": {"serving.batcher.kv_policy": "paged", "deployment.memory_utilization": 0.25,
                             "workload.output_tokens": {"kind": "fixed", "value": 1500},
                             "workload.arrival": {"kind": "poisson", "rate": "4 /s"}, "workload.num_requests": 60},
    "paged-swap": {"serving.batcher": {"kind": "continuous", "max_batch_size": 64, "max_batched_tokens": 4096,
                                       "kv_policy": "paged", "preemption": "swap"},
                   "cluster": str(REPO / "topologies" / "dgx-b200.yaml"),
                   "deployment.memory_utilization": 0.1, "workload.output_tokens": {"kind": "fixed", "value": 1500},
                   "workload.arrival": {"kind": "poisson", "rate": "4 /s"}, "workload.num_requests": 60},
    "tp-paged": {"cluster": str(REPO / "topologies" / "hgx-h100.yaml"), "deployment.tensor_parallel": 4,
                 "serving.batcher.kv_policy": "paged", "workload.arrival": {"kind": "poisson", "rate": "5 /s"}},
    "static": {"serving.batcher": {"kind": "static", "max_batch_size": 32, "max_wait": "50 ms"}},
    "prefill-first": {"serving.batcher.priority": "prefill_first"},
    "closed-loop-think": {"workload.arrival": {"kind": "closed_loop", "users": 16, "think_time": "0.3 s"}},
    "closed-loop": {"workload.arrival": {"kind": "closed_loop", "users": 16, "think_time": "0 s"}},
    "max-time": {"sim.max_time": "4 s"},
    "speculative": {"serving.speculative": {"tokens": 3, "acceptance": 0.7, "draft_model": "llama-2-7b"}},
    "gamma-bursty": {"workload.arrival": {"kind": "gamma", "rate": "30 /s", "cv": 4}},
    "replicas-round-robin": {"cluster": str(REPO / "topologies" / "hgx-h100.yaml"), "deployment.replicas": 4,
                             "workload.arrival": {"kind": "poisson", "rate": "60 /s"}},
    "replicas-least-tokens": {"cluster": str(REPO / "topologies" / "hgx-h100.yaml"), "deployment.replicas": 4,
                              "serving.router": {"kind": "least_outstanding_tokens"},
                              "workload.arrival": {"kind": "poisson", "rate": "60 /s"}},
    "tp-pp": {"cluster": str(REPO / "topologies" / "hgx-h100.yaml"), "deployment.tensor_parallel": 2,
              "deployment.pipeline_parallel": 2, "deployment.replicas": 2},
    "pp-in-flight": {"model": "llama-3.1-70b", "cluster": str(REPO / "topologies" / "hgx-h100.yaml"),
                     "deployment": {"tensor_parallel": 1, "pipeline_parallel": 4, "micro_batches": 8,
                                    "weights_dtype": "fp8"},
                     "workload.arrival": {"kind": "poisson", "rate": "4 /s"}, "workload.num_requests": 60},
    "moe": {"model": "mixtral-8x7b", "cluster": str(REPO / "topologies" / "hgx-h100.yaml"),
            "deployment.tensor_parallel": 2},
    "weight-streaming": {"model": "llama-3.1-70b", "cluster": {"name": "sn40l", "chip": "sambanova-sn40l",
                                                                "chips_per_node": 1},
                         "deployment": {"weights_dtype": "bf16", "weight_streaming": True},
                         "workload.arrival": {"kind": "poisson", "rate": "1 /s"}, "workload.num_requests": 20},
    "lpu-pipeline": {"model": "llama-3.1-8b", "cluster": str(REPO / "topologies" / "groq-rack-720.yaml"),
                     "deployment": {"tensor_parallel": 8, "pipeline_parallel": 9, "weights_dtype": "int8",
                                    "memory_utilization": 1.0},
                     "workload.num_requests": 60},
}


def _both(path):
    ahead = run(load_scenario(path, ["sim.run_ahead=true"]))
    stepped = run(load_scenario(path, ["sim.run_ahead=false"]))
    return ahead, stepped


@pytest.mark.parametrize("name", CASES)
def test_run_ahead_gives_exactly_the_results_of_one_event_per_iteration(write_scenario, name):
    ahead, stepped = _both(write_scenario(CASES[name]))
    for a, b in ((ahead.requests, stepped.requests), (ahead.iterations, stepped.iterations)):
        assert a.equals(b)
    if name == "tp-pp":
        # pipelined replicas whose own transfers would share bytes on a link run those iterations as flows;
        # another replica's bookings ahead of the clock may widen the link buckets (LinkHistogram doubles
        # them) before or after such a flow adds its bytes, so a bucket's sum may differ in its last bit
        a, b = ahead.links, stepped.links
        assert a.drop(columns=["bytes", "utilization", "energy_j"]).equals(
            b.drop(columns=["bytes", "utilization", "energy_j"]))
        assert np.allclose(a["bytes"], b["bytes"], rtol=1e-15, atol=0.0)
    else:
        assert ahead.links.equals(stepped.links)
    strip = lambda s: json.dumps({k: v for k, v in s.items() if k != "sim"}, sort_keys=True)  # noqa: E731
    assert strip(ahead.summary) == strip(stepped.summary)


def test_run_ahead_saves_events_where_it_applies(write_scenario):
    ahead, stepped = _both(write_scenario({"workload.output_tokens": {"kind": "fixed", "value": 256},
                                           "workload.arrival": {"kind": "poisson", "rate": "2 /s"}}))
    assert ahead.summary["sim"]["events"] < stepped.summary["sim"]["events"] / 4
    assert len(ahead.iterations) == len(stepped.iterations)


def test_independent_replica_groups_in_parallel_processes_give_the_one_process_results(write_scenario):
    path = write_scenario({"cluster": str(REPO / "topologies" / "hgx-h100.yaml"), "deployment.replicas": 4,
                           "workload.arrival": {"kind": "poisson", "rate": "60 /s"}})
    one = run(load_scenario(path))
    split = run(load_scenario(path, ["sim.workers=2"]))
    assert split.summary["sim"]["replica_groups"] == 2 and one.summary["sim"]["replica_groups"] == 1
    assert split.requests.equals(one.requests) and split.iterations.equals(one.iterations)
    strip = lambda s: json.dumps({k: v for k, v in s.items() if k != "sim"}, sort_keys=True)  # noqa: E731
    assert strip(split.summary) == strip(one.summary)
    load_aware = run(load_scenario(path, ["sim.workers=2", "serving.router.kind=shortest_queue"])).summary["sim"]
    assert load_aware["replica_groups"] == 1
    assert load_aware["replica_groups_note"] == ("simulated in one process: the router is load-aware: replicas "
                                                 "interact through it")


def test_a_wake_up_lands_exactly_where_the_committed_iterations_end():
    """Some instants cannot be reached from `now` by one float addition (now + d rounds past them for every
    d): exact_delay then stops short, and the replica closes the last ulps with an exact second delay."""
    from simulator.engine.replica import exact_delay

    now, t = 0.04960210880375745, 0.11500226562442221
    assert all(now + d != t for d in (t - now, exact_delay(now, t)))
    d = exact_delay(now, t)
    assert now + d < t and (now + d) + (t - (now + d)) == t


def test_steady_decode_is_recorded_in_spans_through_kv_block_boundaries(write_scenario, monkeypatch):
    """Between two changes of a batch (paged KV: blocks taken on the way), decode iterations are timed and
    recorded a span at a time: far fewer records than iterations, long spans timed as arrays."""
    from simulator.engine import run_ahead
    from simulator.results.iteration_store import IterationStore

    spans, arrays = [], []
    append, time_arrays = IterationStore.append_span, run_ahead._time_arrays
    monkeypatch.setattr(IterationStore, "append_span", lambda self, span: (spans.append(len(span.ends)),
                                                                           append(self, span)))
    monkeypatch.setattr(run_ahead, "_time_arrays", lambda *a: (arrays.append(a[7]), time_arrays(*a))[1])
    result = run(load_scenario(write_scenario(CASES["paged-long-decodes"])))
    decode_only = int((result.iterations["prefill_tokens"] == 0).sum())
    assert sum(spans) <= decode_only and len(spans) * 20 < sum(spans)
    assert arrays and max(spans) > 100
    assert result.iterations["kv_blocks_used"].diff().gt(0).sum() > 2 * len(result.requests)  # blocks grew inside
