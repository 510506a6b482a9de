"""One large run as independent groups of replicas, simulated in parallel processes and merged.

Replicas that share no link (each is timed in closed form) and receive requests by round robin (blind to
load, so request i goes to replica i mod n whatever happens) never influence each other: replica r's
results depend only on the requests r, r + n, r + 2n, ... Such a cluster is cut into `sim.workers`
contiguous groups of replicas; each process simulates its group with its requests (every arrival at exactly
the instant the whole run would process it), and the records are merged: per-request fields by request id,
iteration rows in the order they ended, link buckets and byte counters summed. The result equals the one-
process run (link bytes up to float rounding). `summary.json` says when this shortcut was taken
(`sim.replica_groups`), or why it was not (`sim.replica_groups_note`).
"""

from __future__ import annotations

import multiprocessing
import signal
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from simulator.config.load import Scenario
from simulator.engine.cluster import Cluster
from simulator.hardware.prepare import prepare
from simulator.serving.router import RoundRobinRouter
from simulator.workload.arrivals import generate

PER_REQUEST = ("replica", "admit_s", "first_token_s", "finish_s", "status", "preemptions", "kv_transfer_bytes",
               "prefix_hit_tokens", "drafted_tokens", "accepted_tokens")


def split(cluster: Cluster, workers: int) -> tuple[list[list[int]], str]:
    """(groups of replica indices, '') when the run can be split over `workers` processes, else ([], why)."""
    n = len(cluster.replicas)
    why = ("one process asked (sim.workers: 1)" if workers <= 1 else
           "one replica" if n == 1 else
           "prefill and decode are disaggregated (KV-caches move between replicas)" if cluster.disaggregated else
           "serving.kv_offload (each replica's host tier is counted in this process)"
           if cluster.spec.serving.kv_offload is not None else
           "closed-loop users (a user's next request goes to any replica)" if cluster.requests.closed_loop_users else
           "the router is load-aware: replicas interact through it" if not isinstance(cluster.router,
                                                                                     RoundRobinRouter) else
           "replicas share links (or time collectives as flows)" if cluster.private_replicas < n else "")
    if why:
        return [], why
    size = -(-n // min(workers, n))
    return [list(range(lo, min(lo + size, n))) for lo in range(0, n, size)], ""


def simulate(scenario: Scenario, cluster: Cluster, groups: list[list[int]],
             watch: Callable[[float, int], bool] | None = None) -> tuple[float, bool]:
    """Simulate each group in its own process and merge the records into `cluster` (built, never run).
    Returns the simulated span (when the last group ended) and whether `watch` stopped the groups early:
    each then stops between two of its events, so what the merge holds is partial but consistent."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    stop = context.Event()
    with tempfile.TemporaryDirectory(prefix="infersim-groups-") as folder:
        rows = [Path(folder) / f"group-{i}.npy" for i in range(len(groups))]
        pool = ProcessPoolExecutor(max_workers=len(groups), mp_context=context, initializer=_worker,
                                   initargs=(stop,))
        finished = False
        try:
            futures = [pool.submit(simulate_group, scenario, group, path) for group, path in zip(groups, rows)]
            while not all(f.done() for f in futures):
                wait(futures, timeout=WATCH_S)
                if watch is not None and not stop.is_set() and watch(0.0, 0):
                    stop.set()  # the first Ctrl-C or SIGTERM: every group stops where it is
            records = [f.result() for f in futures]
            finished = True
        finally:
            processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
            pool.shutdown(wait=finished, cancel_futures=True)
            if not finished:  # a second interrupt or a failure: the workers stop now, none outlives the run
                for process in processes:
                    process.kill()
                    process.join()
        cluster.collector.iterations.merge(rows)
    c, network = cluster.collector, cluster.network
    for record in records:
        rids = record["rids"]
        for name in PER_REQUEST:
            np.frombuffer(getattr(c, name), dtype=record[name].dtype)[rids] = record[name]
        for rid, reason in zip(rids.tolist(), record["drop_reason"]):
            c.drop_reason[rid] = reason
        c.arrived += record["arrived"]
        c.completed += record["completed"]
        c.dropped += record["dropped"]
        c.events += record["events"]
        network.merge(record["network"])
    return max(record["span"] for record in records), stop.is_set()


WATCH_S = 0.2  # how often the parent asks `watch` while the groups run
_STOP: Any = None  # in a worker: the run's stop event


def _worker(stop: Any) -> None:
    """Worker initializer: Ctrl-C at the terminal reaches the whole process group; the parent decides (it
    sets `stop` for a clean partial stop, or kills the workers)."""
    global _STOP
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STOP = stop


def simulate_group(scenario: Scenario, replicas: list[int], rows: Path) -> dict[str, Any]:
    """Worker: simulate `replicas` with their requests; save their iteration rows to `rows` (.npy) and return
    the other records (picklable)."""
    spec = scenario.spec
    prepared = prepare(scenario)
    requests = generate(spec.workload, spec.seed)
    cluster = Cluster(simpy.Environment(), spec, prepared.model, prepared.pools, prepared.graph, requests,
                      prepared.drafter, scenario.chip.efficiency.collective, only_replicas=frozenset(replicas))
    stop = _STOP
    cluster.run(spec.sim.max_time, None if stop is None else lambda now, done: stop.is_set())
    cluster.check()
    c = cluster.collector
    rids = np.flatnonzero(np.isin(np.arange(len(requests)) % len(cluster.entry), replicas))
    record: dict[str, Any] = {name: np.asarray(getattr(c, name))[rids] for name in PER_REQUEST}
    record.update(rids=rids, drop_reason=[c.drop_reason[r] for r in rids.tolist()], arrived=c.arrived,
                  completed=c.completed, dropped=c.dropped, events=c.events + cluster.network.events,
                  network=cluster.network.records(), span=cluster.env.now)
    c.iterations.save_rows(rows)
    return record
