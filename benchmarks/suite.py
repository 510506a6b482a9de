"""Simulator speed and scale: for each case, simulated requests per wall-second, SimPy events per second, wall
and CPU seconds and peak memory. Not part of the test run.

    python benchmarks/suite.py                       # every case (about 10 minutes on 2 cores)
    python benchmarks/suite.py --only one-replica-1e5 cluster-4096
    python benchmarks/suite.py --list

Each case runs `simulator.run` in a fresh process, so its peak resident memory (ru_maxrss) is its own; wall
and CPU time cover the run (workload generation, simulation, summary), not writing the output files. The
cluster cases keep the load per replica fixed (Llama-3.1-70B fp8, TP8 inside each HGX H100 node, 3 req/s
and 300 requests per replica, round robin), so their `us/request` column shows how the cost of a simulated
request grows with the cluster. The 64-point sweep's parallel speed-up is benchmarks/bench_sweep.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"


def _h100_cluster(nodes: int) -> dict:
    """`nodes` HGX H100 nodes (NVSwitch inside) on a leaf-spine NDR fabric, one 400G NIC per GPU."""
    return {
        "name": f"h100-{nodes}x8", "chip": "h100-sxm", "nodes": nodes, "chips_per_node": 8,
        "scaleup": {"kind": "switch", "bandwidth_per_dir": "450 GB/s", "hop_latency": "1 us", "source": "hgx-h100"},
        "scaleout": {"kind": "leaf_spine", "nic_bandwidth_per_dir": "50 GB/s", "nodes_per_leaf": 4, "spines": 4,
                     "uplink_bandwidth_per_dir": "400 GB/s", "hop_latency": "0.66 us", "source": "h100-4x8-ndr400"},
    }


def _cluster_case(replicas: int, placement: str = "packed", per_replica: int = 300, nodes: int = 0) -> dict:
    """`replicas` TP8 replicas of 70B fp8 on `nodes` nodes (default: one node each), 3 req/s each."""
    return {
        "name": f"cluster-{replicas * 8}", "seed": 1, "model": "llama-3.1-70b",
        "cluster": _h100_cluster(nodes or replicas),
        "deployment": {"tensor_parallel": 8, "replicas": replicas, "weights_dtype": "fp8", "placement": placement},
        "serving": {"batcher": {"kind": "continuous", "max_batch_size": 256, "max_batched_tokens": 8192}},
        "workload": {"arrival": {"kind": "poisson", "rate": 3.0 * replicas},
                     "prompt_tokens": {"kind": "lognormal", "mean": 1024, "sigma": 0.8, "max": 8192},
                     "output_tokens": {"kind": "lognormal", "mean": 256, "sigma": 0.7, "max": 2048},
                     "num_requests": per_replica * replicas},
    }


def _lpu_case() -> dict:
    """The SRAM-vs-HBM comparison's groq-lpu-int8 design as a plain scenario, at 64 closed-loop users."""
    compare = yaml.safe_load((SCENARIOS / "compare" / "compare-sram-vs-hbm-llama70b.yaml").read_text())
    design = next(d for d in compare["designs"] if d["name"] == "groq-lpu-int8")
    return {"name": "lpu-656", "seed": 1, "model": compare["model"],
            "cluster": str(REPO / "topologies" / f"{design['cluster']}.yaml"), "deployment": design["deployment"],
            "workload": {"arrival": {"kind": "closed_loop", "users": 64},
                         "prompt_tokens": {"kind": "fixed", "value": 1024},
                         "output_tokens": {"kind": "fixed", "value": 256}, "num_requests": 2000}}


# name -> (scenario file, or a function making the scenario mapping; overrides; what it measures)
CASES: dict[str, tuple[Path | Callable[[], dict], list[str], str]] = {
    **{f"one-replica-1e{k}": (SCENARIOS / "default.yaml", [f"workload.num_requests={10 ** k}"],
                              "Llama-3.1-8B on one H100, Poisson 10 req/s, lognormal prompts, 256 output tokens")
       for k in (4, 5, 6)},
    **{f"cluster-{r * 8}": (partial(_cluster_case, r), [], f"{r} replicas of 70B fp8 TP8 on {r} nodes, leaf-spine")
       for r in (1, 8, 64, 512)},
    "cluster-64-of-512": (partial(_cluster_case, 8, nodes=64), [],
                          "the 8 replicas of cluster-64 on a fabric of 64 nodes: 8x the links, all idle"),
    "cluster-4096-2-workers": (partial(_cluster_case, 512), ["sim.workers=2"],
                               "cluster-4096 as 2 replica groups in parallel processes (replica_groups.py)"),
    "cluster-64-strided": (partial(_cluster_case, 8, "strided"), [],
                           "8 replicas whose TP groups span 8 nodes: every all-reduce is flows on the shared fabric"),
    "lpu-656": (_lpu_case, [], "Llama-3.1-70B int8 on 656 LPUs (TP8 x 82 pipeline stages), 64 closed-loop users"),
    "trace-azure-code": (SCENARIOS / "llama70b-hgx-h100-azure-code.yaml", [],
                         "the Azure 2023 code trace slice (3,628 requests) on 70B fp8, HGX H100"),
}


def measure(name: str) -> dict:
    """Run one case in this process."""
    from simulator import load_scenario, run

    source, overrides, _ = CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        path = source if isinstance(source, Path) else Path(tmp) / f"{name}.yaml"
        if not isinstance(source, Path):
            path.write_text(yaml.safe_dump(source(), sort_keys=False))
        scenario = load_scenario(path, overrides)
        start, cpu = time.perf_counter(), time.process_time()
        s = run(scenario).summary
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    requests = s["requests"]["arrived"]
    return {"case": name, "requests": requests, "chips": s["chips"], "wall_s": wall, "cpu_s": cpu,
            "req_per_wall_s": requests / wall, "us_per_request": wall / requests * 1e6,
            "events": s["sim"]["events"], "events_per_s": s["sim"]["events"] / s["sim"]["wall_s"],
            "iterations": s["batch"]["iterations"], "closed_form": s["network"]["closed_form_replicas"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "completed": s["requests"]["completed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(CASES), help="cases to run (default: all)")
    parser.add_argument("--list", action="store_true", help="print the cases and exit")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    if args.list:
        for name, (_, _, what) in CASES.items():
            print(f"{name:>20}  {what}")
        return
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}")
    header = (f"| {'case':<20} | {'chips':>5} | {'requests':>9} | {'wall s':>7} | {'CPU s':>7} | {'req/wall-s':>10} "
              f"| {'us/request':>10} | {'events/s':>9} | {'iterations':>10} | {'peak RSS MB':>11} |")
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    rows = []
    for name in args.only or list(CASES):
        out = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True)
        if out.returncode:
            print(f"| {name:<20} | failed: {out.stderr.strip().splitlines()[-1]} |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"| {name:<20} | {r['chips']:>5} | {r['requests']:>9} | {r['wall_s']:>7.2f} | {r['cpu_s']:>7.2f} "
              f"| {r['req_per_wall_s']:>10.0f} | {r['us_per_request']:>10.1f} | {r['events_per_s']:>9.0f} "
              f"| {r['iterations']:>10} | {r['peak_rss_mb']:>11.0f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
