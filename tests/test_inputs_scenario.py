"""Malformed scenario files and --set values: the exact one-line error (file, field, what is allowed), exit 2.

Complements test_errors.py (unknown keys, kinds, units, deployments that do not fit, missing/empty/list
files), which these cases do not repeat.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, cli_error
from typer.testing import CliRunner

from simulator.cli import app

NAME_RULE = ("allowed: letters, digits, '_', '.', '+', '-', starting with a letter or digit, at most 100 "
             "characters")


# ---------------------------------------------------------------- the file itself

@pytest.mark.parametrize("content, expected", [
    (b"name: caf\xe9\n", "line 1: byte 0xe9 is not UTF-8 text"),
    (b"---\n", "must be a YAML mapping of keys to values, got NoneType"),
    (b"~\n", "must be a YAML mapping of keys to values, got NoneType"),
    (b"# only a comment\n", "must be a YAML mapping of keys to values, got NoneType"),
    (b"just words\n", "must be a YAML mapping of keys to values, got str"),
    (b"42\n", "must be a YAML mapping of keys to values, got int"),
    (b"\tname: x\n", "line 1: invalid YAML: found character '\\t' that cannot start any token"),
    (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "invalid YAML: nested too deeply"),
    (b"a: !!python/object/apply:os.system ['touch pwned']\n",
     "line 1: invalid YAML: could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/object/apply:os.system'"),
    (b"a: !!python/name:os.system\n",
     "line 1: invalid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/name:os.system'"),
])
def test_unreadable_files(tmp_path, content, expected):
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    assert cli_error("run", path, "-o", tmp_path / "out") == f"{path}: {expected}"


def test_nothing_in_a_yaml_file_is_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "s.yaml"
    path.write_text("name: !!python/object/apply:os.system ['touch pwned']\n")
    cli_error("run", path)
    path.write_text("name: !!python/object/new:os.system ['touch pwned']\n")
    cli_error("run", path)
    assert not (tmp_path / "pwned").exists()


def test_a_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path):
    """A 'billion laughs' file: 9 aliases per level, 9 levels -> 9^9 values if expanded."""
    lines = ['l0: &l0 [x, x, x, x, x, x, x, x, x]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nname: *l8\n")
    assert cli_error("run", path) == (f"{path}: holds 9.26e+08 values once its aliases (*name) are expanded; "
                                      "allowed: up to 1000000")


def test_a_folder_and_a_huge_file_are_refused(tmp_path):
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    assert cli_error("run", folder) == f"{folder}: is a folder, not a YAML file"
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (17 * 2**20) + "\n")
    assert cli_error("run", big) == f"{big}: is 17.0 MiB; allowed: up to 16 MiB"


# ---------------------------------------------------------------- values

@pytest.mark.parametrize("overrides, expected", [
    ({"name": None}, "name: input should be a valid string, got None"),
    ({"seed": -1}, "seed: must be >= 0, got -1"),
    ({"seed": 1.5}, "seed: must be an integer, got 1.5"),
    ({"seed": 2**64}, "seed: 18446744073709551616 is too large; allowed: integers of at most 64 bits "
                      "(|n| <= 9223372036854775807)"),
    ({"workload.num_requests": True},
     "workload.num_requests: input should be a valid integer, unable to parse string as an integer, got 'true'"),
    ({"workload.num_requests": 0}, "workload.num_requests: must be >= 1, got 0"),
    ({"workload.num_requests": 10**30},
     "workload.num_requests: 1000000000000000000000000000000 is too large; allowed: integers of at most 64 bits "
     "(|n| <= 9223372036854775807)"),
    ({"workload.num_requests": float("nan")}, "workload.num_requests: must be a finite number, got nan"),
    ({"workload.arrival.rate": float("inf")}, "workload.arrival.rate: must be a finite number, got inf"),
    ({"workload.arrival.rate": "1e999 /s"}, "workload.arrival.rate: expected a finite rate, got '1e999 /s'"),
    ({"workload.arrival.rate": "-3 /s"}, "workload.arrival.rate: must be > 0, got '-3 /s'"),
    ({"workload.arrival.rate": [5]}, "workload.arrival.rate: expected rate like '5 /s' or '300 /min', got [5]"),
    ({"workload.arrival.rate": True},
     "workload.arrival.rate: expected rate like '5 /s' or '300 /min', got 'true'"),
    ({"sim.max_time": "-1 s"}, "sim.max_time: must be >= 0, got '-1 s'"),
    ({"sim.max_time": "10 fortnights"},
     "sim.max_time: expected duration like '2 us', '1.5 ms' or '3 s', got unit 'fortnights'"),
    ({"deployment.memory_utilization": 1.5}, "deployment.memory_utilization: must be <= 1.0, got 1.5"),
    ({"deployment.memory_utilization": 0}, "deployment.memory_utilization: must be >= 0.001, got 0"),
    ({"deployment.memory_utilization": 1e-300}, "deployment.memory_utilization: must be >= 0.001, got 1e-300"),
    ({"workload.prompt_tokens.high": 10**10}, "workload.prompt_tokens.high: must be <= 1000000000, got 10000000000"),
    ({"workload.prompt_tokens": {"kind": "empirical", "values": []}},
     "workload.prompt_tokens.values: must have at least 1 item, got 0"),
    ({"description": "x" * 10_000, "seed": "x" * 10_000},
     "seed: input should be a valid integer, unable to parse string as an integer, got 'xxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxx...x'"),
    ({"a\nb": 1}, "a\\nb: unknown key; allowed: cluster, cost, deployment, description, model, name, seed, "
                  "serving, sim, workload"),
    ({"sim.allow_huge": "sure"}, "sim.allow_huge: input should be a valid boolean, unable to interpret input, "
                                 "got 'sure'"),
])
def test_bad_values(write_scenario, overrides, expected):
    path = write_scenario(overrides)
    assert cli_error("run", path, "-o", path.parent / "out") == f"{path}: {expected}"


def test_a_referenced_file_is_named_even_for_its_whole_mapping_and_its_nan(tmp_path, write_scenario):
    topo = tmp_path / "topo.yaml"
    topo.write_text("name: t\nchip: h100-sxm\nnodes: 2\nchips_per_node: 1\n")
    assert cli_error("run", write_scenario({"cluster": str(topo)})) == \
        f"{topo}: 2 nodes need a scaleout fabric between them"
    topo.write_text("name: t\nchip: h100-sxm\nchips_per_node: .nan\n")
    assert cli_error("run", write_scenario({"cluster": str(topo)})) == \
        f"{topo}: chips_per_node: must be a finite number, got nan"


def test_a_path_too_long_or_with_a_nul_byte_is_not_a_crash(write_scenario):
    path = write_scenario({"model": "x" * 300})
    assert cli_error("run", path).startswith(f"{path}: model: 'xxxxxxxxxx")
    path = write_scenario({"cluster": "a\x00b"})
    assert cli_error("run", path).startswith(f"{path}: cluster: 'a\\x00b' is not one of: a100-4x, cerebras-cs3-4, ")


# ---------------------------------------------------------------- --set: YAML scalars, never evaluated

@pytest.mark.parametrize("override, expected", [
    ("serving.batcher.max_batch_size=__import__('os').getpid()",
     "{f}: serving.batcher.max_batch_size: input should be a valid integer, unable to parse string as an "
     "integer, got \"__import__('os').getpid()\""),
    ("seed=!!python/object/apply:os.getpid []",
     "--set: 'seed=!!python/object/apply:os.getpid []': line 1: invalid YAML: could not determine a constructor "
     "for the tag 'tag:yaml.org,2002:python/object/apply:os.getpid'"),
    ("seed=1+1", "{f}: seed: input should be a valid integer, unable to parse string as an integer, got '1+1'"),
    ("workload.num_requests=.inf", "{f}: workload.num_requests: must be a finite number, got inf"),
    ("sim.allow_huge=maybe",
     "{f}: sim.allow_huge: input should be a valid boolean, unable to interpret input, got 'maybe'"),
    ("=5", "--set: '=5' must look like dotted.key=value"),
    ("workload.arrival.rate.x=1",
     "--set: workload.arrival.rate.x: workload.arrival.rate is '20 /s', not a mapping"),
])
def test_overrides_are_yaml_scalars_never_code(write_scenario, override, expected):
    path = write_scenario()
    assert cli_error("run", path, "--set", override) == expected.format(f=path)


# ---------------------------------------------------------------- output paths stay under the output folder

@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", ".hidden", "a/b", "a\\b", "a b", "", "x" * 101,
                                  "café\u202e"])
def test_a_scenario_name_that_would_leave_results_is_refused(write_scenario, name):
    path = write_scenario({"name": name})
    shown = repr(name) if len(repr(name)) <= 60 else f"{repr(name)[:55]}...x'"
    assert cli_error("run", path) == f"{path}: name: {shown} cannot name an output folder; {NAME_RULE}"


def test_the_default_output_folder_is_results_slash_name_and_nothing_lands_elsewhere(tmp_path, monkeypatch,
                                                                                         write_scenario):
    monkeypatch.chdir(tmp_path)
    path = write_scenario({"name": "ünï-1.0+x", "workload.num_requests": 3})
    result = CliRunner().invoke(app, ["run", str(path), "--no-plots"])
    assert result.exit_code == 0, result.output
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {Path("s.yaml")} | {Path("results/ünï-1.0+x") / n for n in (
        "summary.json", "requests.parquet", "iterations.parquet", "links.parquet", "memory.parquet", "report.md")}


def test_shipped_names_are_all_valid():
    for folder in ("scenarios", "workloads", "scenarios/sweeps", "scenarios/compare"):
        for path in (REPO / folder).glob("*.yaml"):
            name = yaml.safe_load(path.read_text()).get("name", "ok")
            assert isinstance(name, str) and name.replace("-", "").replace(".", "").isalnum(), (path, name)


def test_the_code_reads_yaml_safely_and_evaluates_nothing():
    """Every YAML read is yaml.safe_load or config/load.py's SafeLoader subclass (which refuses duplicate keys);
    no eval/exec/pickle anywhere; ServeGen's Python-literal tables go
    through ast.literal_eval (literals only), the one place that parses Python syntax."""
    import re

    unsafe = re.compile(r"yaml\.(load|unsafe_load|full_load|load_all)\(|Loader\s*=|\beval\(|\bexec\(|pickle\.load|"
                        r"marshal\.load|__import__\(")
    found = {}
    for path in sorted((REPO / "simulator").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        hits = [m.group(0) for m in unsafe.finditer(text)]
        if hits:
            found[str(path.relative_to(REPO))] = hits
        if "yaml." in text:
            assert set(re.findall(r"yaml\.(\w+)", text)) <= {"safe_load", "safe_dump", "YAMLError", "SafeLoader",
                                                            "ScalarNode", "MappingNode", "constructor"}, path
            assert set(re.findall(r"class \w+\(yaml\.(\w+)\)", text)) <= {"SafeLoader"}, path
    assert found == {}
    literal = [p.name for p in (REPO / "simulator").rglob("*.py") if "literal_eval(" in p.read_text()]
    assert literal == ["servegen.py"]


def test_closed_loop_requests_that_never_fit_are_dropped_not_a_hang(write_scenario):
    """Every prompt longer than the KV-cache: each dropped request's user sends the next, which is dropped too
    (found by fuzzing: the replica slept forever and SimPy raised)."""
    from simulator.config.load import load_scenario
    from simulator.run import run

    path = write_scenario({"workload.arrival": {"kind": "closed_loop", "users": 2}, "workload.num_requests": 5,
                           "workload.prompt_tokens": {"kind": "fixed", "value": 64_000_000}})
    assert run(load_scenario(path)).summary["requests"] == {"arrived": 5, "completed": 0, "dropped": 5,
                                                             "in_flight": 0}
