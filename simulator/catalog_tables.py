"""Rows for `infersim list`: the chips and models of the catalog and the topologies of the project."""

from __future__ import annotations

from pathlib import Path

from simulator.config.load import (chip_ids, find_dir, load_chip, load_model_config, model_ids, read_yaml,
                                   validate)
from simulator.config.schema import TopologySpec
from simulator.hardware.model import model_shape

Rows = tuple[str, list[str], list[list[str]]]


def _g(value: float | None, scale: float, digits: int = 4) -> str:
    return "" if value is None else f"{value / scale:.{digits}g}"


def chips() -> Rows:
    rows = []
    for chip_id in chip_ids():
        c = load_chip(chip_id)
        peak = c.compute.peak
        top = c.memory[0]
        rows.append([c.id, c.name, c.kind, _g(peak.get("bf16"), 1e12), _g(peak.get("fp8"), 1e12),
                     f"{top.tier} {top.capacity / 1e9:.4g}", _g(top.bandwidth, 1e12),
                     _g(c.scaleup.bandwidth_per_dir if c.scaleup else None, 1e9),
                     _g(c.power.tdp if c.power else None, 1.0)])
    columns = ["id", "name", "kind", "bf16 TFLOP/s", "fp8 TFLOP/s", "memory GB", "TB/s", "scale-up GB/s/dir",
               "TDP W"]
    return "chips (dense peaks)", columns, rows


def models() -> Rows:
    rows = []
    for model_id in model_ids():
        name, config = load_model_config(model_id, Path.cwd(), "catalog")
        m = model_shape(name, config)
        rows.append([m.name, f"{m.total_params / 1e9:.1f}", f"{m.active_params / 1e9:.1f}", str(m.n_layers),
                     str(m.d_model), f"{m.n_heads}/{m.n_kv_heads}", m.attention,
                     f"{m.kv_bytes_per_token('bf16') / 1e3:.0f}", str(m.max_context or "")])
    columns = ["id", "params B", "active B", "layers", "d_model", "heads/kv", "attention", "KV kB/token bf16",
               "max context"]
    return "models", columns, rows


def topologies() -> Rows:
    folder = find_dir("topologies", Path.cwd())
    rows = []
    for path in sorted(folder.glob("*.yaml")) if folder else []:
        t = validate(TopologySpec, read_yaml(path), str(path))
        rows.append([t.name, t.chip, str(t.nodes), str(t.chips_per_node), str(t.nodes * t.chips_per_node)])
    return f"topologies ({folder or 'no topologies/ folder found'})", ["id", "chip", "nodes", "chips/node",
                                                                        "chips"], rows
