"""Parallel speed-up of a sweep: wall time of one 64-point sweep with 1, 2 and all workers.

    python benchmarks/bench_sweep.py [--requests 2000] [--workers 1 2 0] [--repeat 3] [--backend local|ray]

The sweep is 8 batch caps x 8 arrival rates of Llama-3.1-70B fp8 on an HGX H100 node (the shipped base
scenario). Each worker count runs in a fresh process from an empty output folder, so nothing is cached and
each pays its own start-up (process pool or Ray), as a user would; 0 workers means all CPUs. Speed-up is
against the first worker count given; each figure is the best of --repeat runs (other load on the machine
only slows runs down). Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def write_sweep(folder: Path, requests: int) -> Path:
    path = folder / "bench-64.yaml"
    path.write_text(yaml.safe_dump({
        "name": "bench-64",
        "base": str(REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml"),
        "seed": 1,
        "overrides": [f"workload.num_requests={requests}"],
        "axes": {"serving.batcher.max_batch_size": [16, 24, 32, 48, 64, 96, 128, 256],
                 "workload.arrival.rate": [4, 8, 12, 16, 20, 24, 28, 32]},
    }, sort_keys=False))
    return path


def one(path: Path, out: Path, backend: str, workers: int) -> dict:
    """One sweep in this process, timed from the call to the written table (start-up included)."""
    from simulator import sweep

    start = time.perf_counter()
    result = sweep(path, out, backend=backend, workers=workers, plots=False, progress=False)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "points_s": float(result.table["sim.wall_s"].sum()), "ok": result.count("ok")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per point")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 0])
    parser.add_argument("--backend", default="local", choices=["local", "ray"])
    parser.add_argument("--repeat", type=int, default=3, help="runs per worker count; the fastest counts")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(Path(args.child[0]), Path(args.child[1]), args.backend, args.workers[0])))
        return
    cpus = os.cpu_count() or 1
    print(f"# 64-point sweep, {args.requests} requests per point, backend {args.backend}, {cpus} CPUs "
          f"({platform.processor() or platform.machine()}), python {platform.python_version()}")
    print(f"{'workers':>9} {'wall s':>8} {'speed-up':>8} {'efficiency':>10} {'sum of point s':>14} {'ok':>4}")
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sweep(Path(tmp), args.requests)
        first = None
        for workers in args.workers:
            n = workers or cpus
            runs = []
            for i in range(args.repeat):
                command = [sys.executable, __file__, "--backend", args.backend, "--workers", str(n),
                           "--child", str(path), str(Path(tmp) / f"out-{workers}-{i}")]
                out = subprocess.run(command, capture_output=True, text=True, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = min(runs, key=lambda run: run["wall_s"])
            first = first or r["wall_s"]
            speedup = first / r["wall_s"]
            label = f"{n}" + (" (all)" if workers == 0 else "")
            print(f"{label:>9} {r['wall_s']:>8.2f} {speedup:>8.2f} {speedup / n:>10.2f} "
                  f"{r['points_s']:>14.2f} {r['ok']:>4}")


if __name__ == "__main__":
    main()
