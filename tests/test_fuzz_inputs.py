"""Fuzz every kind of input file: random corruptions of valid files (deleted keys, wrong types, negative,
huge, NaN and infinite numbers, unicode, control characters, truncation, empty files, random bytes) must end
in exit 0 or in one clean error line (exit 2), never a traceback; random valid small scenarios must finish
with the run's invariants holding.

Bounded for CI: derandomized (the same examples on every run, no example database), 40 to 300 examples per
fuzzer; the whole file runs in about half a minute on 2 cores. INFERSIM_FUZZ_SCALE=20 multiplies the example
counts for a longer hunt outside CI. `pytest -s tests/test_fuzz_inputs.py` prints how
many corrupted inputs each fuzzer tried, how many were refused with one line and how many still ran.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from conftest import REPO, small_scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulator.cli import app
from simulator.config.load import absolute_trace_paths, read_yaml
from simulator.errors import InfersimError

MAX_LINE = 4000  # an error line lists what is allowed (a sweep table's 100 columns), never a whole input
TRIED: Counter[str] = Counter()     # corrupted inputs tried, per kind
REFUSED: Counter[str] = Counter()   # of those, refused with one clean error line
CRASHED: Counter[str] = Counter()   # of those, ended in a traceback (each also fails its test)


SCALE = float(os.environ.get("INFERSIM_FUZZ_SCALE", "1"))  # e.g. 20 for a long hunt outside CI


def fast(examples: int) -> settings:
    """Bounded, reproducible (derandomized, no example database) and without per-example deadlines."""
    return settings(max_examples=max(1, round(examples * SCALE)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _nested(depth: int) -> Any:
    node: Any = 1
    for _ in range(depth):
        node = [node]
    return node


JUNK = [None, "", "abc", "ünïcødé ☃ \u202e", "\x00", "line\nbreak", "tab\there \u2028", [], {},
        {"x": [1, {"y": None}]}, [1, 2, 3], -1, 0, -0.5, -1e300, 1e300, 1e-300, 10**9, 10**12, 2**63, 10**30,
        float("nan"), float("inf"), float("-inf"), True, 3.5, "1e999", "-5 /s", "5 parsecs", "80 GiB", "0 s",
        "1e9 s", "../../../etc/passwd", "/tmp/x", "!!python/object/apply:os.system ['true']",
        "x" * 300, _nested(60), list(range(200))]


# ---------------------------------------------------------------- corruption strategies

def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a nested mapping/list (inner nodes included)."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found.append((*prefix, key))
        found += _paths(value, (*prefix, key))
    return found


def _get(data: Any, path: tuple) -> Any:
    for key in path:
        data = data[key]
    return data


def _scaled(value: Any, factor: float) -> Any:
    """A number, or the number inside a quantity string ('10 /s', '80 GiB'), multiplied by `factor`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        scaled = value * factor
        return int(scaled) if isinstance(value, int) and math.isfinite(scaled) else scaled
    if isinstance(value, str) and value[:1].isdigit():
        number, _, unit = value.partition(" ")
        try:
            return f"{float(number) * factor:g} {unit}".strip()
        except ValueError:
            return value
    return value


@st.composite
def corrupted_mapping(draw, data: dict) -> dict:
    """1-3 edits: delete a key or item, replace it with junk, scale a number (x -1, 0, 1e3, 1e-3, 1e12), or
    rename a key; sometimes an unknown key on top."""
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(data, path[:-1]), path[-1]
        op = draw(st.sampled_from(["delete", "replace", "replace", "scale", "scale", "rename"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = copy.deepcopy(draw(st.sampled_from(JUNK)))
        elif op == "scale":
            parent[key] = _scaled(parent[key], draw(st.sampled_from([-1, 0, 1e3, 1e-3, 1e12])))
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["", " ", "ñame", "a\nb", "kind ", key.upper() if isinstance(key, str)
                                         else "k"]))] = parent.pop(key)
    if draw(st.booleans()) and draw(st.booleans()):
        data[draw(st.sampled_from(["bogus", "ñame", "1", "a\nb"]))] = copy.deepcopy(draw(st.sampled_from(JUNK)))
    return data


@st.composite
def corrupted_bytes(draw, data: dict, dump=lambda d: yaml.safe_dump(d, sort_keys=False, allow_unicode=True)):
    """The mapping corrupted as data, or its text truncated, emptied, cut into with random bytes (often not
    UTF-8), or replaced by random unicode."""
    how = draw(st.sampled_from(["data"] * 7 + ["truncate", "empty", "binary", "splice", "unicode"]))
    text = dump(data).encode()
    if how == "data":
        return dump(draw(corrupted_mapping(data))).encode()
    if how == "truncate":
        return text[: draw(st.integers(0, max(len(text) - 1, 0)))]
    if how == "empty":
        return draw(st.sampled_from([b"", b"\n", b"   \n", b"---\n", b"~\n", b"# nothing\n"]))
    if how == "binary":
        return draw(st.binary(min_size=1, max_size=64))
    if how == "splice":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
    return draw(st.text(min_size=1, max_size=40)).encode("utf-8", errors="surrogatepass")


def _write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


# ---------------------------------------------------------------- the contract

def check_cli(kind: str, *args: Any) -> int:
    """Run the CLI: exit 0, or exit 2 with one 'error: ' line on stderr; anything else fails the test."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        CRASHED[kind] += 1
        raise result.exception  # a crash: hypothesis shows the example that caused it
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) < MAX_LINE, result.stderr[:2000]
    return result.exit_code


def check_call(kind: str, call, *args: Any) -> bool:
    """Call a reader: a result, or an InfersimError of one line (False); any other exception fails the test."""
    try:
        call(*args)
        return True
    except InfersimError as exc:
        message = str(exc)
        assert message and len(message.splitlines()) == 1 and len(message) < MAX_LINE, message[:2000]
        return False
    except Exception:
        CRASHED[kind] += 1
        raise


def tried(kind: str, code: int | bool) -> None:
    TRIED[kind] += 1
    REFUSED[kind] += code == 2 or code is False


# ---------------------------------------------------------------- the valid files we corrupt

def _inlined(path: Path) -> dict:
    """A shipped scenario with its cluster and workload references replaced by their mappings."""
    data = read_yaml(path)
    for key, folder in (("cluster", "topologies"), ("workload", "workloads")):
        if isinstance(data.get(key), str):
            ref = REPO / folder / f"{data[key]}.yaml"
            data[key] = read_yaml(ref)
            if key == "workload":
                absolute_trace_paths(data[key], ref.parent)
    if isinstance(data.get("workload"), dict):
        absolute_trace_paths(data["workload"], path.parent)
    return data


def _small(workload: dict) -> dict:
    """Few requests, so that a corrupted scenario that still validates runs in a blink."""
    workload = copy.deepcopy(workload)
    for node in [workload, *(workload.get("classes") or [])]:
        if "num_requests" in node:
            node["num_requests"] = 6
        if "duration" in node:
            node["duration"] = "2 s"
        arrival = node.get("arrival") or {}
        if arrival.get("kind") == "trace":
            arrival["window"] = {"duration": "20 s"}
        if arrival.get("kind") == "closed_loop":
            arrival["users"] = 3
    return workload


SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
SHRUNK = {p.stem: {**_inlined(p), "workload": _small(_inlined(p)["workload"])} for p in SCENARIOS}
TOPOLOGIES = {p.stem: read_yaml(p) for p in sorted((REPO / "topologies").glob("*.yaml"))}
WORKLOADS = {}
for _p in sorted((REPO / "workloads").glob("*.yaml")):
    _w = read_yaml(_p)
    absolute_trace_paths(_w, _p.parent)
    WORKLOADS[_p.stem] = _small(_w)
MODEL_CONFIGS = {name: json.loads((REPO / "simulator" / "catalog" / "models" / f"{name}.json").read_text())
                 for name in ("llama-3.1-8b", "mixtral-8x7b", "deepseek-v3", "gpt-j-6b", "opt-13b")}
H100 = str(REPO / "topologies" / "single-h100.yaml")


# ---------------------------------------------------------------- fuzzers: YAML and JSON files

@fast(200)
@given(data=st.data())
def test_corrupted_scenarios_never_crash(tmp_path, data):
    name = data.draw(st.sampled_from(sorted(SHRUNK)))
    path = _write(tmp_path / "s.yaml", data.draw(corrupted_bytes(SHRUNK[name])))
    code = check_cli("scenario", "explain", path)
    if code == 0:  # still valid: it must also run, or fail cleanly
        code = check_cli("scenario", "run", path, "-o", tmp_path / "out", "--no-plots",
                         "--set", "sim.max_time=600")
    tried("scenario", code)


@fast(120)
@given(data=st.data())
def test_corrupted_overrides_never_crash(tmp_path, write_scenario, data):
    path = write_scenario({"workload.num_requests": 5})
    keys = [".".join(map(str, p)) for p in _paths(small_scenario()) if all(isinstance(k, str) for k in p)]
    key = data.draw(st.sampled_from(keys + ["sim.max_time", "sim.allow_huge", "serving.router.kind", "a..b",
                                            "", ".", "name", "cluster.nodes", "workload.duration"]))
    value = data.draw(st.sampled_from([json.dumps(j) if not isinstance(j, float) or math.isfinite(j) else
                                       repr(j) for j in JUNK if j is not None]
                                      + ["", "[", "{a: b", ".inf", "!!python/name:os.system", "*x", "&a b"]))
    code = check_cli("--set", "explain", path, "--set", f"{key}={value}")
    if code == 0:
        code = check_cli("--set", "run", path, "-o", tmp_path / "out", "--no-plots", "--set", f"{key}={value}")
    tried("--set", code)


@fast(120)
@given(data=st.data())
def test_corrupted_topologies_never_crash(tmp_path, write_scenario, data):
    name = data.draw(st.sampled_from(sorted(TOPOLOGIES)))
    topo = _write(tmp_path / "topo.yaml", data.draw(corrupted_bytes(TOPOLOGIES[name])))
    tried("topology", check_cli("topology", "explain", write_scenario({"cluster": str(topo)})))


@fast(120)
@given(data=st.data())
def test_corrupted_model_configs_never_crash(tmp_path, write_scenario, data):
    name = data.draw(st.sampled_from(sorted(MODEL_CONFIGS)))
    config = _write(tmp_path / "m" / "config.json",
                    data.draw(corrupted_bytes(MODEL_CONFIGS[name], dump=json.dumps)))
    scenario = write_scenario({"model": str(config), "cluster": str(REPO / "topologies" / "hgx-h100.yaml"),
                               "deployment.tensor_parallel": 8})
    tried("config.json", check_cli("config.json", "explain", scenario))


@fast(60)
@given(data=st.data())
def test_corrupted_workloads_never_crash(tmp_path, data):
    name = data.draw(st.sampled_from(sorted(WORKLOADS)))
    path = _write(tmp_path / "w.yaml", data.draw(corrupted_bytes(WORKLOADS[name])))
    tried("workload", check_cli("workload", "workload", "describe", path, "-o", tmp_path / "plots"))


def _tiny_sweep(tmp_path: Path) -> dict:
    base = tmp_path / "base.yaml"
    scenario = small_scenario()
    scenario["workload"]["num_requests"] = 4
    base.write_text(yaml.safe_dump(scenario))
    return {"name": "fuzz", "base": str(base), "seed": 1, "seeds": "spawn",
            "overrides": ["workload.arrival.rate=50/s"],
            "axes": {"serving.batcher.max_batch_size": [8, 16]},
            "zip": [{"workload.arrival.rate": ["10/s", "20/s"], "seed": [1, 2]}],
            "x_axis": "serving.batcher.max_batch_size",
            "metrics": ["tpot_s.p50"], "pareto": {"x": "tpot_s.p50", "y": "ttft_s.p99"}}


@fast(60)
@given(data=st.data())
def test_corrupted_sweeps_never_crash(tmp_path, data):
    path = _write(tmp_path / "sweep.yaml", data.draw(corrupted_bytes(_tiny_sweep(tmp_path))))
    out = tmp_path / f"out{TRIED['sweep']}"
    tried("sweep", check_cli("sweep", "sweep", path, "-o", out, "--no-plots", "--workers", "1"))


def _tiny_compare() -> dict:
    return {"name": "fuzz", "seed": 2, "model": "llama-3.1-8b",
            "workload": {"prompt_tokens": {"kind": "fixed", "value": 64},
                         "output_tokens": {"kind": "uniform", "low": 2, "high": 8},
                         "arrival": {"kind": "poisson", "rate": "5 /s"}, "num_requests": 3},
            "concurrency": [1, 2], "requests_per_user": 1, "min_requests": 2, "think_time": "0 s",
            "designs": [{"name": "h100", "cluster": H100, "deployment": {"weights_dtype": "bf16"}}]}


@fast(80)
@given(data=st.data())
def test_corrupted_compares_never_crash(tmp_path, data):
    path = _write(tmp_path / "cmp.yaml", data.draw(corrupted_bytes(_tiny_compare())))
    out = tmp_path / f"out{TRIED['compare']}"
    tried("compare", check_cli("compare", "compare", path, "-o", out, "--no-plots", "--workers", "1"))


# ---------------------------------------------------------------- fuzzers: traces and the validation CSV

CELLS = ["", " ", "x", "-3", "0", "1.5", "1e300", "nan", "inf", "-inf", "ünï", '"a,b"', "99999999999999999999",
         "9" * 5000, "0x10", "1_000", "٣", "2023-13-45 25:61:61", "null", "[]", "{}"]


@st.composite
def corrupted_lines(draw, lines: list[str]) -> bytes:
    """1-3 line edits (a cell replaced, a line dropped, truncated, duplicated, swapped for junk text or bytes;
    a JSON line's values corrupted as data), then joined with \\n or \\r\\n."""
    lines = [line.encode() for line in lines]
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["cell", "cell", "json", "drop", "truncate", "junk", "bytes", "duplicate"]))
        text = lines[i].decode(errors="replace")
        if how == "cell" and "," in text:
            cells = text.split(",")
            cells[draw(st.integers(0, len(cells) - 1))] = draw(st.sampled_from(CELLS))
            lines[i] = ",".join(cells).encode()
        elif how == "json" and text.startswith("{"):
            try:
                lines[i] = json.dumps(draw(corrupted_mapping(json.loads(text)))).encode()
            except ValueError:  # this line is already broken: leave it so
                pass
        elif how == "drop":
            del lines[i]
        elif how == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif how == "junk":
            lines[i] = draw(st.text(max_size=30)).encode("utf-8", errors="surrogatepass")
        elif how == "bytes":
            lines[i] = draw(st.binary(min_size=1, max_size=20))
        else:
            lines.insert(i, lines[i])
    return draw(st.sampled_from([b"\n", b"\r\n"])).join(lines) + b"\n"


def _head(path: Path, n: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [next(handle).rstrip("\n") for _ in range(n)]


TRACES = REPO / "workloads" / "traces"
SERVEGEN_TRACE = ["client_id,window_start_s,rate_rps,cv,iat_dist,iat_shape,iat_scale",
                  "0,0,1.5,1,Gamma,1,0.6", "1,0,0.5,2,Weibull,0.5,1.2", "0,600,2,1,Gamma,0.8,0.7",
                  "1,600,0,0,,0,0"]
SERVEGEN_DATASET = [
    json.dumps({"client_id": 0, "windows": {"0": {"input_tokens": "{5: 0.5, 50: 0.5}",
                                                  "output_tokens": "{3: 0.9, 300: 0.1}"}}}),
    json.dumps({"client_id": 1, "windows": {"0": {"text_tokens": "{40: 1.0}", "image_tokens": "{500: 1}",
                                                  "image_count": "{0: 0.5, 2: 0.5}",
                                                  "output_tokens": "{7: 1.0}"}}})]


def _generate(workload: dict) -> None:
    from simulator.config.load import validate
    from simulator.config.workload import WorkloadSpec
    from simulator.workload.arrivals import generate

    generate(validate(WorkloadSpec, workload, "w.yaml"), 0)


REPLAYS = [{}, {"window": {"start": "1 s", "duration": "30 s"}}, {"resample": True}, {"time_scale": 3},
           {"rate": "2 /s"}, {"dither": "1 s"}]


@fast(300)
@given(data=st.data())
def test_corrupted_traces_never_crash(tmp_path, data):
    kind = data.draw(st.sampled_from(["azure", "mooncake", "servegen", "sharegpt"]))
    replay = data.draw(st.sampled_from(REPLAYS))
    n = data.draw(st.sampled_from([None, 5]))
    if kind == "servegen":
        folder = tmp_path / "sg"
        which = data.draw(st.sampled_from(["trace.csv", "dataset.jsonl"]))
        _write(folder / "trace.csv", "\n".join(SERVEGEN_TRACE).encode() + b"\n")
        _write(folder / "dataset.jsonl", "\n".join(SERVEGEN_DATASET).encode() + b"\n")
        _write(folder / which, data.draw(corrupted_lines(SERVEGEN_TRACE if which == "trace.csv" else
                                                         SERVEGEN_DATASET)))
        arrival = {"kind": "trace", "format": "servegen", "path": str(folder), **replay}
        workload = {"arrival": arrival, "num_requests": n or 5} if replay.get("resample") else \
            {"arrival": arrival}
    else:
        source = {"azure": TRACES / "azure" / "code.csv", "mooncake": TRACES / "mooncake" /
                  "conversation.jsonl.gz", "sharegpt": TRACES / "sharegpt" / "lengths.csv"}[kind]
        path = _write(tmp_path / source.name, data.draw(corrupted_lines(_head(source, 30))))
        if kind == "sharegpt":
            lengths = {"kind": "empirical", "format": "sharegpt", "path": str(path)}
            workload = {"arrival": {"kind": "poisson", "rate": "5 /s"}, "num_requests": 20,
                        "prompt_tokens": lengths, "output_tokens": lengths}
        else:
            workload = {"arrival": {"kind": "trace", "format": kind, "path": str(path), **replay}}
            if n or replay.get("resample"):
                workload["num_requests"] = n or 5
    tried(kind, check_call(kind, _generate, workload))


VALIDATION_ROWS = [line for line in (REPO / "validation" / "calibration.csv").read_text().splitlines()
                   if line.startswith(("case_id,", "TRT05_A100x1_GPTJ_BS1_DECODE,", "TRTOV_H100x1_L31_8B_128"))]


@fast(120)
@given(data=st.data())
def test_corrupted_validation_csv_never_crash(tmp_path, data):
    """Two cheap published cases, corrupted: a file that still reads is simulated by `infersim validate`."""
    from simulator.studies.validate.cases import read_cases

    path = _write(tmp_path / "cases.csv", data.draw(corrupted_lines(VALIDATION_ROWS)))
    if check_call("validation CSV", read_cases, path):
        code = check_cli("validation CSV", "validate", path, "-o", tmp_path / "out", "--no-plots")
    else:
        code = 2
    tried("validation CSV", code)


# ---------------------------------------------------------------- property: valid scenarios finish

MODELS = {"llama-3.1-8b": (1, 2, 4, 8), "llama-2-7b": (1, 2, 4, 8), "mixtral-8x7b": (2, 4, 8)}
RAN: Counter[str] = Counter()


@st.composite
def valid_scenarios(draw) -> dict:
    model = draw(st.sampled_from(sorted(MODELS)))
    tp = draw(st.sampled_from(MODELS[model]))
    replicas = draw(st.integers(1, 8 // tp))
    batch = draw(st.integers(1, 64))
    if draw(st.booleans()):
        batcher = {"kind": "continuous", "max_batch_size": batch,
                   "max_batched_tokens": draw(st.integers(max(batch, 512), 4096)),
                   "chunked_prefill": draw(st.booleans()),
                   "kv_policy": draw(st.sampled_from(["reserve", "paged"]))}
    else:
        batcher = {"kind": "static", "max_batch_size": batch, "max_wait": draw(st.sampled_from([0, "5 ms"]))}
    router = draw(st.sampled_from(["round_robin", "least_outstanding_tokens", "shortest_queue", "affinity"]))
    arrival = draw(st.sampled_from([
        {"kind": "poisson", "rate": "30 /s"}, {"kind": "gamma", "rate": "30 /s", "cv": 3.0},
        {"kind": "on_off", "rate": "60 /s", "on_time": "0.2 s", "off_time": "0.3 s"},
        {"kind": "offline"}, {"kind": "closed_loop", "users": 4}]))
    low = draw(st.integers(1, 1500))
    lengths = draw(st.sampled_from(["fixed", "uniform", "lognormal"]))
    prompt = {"fixed": {"kind": "fixed", "value": low}, "uniform": {"kind": "uniform", "low": low,
              "high": low + 500}, "lognormal": {"kind": "lognormal", "mean": low, "sigma": 0.8, "max": 4096}}
    return {
        "name": "prop", "seed": draw(st.integers(0, 2**31)), "model": model,
        "cluster": str(REPO / "topologies" / "hgx-h100.yaml"),
        "deployment": {"tensor_parallel": tp, "replicas": replicas},
        "serving": {"batcher": batcher, "router": {"kind": router}},
        "workload": {"arrival": arrival, "prompt_tokens": prompt[lengths],
                     "output_tokens": {"kind": "uniform", "low": 1, "high": draw(st.integers(1, 300))},
                     "num_requests": draw(st.integers(1, 40))},
    }


@fast(40)
@given(data=valid_scenarios())
def test_valid_small_scenarios_finish_with_invariants(data):
    from simulator.config.load import load_scenario_dict
    from simulator.run import run

    try:
        scenario = load_scenario_dict(data, "prop.yaml", REPO)
    except InfersimError:
        RAN["refused"] += 1
        return  # e.g. a KV-cache too small for a prompt: a clean refusal is allowed
    summary = run(scenario).summary  # the engine raises InvariantError if conservation fails
    RAN["ran"] += 1
    r = summary["requests"]
    assert r["arrived"] == r["completed"] + r["dropped"] + r["in_flight"] == data["workload"]["num_requests"]
    assert r["in_flight"] == 0  # no sim.max_time: every request finishes or is dropped (a prompt over budget)
    util = summary["utilization"]
    for value in [util["compute_mean"], util["memory_bw_mean"], *util["links"].values()]:
        assert value is None or 0.0 <= value <= 1.0 + 1e-9, util
    if r["completed"]:  # with every request dropped (a prompt over the token budget) there are no latencies
        assert 0 < summary["ttft_s"]["p50"] <= summary["e2e_s"]["p50"] + 1e-12


def test_zz_report_how_many_malformed_inputs_were_tried():
    """Printed with `pytest -s` (the numbers for the record): inputs tried per kind, refused in one line, and
    crashes (each crash also fails the fuzzer that found it)."""
    kinds = ["scenario", "--set", "topology", "config.json", "workload", "sweep", "compare", "azure",
             "mooncake", "servegen", "sharegpt", "validation CSV"]
    rows = [f"  {k:15} tried {TRIED[k]:4}, refused in one line {REFUSED[k]:4}, still valid {TRIED[k] - REFUSED[k]:4},"
            f" crashed {CRASHED[k]}" for k in kinds]
    print(f"\nfuzzers tried {sum(TRIED.values())} corrupted inputs, {sum(CRASHED.values())} crashed:\n"
          + "\n".join(rows) + f"\n  valid random scenarios: ran {RAN['ran']}, refused {RAN['refused']}")
    if TRIED:  # when the fuzzers ran in this session (not when this test is selected alone)
        assert all(TRIED[k] for k in kinds) and not CRASHED, (TRIED, CRASHED)
        assert RAN["ran"] >= 30  # the property is not vacuous: most valid scenarios do run
