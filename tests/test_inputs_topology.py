"""Malformed topology files: the exact one-line error naming the topology file and its field, exit 2."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO, cli_error

HGX = yaml.safe_load((REPO / "topologies" / "hgx-h100.yaml").read_text())


def _edit(changes: dict) -> dict:
    topo = copy.deepcopy(HGX)
    for key, value in changes.items():
        node, parts = topo, key.split(".")
        for part in parts[:-1]:
            node = node[part]
        if value is None:
            node.pop(parts[-1])
        else:
            node[parts[-1]] = value
    return topo


@pytest.mark.parametrize("changes, expected", [
    ({"chip": None}, "chip: required key is missing"),
    ({"chips_per_node": None}, "chips_per_node: required key is missing"),
    ({"nodes": 0}, "nodes: must be >= 1, got 0"),
    ({"nodes": -3}, "nodes: must be >= 1, got -3"),
    ({"nodes": "many"}, "nodes: input should be a valid integer, unable to parse string as an integer, got 'many'"),
    ({"nodes": 2.5}, "nodes: must be an integer, got 2.5"),
    ({"nodes": True}, "nodes: input should be a valid integer, unable to parse string as an integer, got 'true'"),
    ({"nodes": 2}, "2 nodes need a scaleout fabric between them"),
    ({"gpus": 8}, "gpus: unknown key; allowed: chip, chips_per_node, description, host, name, nodes, "
                  "nodes_per_rack, scaleout, scaleup, source"),
    ({"scaleup.kind": "ring"}, "scaleup.kind: 'ring' is not one of: mesh, switch, torus"),
    ({"scaleup.kind": "torus", "scaleup.dims": [3, 3]}, "scaleup.dims [3, 3] must multiply to chips_per_node (8)"),
    ({"scaleup.bandwidth_per_dir": "450 GB"},
     "scaleup.bandwidth_per_dir: expected bandwidth like '3.35 TB/s' or '400 Gb/s', got unit 'GB'"),
    ({"scaleup.bandwidth_per_dir": "-450 GB/s"}, "scaleup.bandwidth_per_dir: must be >= 1000.0, got '-450 GB/s'"),
    ({"scaleup.bandwidth_per_dir": 1e-300}, "scaleup.bandwidth_per_dir: must be >= 1000.0, got 1e-300"),
    ({"scaleup.bandwidth_per_dir": float("nan")}, "scaleup.bandwidth_per_dir: must be a finite number, got nan"),
    ({"scaleup.bandwidth_per_dir": "1e999 GB/s"},
     "scaleup.bandwidth_per_dir: expected a finite bandwidth, got '1e999 GB/s'"),
    ({"scaleup.bandwidth_per_dir": "450 XB/s"}, "scaleup.bandwidth_per_dir: unknown prefix 'X' in 'XB' for bandwidth"),
    ({"scaleup.hop_latency": "fast"},
     "scaleup.hop_latency: expected duration like '2 us', '1.5 ms' or '3 s', got 'fast'"),
    ({"scaleup.hop_latency": "1e9 s"}, "scaleup.hop_latency: must be <= 100000000.0, got '1e9 s'"),
    ({"scaleup.energy_per_bit": "-5 pJ"}, "scaleup.energy_per_bit: must be >= 0, got '-5 pJ'"),
    ({"host": {"bandwidth_per_dir": "63 GB/s"}}, "host.source: required key is missing"),
    ({"name": ["x"]}, "name: input should be a valid string, got ['x']"),
])
def test_topology_mistakes(tmp_path, write_scenario, changes, expected):
    topo = tmp_path / "topo.yaml"
    topo.write_text(yaml.safe_dump(_edit(changes), sort_keys=False))
    assert cli_error("explain", write_scenario({"cluster": str(topo)})) == f"{topo}: {expected}"


@pytest.mark.parametrize("content, expected", [
    (b"", "must be a YAML mapping of keys to values, got NoneType"),
    (b"- hgx\n", "must be a YAML mapping of keys to values, got list"),
    (b"\xff\xfe", "line 1: byte 0xff is not UTF-8 text"),
    (b"chip: [\n", "line 2: invalid YAML: expected the node content, but found '<stream end>'"),
])
def test_unreadable_topology_files(tmp_path, write_scenario, content, expected):
    topo = tmp_path / "topo.yaml"
    topo.write_bytes(content)
    assert cli_error("explain", write_scenario({"cluster": str(topo)})) == f"{topo}: {expected}"


def test_an_inline_topology_is_reported_in_the_scenario(write_scenario):
    path = write_scenario({"cluster": {**HGX, "nodes": 0}})
    assert cli_error("explain", path) == f"{path}: cluster.nodes: must be >= 1, got 0"


def test_a_topology_whose_graph_would_not_fit_in_memory_is_refused(write_scenario, monkeypatch):
    monkeypatch.setattr("simulator.config.limits.machine_memory_bytes", lambda: 64e9)
    path = write_scenario({"cluster": {**HGX, "chips_per_node": 200_000, "scaleup": {
        **HGX["scaleup"], "kind": "mesh", "in_switch_reduction": False}}})
    assert cli_error("explain", path) == (
        f"{path}: cluster: 4e+10 graph nodes and links (1 nodes x 200000 chips) need >= 40 TB of memory and "
        ">= 9.26 days of wall time, estimated at 540 B + 5 us per request, 80 B + 5 us per iteration, 1 kB + "
        "20 us per graph node or link; allowed: 64 GB (this machine's memory) and 24 h; set sim.allow_huge: true "
        "to run it anyway")
