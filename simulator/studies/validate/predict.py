"""`infersim validate`: simulate published measurements and compare the predicted metric with the measured.

Each case (cases.py) becomes an inline scenario: the case's model and chip, a cluster resized from
the chip's shipped topology (or built from its catalog ports), the row's deployment, fixed request lengths at
the row's means and a load that matches its mode:

- offline: every request at t = 0; concurrency: closed loop with `concurrency` users. Both run twice, with 2
  and 4 batches of requests, and the throughput is the difference (`marginal_rate`): the saturated steady
  state MLPerf Offline's 24k samples measure, without ramp-up and drain;
- rate: Poisson at `rate_per_s`, throughput from 20% of the arrival span to the last arrival;
- batch: one static batch of `concurrency` requests, prefilled at once, as gptSessionBenchmark runs;
- a benchmark procedure the notes state (`procedure`: InferenceMAX, `vllm bench serve`) runs as it ran: N
  prompts once through the closed loop, measured over the whole run, lengths drawn as its client drew them.

The serving engine is the one the notes name (`serving_engine`), the compute dtype the weights' when the
chip has a peak for it, else 16 bits (`compute_dtype`).

Serving caps (engine max batch, max_num_tokens) come from the row's notes; "runtime-chosen" caps let the KV
capacity bound the batch. A case the engine cannot express is "not simulated" with a one-line reason; no
number is ever made up for it. The efficiencies are the catalog's (one set per chip), or those of a chip the
caller passes (`infersim calibrate` fits them that way).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from simulator.config import limits
from simulator.config.cluster import ChipSpec
from simulator.config.fields import DType
from simulator.config.load import Scenario, find_dir, load_chip, load_model_config, read_yaml
from simulator.config.load import validate as validate_spec
from simulator.config.scenario import ScenarioSpec
from simulator.errors import InfersimError, ScenarioError
from simulator.hardware.model import model_shape
from simulator.hardware.placement import plan_deployment
from simulator.hardware.topology import prime_factors
from simulator.results.run_result import RunResult
from simulator.run import run
from simulator.studies.points import in_processes
from simulator.studies.validate.bounds import speed_of_light
from simulator.studies.validate.cases import Case

TOPOLOGIES = find_dir("topologies", Path(__file__).resolve().parent)
TEMPLATES = {"h100-sxm": "hgx-h100", "h200-sxm": "hgx-h200", "b200": "dgx-b200", "gb200": "gb200-nvl72",
             "mi300x": "mi300x-platform", "tpu-v5e": "tpu-v5e-256", "tpu-v5p": "tpu-v5p-64",
             "groq-lpu": "groq-rack-720", "cerebras-wse3": "cerebras-cs3-4"}
WAVES = (2, 4)            # offline, closed loop: batches of requests in the two runs whose difference counts
RATE_SPAN_S = 40.0        # seconds of Poisson arrivals for rate cases
THROUGHPUT_METRICS = ("output_tokens_per_s", "requests_per_s")
DEFAULT_BATCH, DEFAULT_TOKENS = 256, 8192  # infersim's batcher defaults, used when the notes give no cap
FIT_SOURCES = ("mlperf", "vendor-doc", "paper")  # and first-party benchmark runs scored at 25% (fit_source)
MAX_BUBBLE = 0.2  # cases with more pipeline bubble (share of simulated busy time) are not fitted on


class Unsupported(Exception):
    """The engine cannot express this case; the message is the one-line reason shown in the report."""


@dataclass(frozen=True)
class Outcome:
    """A case's prediction (None when not simulated), the bound physics puts on its metric, and how it ran."""
    case: Case
    predicted: float | None
    statistic: str
    bound: float | None
    reason: str = ""          # why it was not simulated
    approximations: str = ""  # where the simulated setting differs from the row
    compute_dtype: str = ""
    max_batch: int | None = None
    num_requests: int | None = None
    shares: dict[str, float | None] | None = None  # the longer run's bottleneck_share (summary.json)
    wall_s: float = 0.0

    @property
    def error(self) -> float | None:
        return None if self.predicted is None else self.predicted / self.case.value - 1.0

    @property
    def within(self) -> bool:
        return self.error is not None and abs(self.error) <= self.case.tolerance + 1e-12

    @property
    def role(self) -> str:
        """"fit" when `infersim calibrate` fits efficiencies on this case, else "check (why)". Not fitted on:
        loose sources, cases not simulated or approximated, and cases mostly pipeline bubble (the engine
        fills and drains its pipeline every iteration; TensorRT-LLM keeps micro-batches in flight), an
        engine error a compute efficiency must not absorb."""
        bubble = (self.shares or {}).get("bubble") or 0.0
        why = ("source" if not fit_source(self.case)
               else "not simulated" if self.predicted is None
               else "approximated" if self.approximations
               else "pipeline bubble" if bubble > MAX_BUBBLE else "")
        return f"check ({why})" if why else "fit"


def fit_source(case: Case) -> bool:
    """Measured tightly enough to fit on: MLPerf, vendor documentation, papers, and first-party benchmark runs
    on dedicated hardware that the cases file scores at 25% or better (InferenceMAX). Vendor claims and
    third-party runs over a public API (40%) are checks only."""
    return case.source_kind in FIT_SOURCES or (case.source_kind == "benchmark-repo" and case.tolerance <= 0.25)


# ---------------------------------------------------------------- scenario

def statistic(case: Case) -> str:
    """MLPerf states p99 latencies; every other source a median (or a single deterministic stream)."""
    return "p99" if case.source_kind == "mlperf" and case.lower_is_better else "p50"


def compute_dtype(case: Case, chip: ChipSpec) -> DType:
    """The weights' dtype when the chip has a peak for it. Otherwise the weights are dequantised in the kernel
    and the math runs in 16 bits (W4A16: MXFP4 or int4 weights on Hopper or MI300X), else at the fastest
    peak the chip has."""
    peaks = chip.compute.peak
    if case.weights_dtype in peaks or not peaks:
        return case.weights_dtype
    for sixteen in ("bf16", "fp16"):
        if sixteen in peaks:
            return sixteen
    return max(peaks, key=peaks.__getitem__)


def notes_caps(notes: str) -> tuple[int | None, int | None, bool]:
    """(max batch, max batched tokens, runtime-chosen) as the row's notes state them."""
    batch = re.search(r"(?:max batch|static batch|max_num_seqs)(?: \(slots\))? (\d+)", notes)
    tokens = re.search(r"max_num_tokens (\d+)", notes)
    return (int(batch.group(1)) if batch else None, int(tokens.group(1)) if tokens else None,
            "runtime-chosen" in notes)


ENGINES = (("jetstream", r"JetStream"), ("sglang", r"sglang|SGLang"), ("vllm", r"vllm|vLLM"),
           ("trtllm", r"TensorRT|TRT-LLM|trtllm|_TRT|\bNIM\b"))


def serving_engine(case: Case) -> str:
    """The serving engine the row's notes or source name (first match in ENGINES), else the scenario
    default (vLLM)."""
    text = f"{case.notes} {case.source}"
    return next((engine for engine, pattern in ENGINES if re.search(pattern, text)), "vllm")


@dataclass(frozen=True)
class Procedure:
    """A benchmark client's procedure as the notes state it: `prompts` requests through a closed loop of the
    row's concurrency, throughput measured over the whole run (ramp-up and drain included), and lengths
    drawn uniformly in [ratio x L, L] around the nominal input and output lengths L (0: fixed at L)."""
    prompts: int
    input_nominal: int | None = None
    output_nominal: int | None = None
    ratio: float = 0.0


def procedure(case: Case) -> Procedure | None:
    """InferenceMAX (`N prompts through a closed loop of C concurrent clients`, `ISL/OSL a/b with range ratio
    r`) and `vllm bench serve --num-prompts N` rows; None for steady-state measurements (MLPerf, trtllm-bench)."""
    if case.mode != "concurrency":
        return None
    loop = (re.search(r"([\d,]+) prompts through a closed loop", case.notes)
            or re.search(r"--num-prompts ([\d,]+)", case.notes))
    if loop is None:
        return None
    lengths = re.search(r"ISL/OSL (\d+)/(\d+) with range ratio ([\d.]+)", case.notes)
    if lengths is None:
        return Procedure(int(loop.group(1).replace(",", "")))
    return Procedure(int(loop.group(1).replace(",", "")), int(lengths.group(1)), int(lengths.group(2)),
                     float(lengths.group(3)))


def expert_parallel(case: Case) -> tuple[int, int]:
    """The engine's (expert_parallel, data_parallel_attention) for the row: experts over a divisor of the TP
    group (EP4 x TP2 under TP8 attention), or, when EP spans more chips than TP (tp=1, ep=8: the rows' "one
    replica spans max(tp, ep) x pp chips"), attention data-parallel over ep / tp ranks (wide EP)."""
    if case.ep <= case.tp and case.tp % case.ep == 0:
        return case.ep, 1
    if case.ep % case.tp == 0:
        return case.ep, case.ep // case.tp
    raise Unsupported(f"ep={case.ep} with tp={case.tp} is not expressible (expert_parallel must divide "
                      "tensor_parallel or be a multiple of it)")


def _grid(n: int, dims: int) -> list[int]:
    """n chips as a near-cubic torus of `dims` axes, smallest first (8 -> [2, 4], 64 -> [4, 4, 4])."""
    shape = [1] * dims
    for factor in prime_factors(n)[::-1]:
        shape[shape.index(min(shape))] *= factor
    return sorted(shape)


def _slice_wraps(dims: list[int], pod: list[int]) -> bool:
    """Does a TPU slice of `dims` have wraparound links? 3D (v4, v5p): when built of whole 4x4x4 cubes, which
    the optical switches close into a torus; 2D (v5e, v6e): only the full pod (a v5e-8 is a 2x4 mesh)."""
    return all(d % 4 == 0 for d in dims) if len(dims) == 3 else dims == pod


def _template(chip: ChipSpec) -> dict[str, Any] | None:
    name = TEMPLATES.get(chip.id)
    if TOPOLOGIES is None or name is None or not (TOPOLOGIES / f"{name}.yaml").is_file():
        return None
    return read_yaml(TOPOLOGIES / f"{name}.yaml")


def _generic_fabrics(chip: ChipSpec) -> tuple[dict | None, dict | None, int]:
    """(scaleup, scaleout, chips per node) from the chip's own catalog ports, for chips with no topology."""
    up = chip.scaleup
    scaleup = None
    if up is not None:
        latency = up.latency or 1e-6  # ASSUMED 1 us per hop, as the shipped topologies assume
        if chip.kind == "tpu":
            dims = 3 if "3D" in up.name else 2
            per_link = up.link_bandwidth_per_dir or up.bandwidth_per_dir / (2 * dims)
            scaleup = {"kind": "torus", "dims": [4, 4, 4] if dims == 3 else [16, 16], "bandwidth_per_dir": per_link,
                       "hop_latency": latency}
        elif up.link_bandwidth_per_dir and chip.vendor == "AMD":
            scaleup = {"kind": "mesh", "bandwidth_per_dir": up.link_bandwidth_per_dir, "hop_latency": latency}
        else:
            scaleup = {"kind": "switch", "bandwidth_per_dir": up.bandwidth_per_dir, "hop_latency": latency}
        scaleup["source"] = f"catalog chip {chip.id} scaleup"
    scaleout = None
    if chip.scaleout is not None:
        scaleout = {"kind": "leaf_spine", "nic_bandwidth_per_dir": chip.scaleout.bandwidth_per_dir,
                    "hop_latency": 1e-6, "source": f"catalog chip {chip.id} scaleout; latency ASSUMED"}
    return scaleup, scaleout, up.domain_size if up else 1


def cluster(case: Case, chip: ChipSpec) -> dict[str, Any]:
    """An inline topology for the case: the chip's shipped topology resized to num_chips, else one built
    from the chip's catalog ports. More than one node gets one leaf switch (no uplinks to size)."""
    template = _template(chip)
    if template:
        scaleup, scaleout = template.get("scaleup"), template.get("scaleout")
        per_node_max = template["chips_per_node"]
    else:
        scaleup, scaleout, per_node_max = _generic_fabrics(chip)
    if case.num_chips > 1 and scaleup is None and scaleout is None:
        raise Unsupported(f"{chip.id} has no chip-to-chip fabric in the catalog (no scaleup or scaleout "
                          f"block) to join {case.num_chips} chips")
    per_node = math.gcd(case.num_chips, per_node_max)
    nodes = case.num_chips // per_node
    if per_node > 1 and scaleup is None:
        raise Unsupported(f"{chip.id} has no scale-up fabric in the catalog to join {per_node} chips")
    if nodes > 1 and scaleout is None:
        raise Unsupported(f"{case.num_chips} chips need {nodes} nodes and {chip.id} has no scale-out port in "
                          "the catalog")
    topo: dict[str, Any] = {"name": f"{case.case_id}-cluster", "chip": chip.id, "nodes": nodes,
                            "chips_per_node": per_node,
                            "source": f"validate: {TEMPLATES.get(chip.id, 'catalog chip')} resized"}
    if per_node > 1:
        assert scaleup is not None  # checked above
        topo["scaleup"] = dict(scaleup)
        if scaleup["kind"] == "torus":
            dims = _grid(per_node, len(scaleup["dims"]))
            topo["scaleup"]["dims"] = dims
            topo["scaleup"]["wraparound"] = bool(scaleup.get("wraparound", True)) and _slice_wraps(
                dims, list(scaleup["dims"]))
    if nodes > 1:
        assert scaleout is not None  # checked above
        topo["scaleout"] = dict(scaleout)
        if scaleout["kind"] == "leaf_spine":
            topo["scaleout"].update(nodes_per_leaf=nodes, spines=1)
    return topo


def _batcher(case: Case, kv_batch: int, dp: int = 1) -> tuple[dict[str, Any], int]:
    """(batcher mapping, requests admitted at once per replica) for the row's mode and notes. With attention
    data parallelism every DP rank schedules its own batch under the engine's caps ("max batch 128 per
    rank"), so the replica's caps are dp times the notes'."""
    if case.mode == "batch":  # the whole batch admitted and prefilled at once, as gptSessionBenchmark runs
        assert case.concurrency is not None  # read_cases: mode batch needs a concurrency
        return {"kind": "static", "max_batch_size": case.concurrency}, min(case.concurrency, kv_batch)
    batch, tokens, runtime = notes_caps(case.notes)
    batch, tokens = (batch and batch * dp), (tokens and tokens * dp)
    batch = batch or (kv_batch if runtime else DEFAULT_BATCH)
    tokens = max(tokens or DEFAULT_TOKENS, batch)
    return ({"kind": "continuous", "max_batch_size": batch, "max_batched_tokens": tokens},
            min(batch, kv_batch))


def _lengths(case: Case) -> dict[str, Any]:
    """Fixed at the row's means, or uniform in [ratio x L, L] as the benchmark's client drew them."""
    how = procedure(case)
    if how is None or not how.ratio or how.input_nominal is None or how.output_nominal is None:
        return {"prompt_tokens": {"kind": "fixed", "value": case.input_tokens},
                "output_tokens": {"kind": "fixed", "value": case.output_tokens}}
    return {name: {"kind": "uniform", "low": max(1, math.ceil(how.ratio * nominal)), "high": nominal}
            for name, nominal in (("prompt_tokens", how.input_nominal), ("output_tokens", how.output_nominal))}


def _workload(case: Case, admitted: int, waves: int) -> dict[str, Any]:
    lengths = _lengths(case)
    if case.mode == "offline":
        n = case.replicas * admitted * waves
        return {"arrival": {"kind": "offline"}, "num_requests": n, **lengths}
    if case.mode == "rate":
        assert case.rate_per_s is not None  # read_cases: mode rate needs a rate_per_s
        n = max(200, round(case.rate_per_s * RATE_SPAN_S))
        if n > limits.MAX_DRAWN_REQUESTS:
            raise ScenarioError("rate_per_s", f"{case.rate_per_s:g} /s over {RATE_SPAN_S:g} s is {n:.3g} requests; "
                                f"allowed: up to {limits.MAX_DRAWN_REQUESTS:.0e} per case")
        return {"arrival": {"kind": "poisson", "rate": case.rate_per_s}, "num_requests": n, **lengths}
    users = case.concurrency
    assert users is not None  # read_cases: modes concurrency and batch need a concurrency
    how = procedure(case)
    n = users if case.mode == "batch" else how.prompts if how else max(2, waves * users)
    return {"arrival": {"kind": "closed_loop", "users": users}, "num_requests": n, **lengths}


def one_replica(case: Case) -> Case:
    """Offline, every replica gets the same requests (round robin at t = 0) and, on these clusters, links of
    its own: one replica on its share of the chips gives the same throughput per replica, R times faster."""
    if case.mode != "offline" or case.replicas == 1:
        return case
    return replace(case, num_chips=case.chips_per_replica, replicas=1)


def build(case: Case, chip: ChipSpec, waves: int = WAVES[-1],
          file: str = "validation") -> tuple[Scenario, str]:
    """The case as a Scenario on `chip` (whose efficiencies are used) with `waves` batches of requests
    (offline, closed loop), and the approximations it makes."""
    ep, dp = expert_parallel(case)
    approx = ""
    name, config = load_model_config(case.model, Path.cwd(), file)
    deployment: dict[str, Any] = {"tensor_parallel": case.tp, "pipeline_parallel": case.pp, "expert_parallel": ep,
                                  "data_parallel_attention": dp,
                                  "replicas": case.replicas, "weights_dtype": case.weights_dtype,
                                  "kv_dtype": case.kv_dtype, "compute_dtype": compute_dtype(case, chip)}
    if all(t.tier == "sram" for t in chip.memory):
        deployment["memory_utilization"] = 1.0  # statically compiled: no allocator reserve to keep
    if sum(t.bandwidth is not None for t in chip.memory) > 1:
        deployment["weight_streaming"] = True  # tiered by design (SN40L: HBM, then DDR): what HBM can't hold streams
    data: dict[str, Any] = {"name": case.case_id, "seed": 0, "model": case.model,
                            "cluster": cluster(case, chip), "deployment": deployment,
                            "workload": _workload(case, 1, 1)}
    spec: ScenarioSpec = validate_spec(ScenarioSpec, data, file)
    plan = plan_deployment(model_shape(name, config), chip, spec.cluster, spec.deployment)
    block = plan.kv_block_tokens
    per_request = -(-(case.input_tokens + case.output_tokens) // block) * block
    batcher, admitted = _batcher(case, max(1, plan.kv_capacity_tokens // per_request), dp)
    data["serving"] = {"batcher": batcher, "engine": serving_engine(case)}
    data["workload"] = _workload(case, admitted, waves)
    spec = validate_spec(ScenarioSpec, data, file)
    return Scenario(spec=spec, chip=chip, model_name=name, model_config=config, file=file), approx


# ---------------------------------------------------------------- metric

def marginal_rate(case: Case, short: RunResult, long: RunResult) -> float:
    """Output tokens/s of the requests the longer run adds, over the time it adds: the ramp-up (the first
    batch prefilling alone) and the drain are the same in both runs and cancel, which leaves the saturated
    steady state MLPerf's 24k-sample runs measure, even with the waves equal-length requests make."""
    extra = long.summary["requests"]["completed"] - short.summary["requests"]["completed"]
    added_s = long.summary["sim"]["simulated_s"] - short.summary["sim"]["simulated_s"]
    return extra * case.output_tokens / added_s


def window_rate(result: RunResult) -> float:
    """Open loop: output tokens of the iterations that start between 20% of the arrival span and the last
    arrival, over that window (warm-up and drain left out)."""
    it, end = result.iterations, float(result.requests["arrival_s"].max())
    inside = (it["start_s"] >= 0.2 * end) & (it["start_s"] < end)
    return float(it.loc[inside, "output_tokens"].sum()) / (0.8 * end)


def measure(case: Case, result: RunResult, rate: float | None = None) -> float | None:
    """The case's metric from a finished run, with the statistic `statistic(case)` names; `rate` is the
    steady output tokens/s when the caller measured it (`marginal_rate`)."""
    s, stat = result.summary, statistic(case)
    if case.metric in THROUGHPUT_METRICS:
        if rate is None:
            rate = window_rate(result) if case.mode == "rate" else s["throughput"]["output_tokens_per_s"]
        return rate if case.metric == "output_tokens_per_s" else rate / case.output_tokens
    if case.metric == "output_tokens_per_s_per_user":
        tpot = s["tpot_s"][stat]
        return 1.0 / tpot if tpot else None
    if case.metric == "mfu":
        return s["utilization"]["compute_mean"]
    return s[case.metric][stat]


def _predict(case: Case, chip: ChipSpec) -> tuple[float | None, Scenario, RunResult, str]:
    """Run the case (twice for a steady throughput) -> (prediction, scenario, longer run, approximations)."""
    simulated = one_replica(case)
    scenario, approx = build(simulated, chip)
    result = run(scenario)
    rate = None
    if case.metric in THROUGHPUT_METRICS and case.mode in ("offline", "concurrency") and procedure(case) is None:
        rate = marginal_rate(case, run(build(simulated, chip, WAVES[0])[0]), result)
    if not result.summary["requests"]["completed"]:
        raise Unsupported(f"every request was dropped ({result.summary['requests']['dropped']}): a request "
                          "never fits the KV-cache or the model's context")
    predicted = measure(case, result, rate)
    if predicted is not None and case.metric in THROUGHPUT_METRICS:
        predicted *= case.replicas / simulated.replicas
    return predicted, scenario, result, approx


def simulate(case: Case, chip: ChipSpec | None = None) -> Outcome:
    """Simulate one case on `chip` (default: the catalog's) and compare; never raises for a case the engine
    cannot express (InfersimError or Unsupported), which comes back with `reason` set."""
    start = time.perf_counter()
    chip = chip or load_chip(case.chip)
    stat, dtype = statistic(case), compute_dtype(case, chip)
    bound = speed_of_light(case, chip, dtype)
    try:
        predicted, scenario, result, approx = _predict(case, chip)
    except (InfersimError, Unsupported) as exc:
        return Outcome(case, None, stat, bound, reason=str(exc).removeprefix("validation: "),
                       compute_dtype=dtype, wall_s=time.perf_counter() - start)
    return Outcome(case, predicted, stat, bound, approximations=approx, compute_dtype=dtype,
                   max_batch=scenario.spec.serving.batcher.max_batch_size,
                   num_requests=scenario.spec.workload.num_requests,
                   shares=result.summary["bottleneck_share"], wall_s=time.perf_counter() - start)


def simulate_all(cases: list[Case], chips: dict[str, ChipSpec] | None = None,
                 workers: int = 1) -> list[Outcome]:
    """Every case, in file order; `workers` > 1 runs them in that many processes."""
    chips = chips or {}
    return simulate_jobs([(case, chips.get(case.chip)) for case in cases], workers)


def simulate_jobs(jobs: Sequence[tuple[Case, ChipSpec | None]], workers: int = 1) -> list[Outcome]:
    """Each (case, chip) job's outcome, in job order; `workers` > 1 runs them in that many processes."""
    if workers <= 1:
        return [simulate(*job) for job in jobs]
    outcomes: list[Outcome | None] = [None] * len(jobs)
    for index, future in in_processes(simulate, jobs, workers, "simulator.studies.validate.predict"):
        outcomes[index] = future.result()
    return [o for o in outcomes if o is not None]
