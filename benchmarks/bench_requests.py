"""Simulator speed on one replica: simulated requests per wall-second, SimPy events/s and peak memory.

    python benchmarks/bench_requests.py [--sizes 10000 100000] [--scenario scenarios/default.yaml]

Each size runs in a fresh process so that its peak resident memory is its own. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def one(scenario: str, n: int, rate: float) -> dict:
    from simulator import load_scenario, run

    loaded = load_scenario(scenario, [f"workload.num_requests={n}", f"workload.arrival.rate={rate}"])
    start, cpu = time.perf_counter(), time.process_time()
    result = run(loaded)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    s = result.summary
    return {
        "requests": n, "wall_s": wall, "cpu_s": cpu, "sim_wall_s": s["sim"]["wall_s"], "events": s["sim"]["events"],
        "iterations": s["batch"]["iterations"], "simulated_s": s["sim"]["simulated_s"],
        "requests_per_wall_s": n / wall, "events_per_wall_s": s["sim"]["events"] / s["sim"]["wall_s"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "completed": s["requests"]["completed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(REPO / "scenarios" / "default.yaml"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rate", type=float, default=10.0, help="arrival rate, requests/s")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.scenario, args.child, args.rate)))
        return
    print(f"# {Path(args.scenario).name} at {args.rate:g} req/s on {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}")
    print(f"{'requests':>9} {'wall s':>8} {'CPU s':>8} {'req/wall-s':>11} {'events/s':>10} {'iterations':>10} "
          f"{'simulated s':>11} {'peak RSS MB':>11}")
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--scenario", args.scenario, "--rate", str(args.rate),
                              "--child", str(n)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['requests']:>9} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} {r['requests_per_wall_s']:>11.0f} "
              f"{r['events_per_wall_s']:>10.0f} {r['iterations']:>10} {r['simulated_s']:>11.0f} "
              f"{r['peak_rss_mb']:>11.0f}")


if __name__ == "__main__":
    main()
