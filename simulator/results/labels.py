"""Human names with units for the dotted keys of summaries, sweep tables and scenario overrides, for axes and
table headers (`tpot_s.p50` -> "TPOT p50 (ms)", shown x 1000); a key it does not know keeps its own name."""

from __future__ import annotations

from typing import NamedTuple


class Label(NamedTuple):
    """`text` for the axis or column; multiply the key's SI value by `scale` to show it in `text`'s unit."""
    text: str
    scale: float = 1.0


_LATENCY = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "end-to-end latency", "queue_s": "queueing delay",
            "itl_s": "inter-token latency"}
_STATISTIC = {"mean": "mean", "p50": "p50", "p90": "p90", "p99": "p99"}
_EXACT: dict[str, Label] = {
    "throughput.requests_per_s": Label("requests/s"),
    "throughput.output_tokens_per_s": Label("output tokens/s"),
    "throughput.total_tokens_per_s": Label("tokens/s (prompt + output)"),
    "throughput.output_tokens_per_s_per_chip": Label("output tokens/s per chip"),
    "interactivity.tokens_per_s_per_user": Label("tokens/s per user (1 / TPOT p50)"),
    "tokens_per_s_per_user": Label("tokens/s per user (1 / TPOT p50)"),
    "output_tokens_per_s": Label("output tokens/s"),
    "output_tokens_per_s_per_chip": Label("output tokens/s per chip"),
    "output_tokens_per_s_per_kw": Label("output tokens/s per kW (nameplate)"),
    "output_tokens_per_usd": Label("output tokens per USD"),
    "utilization.compute_mean": Label("compute utilisation (mean, 0-1)"),
    "utilization.memory_bw_mean": Label("memory-bandwidth utilisation (mean, 0-1)"),
    "slo.attainment": Label("SLO attainment (0-1)"),
    "slo.goodput_requests_per_s": Label("goodput (requests/s within SLO)"),
    "energy_j": Label("energy (kJ)", 1e-3),
    "energy_j_per_output_token": Label("energy per output token (J)"),
    "energy.mean_power_w": Label("mean power (kW)", 1e-3),
    "cost_usd": Label("cost (USD)"),
    "cost_usd_per_million_output_tokens": Label("cost per million output tokens (USD)"),
    "batch.mean": Label("mean batch size (requests)"),
    "batch.max": Label("largest batch (requests)"),
    "kv_cache.prefix_hit_rate": Label("prefix-cache hit rate (0-1)"),
    "kv_cache.preemptions": Label("preemptions"),
    "chips": Label("chips"),
    "concurrency": Label("concurrent users per replica"),
    "network.busiest_link_utilization": Label("busiest link's utilisation (0-1)"),
    "sim.simulated_s": Label("simulated time (s)"),
    "serving.batcher.max_batch_size": Label("batch size cap (requests)"),
    "serving.batcher.max_batched_tokens": Label("tokens per iteration cap"),
    "deployment.tensor_parallel": Label("tensor-parallel degree"),
    "deployment.pipeline_parallel": Label("pipeline-parallel degree"),
    "deployment.expert_parallel": Label("expert-parallel degree"),
    "deployment.replicas": Label("replicas"),
    "deployment.weights_dtype": Label("weight data type"),
    "workload.arrival.rate": Label("arrival rate (requests/s)"),
    "workload.num_requests": Label("requests"),
    "cluster": Label("cluster"),
    "model": Label("model"),
}
for _resource in ("compute", "memory", "network", "overhead", "bubble"):
    _EXACT[f"bottleneck_share.{_resource}"] = Label(f"share of busy time: {_resource} (0-1)")


def label(key: str) -> Label:
    """The human name and scale of `key`; `ttft_s.p99` and `slo.per_class.x.ttft_s.p99` alike."""
    if key in _EXACT:
        return _EXACT[key]
    head, _, statistic = key.rpartition(".")
    metric = head.rsplit(".", 1)[-1]
    if metric in _LATENCY and statistic in _STATISTIC:
        name = _LATENCY[metric]
        return Label(f"{name} {statistic} (s)" if metric == "e2e_s" else f"{name} {statistic} (ms)",
                     1.0 if metric == "e2e_s" else 1e3)
    return Label(key)


def short(key: str) -> str:
    """A label without its unit, for legends ("batch size cap" rather than "serving.batcher.max_batch_size")."""
    text = label(key).text
    return text.split(" (", 1)[0] if text != key else key.rsplit(".", 1)[-1]
