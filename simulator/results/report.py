"""A run's report: the headline rows the CLI prints, and report.md (metric definitions: summary.py)."""

from __future__ import annotations

from typing import Any

from simulator.hardware.placement import Plan
from simulator.results import bottleneck


def _fmt(value: Any, scale: float = 1.0, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value * scale:.{digits}g}"


def headline(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, value) rows shown by the CLI and the report."""
    s, r, t = summary, summary["requests"], summary["throughput"]
    share = s["bottleneck_share"]
    top = max((k for k in share if share[k] is not None), key=lambda k: share[k], default=None)
    return _main_rows(s, r, t, share, top) + _optional_rows(s) + band_rows(s)


BAND_ROWS = (  # (label, dotted key, scale to the label's unit)
    ("TTFT p50", "ttft_s.p50", 1e3, "ms"), ("TTFT p99", "ttft_s.p99", 1e3, "ms"),
    ("TPOT p50", "tpot_s.p50", 1e3, "ms"), ("TPOT p99", "tpot_s.p99", 1e3, "ms"),
    ("E2E p50", "e2e_s.p50", 1.0, "s"), ("E2E p99", "e2e_s.p99", 1.0, "s"),
    ("output tokens/s", "throughput.output_tokens_per_s", 1.0, ""),
    ("energy per output token", "energy_j_per_output_token", 1.0, "J"),
    ("cost per million output tokens", "cost_usd_per_million_output_tokens", 1.0, "USD"),
)


def band_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """With `--uncertainty N`: each headline metric's p10 / p50 / p90 over the parameter draws."""
    u = s.get("uncertainty")
    if not u:
        return []
    p = u["parameters"]
    rows = [("parameter draws (ok) / family / basis", f"{u['draws']} ({u['draws_ok']}) / {p['family']} / {p['basis']}")]
    for label, key, scale, unit in BAND_ROWS:
        band = u["bands"].get(key)
        if band and band["p50"] is not None:
            values = " / ".join(_fmt(band[q], scale, 4) for q in ("p10", "p50", "p90"))
            rows.append((f"{label} p10 / p50 / p90" + (f" ({unit})" if unit else ""), values))
    return rows


def _optional_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for what the scenario turned on: a prefix cache that was hit, speculative decoding."""
    rows = []
    if s["kv_cache"]["prefix_hit_tokens"]:
        rows.append(("prefix cache hit rate (prompt tokens)", _fmt(s["kv_cache"]["prefix_hit_rate"])))
    sp = s.get("speculative")
    if sp is not None:
        rows += [("speculative acceptance: measured (set)",
                  f"{_fmt(sp['acceptance_rate'])} ({_fmt(sp['configured_acceptance'])}), "
                  f"{_fmt(sp['measured_tokens_per_step'])} tokens per step"),
                 ("speculative draft / verify per step (ms)",
                  f"{_fmt(sp['draft_s_per_step'], 1e3)} / {_fmt(sp['verify_s_per_step'], 1e3)}")]
    return rows


def _main_rows(s: dict[str, Any], r: dict[str, Any], t: dict[str, Any], share: dict[str, Any],
               top: str | None) -> list[tuple[str, str]]:
    return [
        ("requests completed / dropped / in flight", f"{r['completed']} / {r['dropped']} / {r['in_flight']}"),
        ("TTFT p50 / p99 (ms)", f"{_fmt(s['ttft_s']['p50'], 1e3)} / {_fmt(s['ttft_s']['p99'], 1e3)}"),
        ("TPOT p50 / p99 (ms)", f"{_fmt(s['tpot_s']['p50'], 1e3)} / {_fmt(s['tpot_s']['p99'], 1e3)}"),
        ("E2E p50 / p99 (s)", f"{_fmt(s['e2e_s']['p50'])} / {_fmt(s['e2e_s']['p99'])}"),
        ("output tokens/s (per chip)",
         f"{_fmt(t['output_tokens_per_s'], digits=4)} ({_fmt(t['output_tokens_per_s_per_chip'], digits=4)})"),
        ("mean batch size", _fmt(s["batch"]["mean"])),
        ("compute / memory-bw utilization",
         f"{_fmt(s['utilization']['compute_mean'])} / {_fmt(s['utilization']['memory_bw_mean'])}"),
        ("bottleneck", bottleneck.headline(s) or (f"{top} ({_fmt(share[top])} of busy time)" if top else "n/a")),
        ("energy per output token (J)", _fmt(s["energy_j_per_output_token"]) + _system_energy_words(s)),
        ("cost per million output tokens (USD)", _fmt(s["cost_usd_per_million_output_tokens"])),
        ("chips", str(s["chips"])),
        ("simulated / wall time (s)", f"{_fmt(s['sim']['simulated_s'], digits=4)} / {s['sim']['wall_s']:.2f}"),
    ]


def _system_energy_words(s: dict[str, Any]) -> str:
    """The host, NIC and switch shares of the energy per output token, when the scenario gives them power."""
    per_token = (s.get("energy") or {}).get("j_per_output_token") or {}
    parts = [f"{name} {_fmt(per_token.get(name))}" for name in ("host", "nics", "switches") if per_token.get(name)]
    return f" (of which {', '.join(parts)})" if parts else ""


_MEANING = {
    "compute": "compute: the iterations' time was mostly bound by arithmetic (FLOPs over the chips' peak)",
    "memory": "memory bandwidth: the iterations' time was mostly bound by bytes read from memory (weights and "
              "KV-cache over the memory's bandwidth)",
    "network": "the network: the iterations' time was mostly spent waiting for collectives and stage-to-stage "
               "sends on the links",
    "overhead": "fixed overheads: the iterations' time was mostly per-step, per-layer and per-sequence host and "
                "kernel-launch time, not the hardware's throughput",
    "bubble": "pipeline bubbles: the iterations' time was mostly stages waiting on each other",
}


def bottleneck_words(s: dict[str, Any]) -> str:
    """The bottleneck in plain words, with the shares and utilisations it rests on."""
    share = {k: v for k, v in s["bottleneck_share"].items() if v is not None}
    if not share:
        return "No iteration ran, so there is no bottleneck to name."
    top = max(share, key=share.__getitem__)
    others = ", ".join(f"{k} {v:.0%}" for k, v in sorted(share.items(), key=lambda kv: -kv[1]) if k != top)
    phases = bottleneck.headline(s)
    text = f"Bound by {phases}. " if phases else ""
    text += (f"The bottleneck is {_MEANING[top]} ({share[top]:.0%} of the busy time; {others}). "
             f"On average compute ran at {_fmt(s['utilization']['compute_mean'], 100, 2)}% of peak")
    tiers = s["utilization"].get("memory_tiers")
    if tiers:
        text += "; " + ", ".join(f"{name.upper()}{' (streamed weights)' if t['role'] == 'streamed' else ''} at "
                                 f"{_fmt(t['utilization'], 100, 2)}% of achievable bandwidth"
                                 for name, t in tiers.items()) + "."
    else:
        text += f" and memory bandwidth at {_fmt(s['utilization']['memory_bw_mean'], 100, 2)}% of nameplate."
    net = s.get("network", {})
    b_net = (s.get("bottleneck") or {}).get("network")
    if b_net:
        text += (f" Waiting for the network took {b_net['wait_share']:.0%} of a replica's time and is "
                 f"{b_net['bound']}-bound: the busiest link, {b_net['busiest_link']}, carried "
                 f"{_fmt(b_net['busiest_link_utilization'], 100, 2)}% of what it could over the run"
                 + (" (many small messages: hop latency and synchronisation cost the time, not bytes)."
                    if b_net["bound"] == "latency" else "."))
    elif net.get("busiest_link"):
        text += (f" The busiest link, {net['busiest_link']}, carried "
                 f"{_fmt(net.get('busiest_link_utilization'), 100, 2)}% of what it could over the run.")
    return text


def markdown(s: dict[str, Any], plan: Plan, description: str, links: bool, plots: bool, html: bool = False) -> str:
    """report.md of a run: its summary `s`, its (first pool's) plan, the scenario's description; `links`:
    whether any link carried traffic (a link heatmap was drawn)."""
    lines = [f"# {s['scenario']}: {s['model']} on {plan.chips_total} x {s['chip']}", ""]
    description = description.strip()
    if description:
        lines += [description, ""]
    if s["sim"].get("replica_groups", 1) > 1:
        lines += [f"Simulated as {s['sim']['replica_groups']} independent groups of replicas in parallel processes "
                  "(replicas share no link and round robin is blind to load), then merged.", ""]
    if s["sim"].get("interrupted"):
        lines += [f"**Interrupted** at {s['sim']['simulated_s']:.4g} simulated seconds: a partial result "
                  "(requests not done by then count as in flight).", ""]
    attention_dp = f" x attention data parallel {plan.data_parallel}" if plan.data_parallel > 1 else ""
    lines += [f"Seed {s['seed']}. Tensor parallel {plan.tensor_parallel}{attention_dp} x pipeline "
              f"{plan.pipeline_parallel} "
              f"(expert parallel {plan.expert_parallel}) x {plan.replicas} replicas, weights "
              f"{plan.weights_dtype}, KV {plan.kv_dtype}; {plan.weight_bytes_per_chip / 1e9:.1f} GB of weights "
              f"and room for {plan.kv_capacity_tokens:,} KV tokens per replica in {plan.tier}.", "",
              bottleneck_words(s), "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in headline(s)]
    lines += ["", "## Latency (seconds)", "", "| metric | mean | p50 | p90 | p99 |", "|---|---|---|---|---|"]
    for key in ("ttft_s", "tpot_s", "e2e_s", "queue_s"):
        st = s[key]
        lines.append(f"| {key} | " + " | ".join(_fmt(st[q], digits=4) for q in ("mean", "p50", "p90", "p99"))
                     + " |")
    lines += ["", "## Where the busy time went", "", "| resource | share |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in s["bottleneck_share"].items()]
    if html:
        lines += ["", "Interactive charts (latency CDFs, throughput and batch size over time, busy time, links): "
                  "[report.html](report.html)."]
    if plots:
        lines += ["", "## Plots", "", "![latency CDFs](plots/latency_cdf.png)", "",
                  "![throughput and batch size over time](plots/timeline.png)", "",
                  "![time breakdown](plots/breakdown.png)"]
        if links:
            lines += ["", "![link utilisation over time](plots/links.png)"]
    return "\n".join(lines) + "\n"
