"""Simulator cost as the cluster grows: simulated requests per wall-second for 1, 8 and 64 replicas of
Llama-3.1-70B (fp8, TP8 per HGX H100 node) on a leaf-spine NDR fabric, at a fixed load per replica; and the
same 8 replicas on a fabric with 8x as many (idle) nodes, to show idle links cost nothing.

    python benchmarks/bench_cluster.py [--per-replica 300] [--shared]

--shared places each replica's TP group across nodes (strided), so every all-reduce crosses the shared
fabric as flows: the contended, event-heavy case.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import yaml

from simulator import load_scenario, run

REPO = Path(__file__).resolve().parent.parent


def cluster(nodes: int) -> dict:
    return {
        "name": f"h100-{nodes}x8", "chip": "h100-sxm", "nodes": nodes, "chips_per_node": 8,
        "scaleup": {"kind": "switch", "bandwidth_per_dir": "450 GB/s", "hop_latency": "1 us", "source": "hgx-h100"},
        "scaleout": {"kind": "leaf_spine", "nic_bandwidth_per_dir": "50 GB/s", "nodes_per_leaf": 4, "spines": 4,
                     "uplink_bandwidth_per_dir": "400 GB/s", "hop_latency": "0.66 us", "source": "h100-4x8-ndr400"},
    }


def scenario(replicas: int, nodes: int, per_replica: int, shared: bool) -> dict:
    return {
        "name": f"bench-{replicas}x-{nodes}n", "seed": 1, "model": "llama-3.1-70b", "cluster": cluster(nodes),
        "deployment": {"tensor_parallel": 8, "replicas": replicas, "weights_dtype": "fp8",
                       "placement": "strided" if shared else "packed"},
        "serving": {"batcher": {"kind": "continuous", "max_batch_size": 256, "max_batched_tokens": 8192}},
        "workload": {"arrival": {"kind": "poisson", "rate": 3.0 * replicas},
                     "prompt_tokens": {"kind": "lognormal", "mean": 1024, "sigma": 0.8, "max": 8192},
                     "output_tokens": {"kind": "lognormal", "mean": 256, "sigma": 0.7, "max": 2048},
                     "num_requests": per_replica * replicas},
    }


def measure(replicas: int, nodes: int, per_replica: int, shared: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.yaml"
        path.write_text(yaml.safe_dump(scenario(replicas, nodes, per_replica, shared)))
        loaded = load_scenario(path)
        start = time.perf_counter()
        s = run(loaded).summary
        wall = time.perf_counter() - start
    n = per_replica * replicas
    return {"replicas": replicas, "chips": nodes * 8, "links": None, "requests": n, "wall_s": wall,
            "req_per_wall_s": n / wall, "us_per_request": wall / n * 1e6, "events": s["sim"]["events"],
            "closed_form": s["network"]["closed_form_replicas"], "tpot_p50_ms": s["tpot_s"]["p50"] * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-replica", type=int, default=300)
    parser.add_argument("--shared", action="store_true")
    args = parser.parse_args()
    print(f"# {platform.machine()}, python {platform.python_version()}, {args.per_replica} requests per replica, "
          f"{'TP groups across nodes (flows)' if args.shared else 'TP8 inside each node'}")
    print(f"{'replicas':>8} {'chips':>6} {'requests':>9} {'wall s':>8} {'req/wall-s':>10} {'us/request':>10} "
          f"{'events':>9} {'closed-form':>11} {'TPOT p50 ms':>11}")
    cases = [(1, 8), (8, 8), (64, 64), (8, 64)]
    if args.shared:
        cases = [(1, 8), (8, 8), (8, 64)]
    for replicas, nodes in cases:
        r = measure(replicas, nodes, args.per_replica, args.shared)
        print(f"{r['replicas']:>8} {r['chips']:>6} {r['requests']:>9} {r['wall_s']:>8.2f} {r['req_per_wall_s']:>10.0f} "
              f"{r['us_per_request']:>10.0f} {r['events']:>9} {r['closed_form']:>11} {r['tpot_p50_ms']:>11.2f}")


if __name__ == "__main__":
    main()
