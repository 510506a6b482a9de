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

Whole process, side by side with BLIS (a peer simulator; give the folder of its prebuilt binary):

    python benchmarks/suite.py --blis ../shared/peers/blis [--repeat 3] [--checkout OTHER_TREE ...]

runs BLIS's workloads W1 and W3 (benchmarks/scenarios/blis-w*.yaml) as whole processes, paired and
alternating: `blis run ...` and `infersim run W.yaml -o DIR` (every output a plain run writes; also with
`--png` and `--no-plots`), and prints
the median wall times and their ratio, the median start-up (`import simulator.cli`, `infersim --help`) and
where one infersim run's time goes (import, simulate, tables, plots, report.html). `--checkout` adds the
infersim of another source tree (e.g. a worktree of an older commit) as a further column. `--compiled` first
byte-compiles every timed tree (`compileall`, as installing a package does): where PYTHONDONTWRITEBYTECODE is
set (as on the development machines), a source tree is otherwise compiled anew by every process it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
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


# BLIS's workloads: name -> (our scenario, BLIS's arguments); see the README beside the BLIS binary
BLIS_WORKLOADS = {
    "W1": (REPO / "benchmarks" / "scenarios" / "blis-w1.yaml",
           ["--model", "meta-llama/llama-3.1-8b-instruct", "--hardware", "H100", "--tp", "1",
            "--workload-spec", "blis_fixed_512_128_r5.yaml"]),
    "W3": (REPO / "benchmarks" / "scenarios" / "blis-w3.yaml",
           ["--model", "meta-llama/llama-3.1-70b-instruct", "--hardware", "H100", "--tp", "8",
            "--workload-spec", "blis_fixed_512_128_r20.yaml"]),
}


def _wall(command: Sequence[str], cwd: Path | None = None, env: dict | None = None) -> float:
    """Wall seconds of one whole process (its output discarded; a failure stops the benchmark)."""
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def _infersim(tree: Path | None) -> tuple[list[str], dict]:
    """The command line and environment of `infersim` from this tree or from `tree` (another checkout): both
    run as `python -S -m simulator` with the source tree and this interpreter's site-packages on PYTHONPATH,
    so that an editable install of this tree cannot shadow the other one (run them outside any source tree:
    `-m` puts the working folder first on the path)."""
    site_packages = [p for p in sys.path if p.endswith("site-packages")]
    path = os.pathsep.join([str(tree or REPO), *site_packages])
    return [sys.executable, "-S", "-m", "simulator"], dict(os.environ, PYTHONPATH=path)


def phases(scenario: Path) -> dict:
    """Where one `infersim run` spends its time, measured inside one fresh process, phase by phase."""
    start = time.perf_counter()
    from simulator.config.load import load_scenario
    from simulator.results import plots
    from simulator.results.run_html import HTML_NAME, write_run_html
    from simulator.run import run
    imported = time.perf_counter()
    result = run(load_scenario(scenario, []))
    simulated = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        result.requests.to_parquet(out / "requests.parquet", index=False)
        result.iteration_store.write_parquet(out / "iterations.parquet")
        result.links.to_parquet(out / "links.parquet", index=False)
        tables = time.perf_counter()
        plots.write_plots(result.summary, result.requests, result.iteration_store, result.links, out / "plots")
        plotted = time.perf_counter()
        write_run_html(out / HTML_NAME, result.summary, result.requests, result.iteration_store, result.links)
        html = time.perf_counter()
        result.write(out / "run")
        written = time.perf_counter()
    return {"import": imported - start, "simulate": simulated - imported, "tables": tables - simulated,
            "PNG plots (--png only)": plotted - tables, "report.html": html - plotted,
            "every output of a plain run, as it writes them (tables, memory, report.html; iterations.parquet in a "
            "thread)": written - html}


def side_by_side(blis: Path, repeat: int, trees: list[Path], compiled: bool = False) -> None:
    """Paired, alternating whole-process runs of BLIS and infersim on W1 and W3; medians and ratios."""
    if compiled:
        for tree in [REPO, *trees]:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "simulator")], check=True,
                           stdout=subprocess.DEVNULL)
    columns = ["this tree", *(t.name for t in trees)]
    runs = [("this tree", None, []), ("this tree, --png", None, ["--png"]),
            ("this tree, --no-plots", None, ["--no-plots"]),
            *((t.name, t, []) for t in trees)]  # (column, source tree, extra arguments)
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.2f}, median of {repeat}, "
          f"bytecode {'compiled first' if compiled else 'as found'}"
          f"{', PYTHONDONTWRITEBYTECODE set' if os.environ.get('PYTHONDONTWRITEBYTECODE') else ''}")
    print("| workload | BLIS s | " + " | ".join(f"infersim ({c}) s | ratio" for c, _, _ in runs) + " |")
    print("|---|---:|" + "---:|---:|" * len(runs))
    for name, (scenario, blis_args) in BLIS_WORKLOADS.items():
        times: dict[str, list[float]] = {c: [] for c in ["BLIS", *(c for c, _, _ in runs)]}
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                times["BLIS"].append(_wall(
                    [str(blis / "blis"), "run", *blis_args, "--latency-model", "trained-physics",
                     "--num-requests", "10000", "--seed", "42", "--cache-signal-delay", "0",
                     "--metrics-path", f"{tmp}/m.json"], cwd=blis))
                for k, (column, tree, extra) in enumerate(runs):
                    command, env = _infersim(tree)
                    times[column].append(_wall([*command, "run", str(scenario), "-o", f"{tmp}/{k}", *extra], tmp, env))
        median = {c: statistics.median(v) for c, v in times.items()}
        print(f"| {name} | {median['BLIS']:.2f} | "
              + " | ".join(f"{median[c]:.2f} | {median[c] / median['BLIS']:.2f}x" for c, _, _ in runs) + " |",
              flush=True)
    print("\n| start-up (median s) | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for what, argv in (("python -c 'import simulator.cli'", ["-c", "import simulator.cli"]),
                       ("infersim --help", ["-m", "simulator", "--help"])):
        row = []
        for tree in [None, *trees]:
            _, env = _infersim(tree)
            row.append(statistics.median(_wall([sys.executable, "-S", *argv], Path(tempfile.gettempdir()), env)
                                         for _ in range(repeat)))
        print(f"| {what} | " + " | ".join(f"{t:.2f}" for t in row) + " |")
    print("\n| one run, this tree (s) | " + " | ".join(BLIS_WORKLOADS) + " |")
    print("|---|" + "---:|" * len(BLIS_WORKLOADS))
    split = {}
    for name, (scenario, _) in BLIS_WORKLOADS.items():
        out = subprocess.run([sys.executable, __file__, "--phases", str(scenario)], capture_output=True, text=True,
                             check=True)
        split[name] = json.loads(out.stdout.strip().splitlines()[-1])
    for phase in split["W1"]:
        print(f"| {phase} | " + " | ".join(f"{split[w][phase]:.2f}" for w in BLIS_WORKLOADS) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(CASES), help="cases to run (default: all)")
    parser.add_argument("--list", action="store_true", help="print the cases and exit")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--blis", type=Path, help="instead: whole-process side by side with BLIS (its folder)")
    parser.add_argument("--repeat", type=int, default=3, help="with --blis: paired runs per workload (median)")
    parser.add_argument("--checkout", type=Path, nargs="*", default=[],
                        help="with --blis: also time the infersim of these source trees")
    parser.add_argument("--compiled", action="store_true",
                        help="with --blis: byte-compile the timed trees first, as an installed package is")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--phases", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phases:
        print(json.dumps(phases(args.phases)))
        return
    if args.blis:
        side_by_side(args.blis.resolve(), args.repeat, [t.resolve() for t in args.checkout], args.compiled)
        return
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
