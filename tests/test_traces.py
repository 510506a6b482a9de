"""Trace replay: time scale, window, resample, prefix hashes, ServeGen sampling, malformed files, describe."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, cli_error
from typer.testing import CliRunner

from simulator import load_scenario
from simulator.cli import app
from simulator.config.load import load_workload
from simulator.config.workload import TraceWindow, WorkloadSpec
from simulator.errors import ScenarioError
from simulator.workload import servegen
from simulator.workload.arrivals import generate
from simulator.workload.traces import mean_rate, read_trace

TRACES = REPO / "workloads" / "traces"
CODE = str(TRACES / "azure" / "code.csv")
SHARED = Path("/work/shared/data/traces")


def replay(**arrival) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"arrival": {"kind": "trace", "format": "azure", "path": CODE,
                                                    **arrival}})


def test_twice_the_time_scale_doubles_the_rate_and_keeps_the_lengths():
    base, fast = generate(replay(), 0), generate(replay(time_scale=2.0), 0)
    assert mean_rate(fast.arrival_s) == pytest.approx(2 * mean_rate(base.arrival_s), rel=1e-12)
    assert np.allclose(np.diff(fast.arrival_s), np.diff(base.arrival_s) / 2)
    assert np.array_equal(fast.prompt_tokens, base.prompt_tokens)
    assert np.array_equal(fast.output_tokens, base.output_tokens)
    assert len(base) == 3628 and mean_rate(base.arrival_s) == pytest.approx(3627 / 1199.101263)


def test_a_target_rate_sets_the_time_scale():
    assert mean_rate(generate(replay(rate="12 /s"), 0).arrival_s) == pytest.approx(12.0, rel=1e-12)


def test_as_is_replay_keeps_the_files_rows():
    r = generate(replay(), 0)
    first = read_trace("azure", CODE)
    assert np.array_equal(r.arrival_s, first.arrival_s) and r.arrival_s[0] == 0.0
    assert (r.prompt_tokens[:3].tolist(), r.output_tokens[:3].tolist()) == ([4808, 3180, 110], [10, 8, 27])
    assert r.arrival_s[1] == pytest.approx(0.052)  # 18:17:04.0319600 - 18:17:03.9799600


def test_window_keeps_the_span_and_restarts_the_clock():
    whole = read_trace("azure", CODE).arrival_s
    r = generate(replay(window={"start": "3 min", "duration": "2 min"}), 0)
    inside = whole[(whole >= 180) & (whole < 300)]
    assert len(r) == len(inside) > 100
    assert np.allclose(r.arrival_s, inside - 180)
    first_n = generate(WorkloadSpec.model_validate({"arrival": replay().arrival, "num_requests": 10}), 0)
    assert np.array_equal(first_n.arrival_s, whole[:10])


def test_resample_draws_rows_and_gaps_of_the_trace():
    spec = WorkloadSpec.model_validate({"arrival": {**replay().arrival.model_dump(), "resample": True},
                                        "num_requests": 10_000})
    r, trace = generate(spec, 1), read_trace("azure", CODE)
    assert len(r) == 10_000
    assert set(np.round(np.diff(r.arrival_s), 9)) <= set(np.round(np.diff(trace.arrival_s), 9))
    assert set(r.prompt_tokens.tolist()) <= set(trace.prompt_tokens.tolist())


def test_too_many_requests_for_a_window_is_one_clear_error():
    spec = WorkloadSpec.model_validate({"arrival": replay().arrival, "num_requests": 5000})
    with pytest.raises(ScenarioError) as error:
        generate(spec, 0)
    assert str(error.value).endswith("workloads/traces/azure/code.csv: num_requests: 5000, but the trace "
                                     "window holds 3628 requests; ask for fewer or set resample: true")


def test_mooncake_prefix_hashes_travel_with_their_requests():
    path = str(TRACES / "mooncake" / "conversation.jsonl.gz")
    spec = WorkloadSpec.model_validate({"arrival": {"kind": "trace", "format": "mooncake", "path": path,
                                                    "dither": "3 s"}})
    r = generate(spec, 0)
    assert len(r) == 1750 and np.all(np.diff(r.arrival_s) >= 0)
    blocks = np.array([len(h) for h in r.prefix_hashes])
    assert np.array_equal(blocks, np.ceil(r.prompt_tokens / 512))  # dithering reordered rows, not their parts
    trace = read_trace("mooncake", path)
    assert sorted(r.prefix_hashes) == sorted(trace.prefix_hashes) and trace.prefix_hashes[1][:2] == (0, 14)
    assert len(np.unique(trace.arrival_s)) < 250 and len(np.unique(r.arrival_s)) == 1750  # 3 s grid, dithered


def test_mixing_a_mooncake_class_with_a_synthetic_one_gives_the_others_empty_hashes():
    path = str(TRACES / "mooncake" / "conversation.jsonl.gz")
    spec = WorkloadSpec.model_validate({
        "duration": "60 s",  # a trace class keeps its window: it inherits num_requests, not duration
        "classes": [{"name": "kimi", "arrival": {"kind": "trace", "format": "mooncake", "path": path}},
                    {"name": "short", "arrival": {"kind": "poisson", "rate": "1 /s"},
                     "prompt_tokens": {"kind": "fixed", "value": 10},
                     "output_tokens": {"kind": "fixed", "value": 5}}]})
    r = generate(spec, 0)
    assert (r.class_id == 0).sum() == 1750 and 30 < (r.class_id == 1).sum() < 90
    assert len(r.prefix_hashes) == len(r)
    assert all((len(h) == 0) == (c == 1) for h, c in zip(r.prefix_hashes, r.class_id.tolist()))


def test_servegen_requests_follow_the_client_rates_and_length_tables():
    folder = TRACES / "servegen" / "deepseek-r1"
    windows, starts = servegen.read_windows(folder / "trace.csv.gz")
    expected = sum(w.rate_per_s * 600 for w in windows if w.start_s < starts[0] + 1200)
    r = servegen.sample(str(folder), TraceWindow(duration=1200), np.random.default_rng(0))
    assert abs(len(r) - expected) < 0.5 * len(windows) + 1  # stochastic rounding per client window
    assert r.arrival_s.min() >= 0 and r.arrival_s.max() < 1200
    pdfs = servegen.read_pdfs(folder / "dataset.jsonl.gz", {w.client: {w.start_s} for w in windows})
    allowed = set(np.concatenate([p["output_tokens"][0] for p in pdfs.values()]).tolist())
    assert set(r.output_tokens.tolist()) <= allowed and r.output_tokens.max() > 5000  # long reasoning answers


def test_full_original_traces_read_too():
    if not SHARED.is_dir():
        pytest.skip("no shared trace folder on this machine")
    conv = read_trace("azure", SHARED / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv.gz")
    assert len(conv) == 19_366 and mean_rate(conv.arrival_s) == pytest.approx(5.53, abs=0.01)
    lengths = read_trace("sharegpt", SHARED / "sharegpt-lengths" /
                         "sharegpt_8k_filtered_stats_llama2_tokenizer.csv.gz")
    assert len(lengths) == 30_731 and np.isnan(lengths.arrival_s).all()


# ---------------------------------------------------------------- paths and malformed files

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path




AZURE_ROWS = "".join(f"2023-11-16 18:17:{i:02d}.5000000,{100 + i},{10 + i}\n" for i in range(20))


@pytest.mark.parametrize("name, text, expected", [
    ("code.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n" + AZURE_ROWS[:-1].replace("115,", "abc,") + "\n",
     "line 17: ContextTokens: 'abc' is not an integer"),
    ("code.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n" + AZURE_ROWS.replace("18:17:03", "18:77:03"),
     "line 5: TIMESTAMP: '2023-11-16 18:77:03.5000000' is not a time like '2023-11-16 18:17:03.9799600'"),
    ("code.csv", "TIMESTAMP,ContextTokens,GenTokens\n" + AZURE_ROWS,
     "line 1: the header has no column 'GeneratedTokens'; expected a CSV header with the columns TIMESTAMP, "
     "ContextTokens, GeneratedTokens (the line is not shown: it may hold anything)"),
    ("code.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:00.5,3,4,5\n",
     "line 2: 4 fields, the header has 3"),
    ("code.csv.gz", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:00.5,3,-4\n",
     "line 2: GeneratedTokens: -4 is negative"),
    ("code.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n", "holds no requests"),
])
def test_a_malformed_trace_is_one_error_with_its_line_number(tmp_path, monkeypatch, name, text, expected):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "workloads" / "traces" / "azure" / name, text)
    (tmp_path / "workloads" / "w.yaml").write_text(
        f"arrival: {{kind: trace, format: azure, path: traces/azure/{name}}}\n")
    message = cli_error("workload", "describe", "workloads/w.yaml")
    assert message == f"workloads/traces/azure/{name}: {expected}"


@pytest.mark.parametrize("fmt, name, text, expected", [
    ("mooncake", "m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 2}\n{"timestamp": 3000,',
     "line 2: invalid JSON: Expecting property name enclosed in double quotes"),
    ("mooncake", "m.jsonl", '{"timestamp": 0, "input_length": 5.5, "output_length": 2}\n',
     "line 1: input_length: 5.5 is not an integer"),
    ("mooncake", "m.jsonl", '{"timestamp": 0, "output_length": 2}\n', "line 1: missing key 'input_length'"),
    ("servegen", "sg", None,
     "sg/dataset.jsonl: line 1: windows.0.output_tokens: is not a Python dict literal of "
     "{tokens: probability}; allowed: tokens 0 to 1000000000, probabilities finite and >= 0"),
])
def test_malformed_mooncake_and_servegen_files(tmp_path, monkeypatch, fmt, name, text, expected):
    monkeypatch.chdir(tmp_path)
    if fmt == "servegen":
        write(tmp_path / name / "trace.csv", ",".join(servegen.TRACE_COLUMNS) + "\n0,0,1.5,1,Gamma,1,0.6\n")
        write(tmp_path / name / "dataset.jsonl",
              '{"client_id": 0, "windows": {"0": {"input_tokens": "{5: 1.0}", '
              '"output_tokens": "__import__(1)"}}}\n')
    else:
        write(tmp_path / name, text)
        expected = f"{name}: {expected}"
    arrival = {"kind": "trace", "format": fmt, "path": str(tmp_path / name)}
    spec = WorkloadSpec.model_validate({"arrival": arrival})
    with pytest.raises(ScenarioError) as error:
        generate(spec, 0)
    assert str(error.value) == expected


def test_trace_paths_are_relative_to_the_yaml_that_names_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "elsewhere" / "workloads"
    write(folder / "traces" / "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n" + AZURE_ROWS)
    (folder / "mine.yaml").write_text("arrival: {kind: trace, format: azure, path: traces/t.csv}\n")
    spec, seed, name = load_workload(folder / "mine.yaml")
    assert spec.arrival.path == str(folder / "traces" / "t.csv") and (seed, name) == (0, "mine")
    scenario = yaml.safe_load((REPO / "scenarios" / "llama70b-hgx-h100-poisson-matched.yaml").read_text())
    scenario["cluster"] = str(REPO / "topologies" / "hgx-h100.yaml")
    scenario["workload"]["prompt_tokens"]["path"] = "workloads/traces/t.csv"  # inline: relative to scenario
    scenario["workload"]["output_tokens"]["path"] = "workloads/traces/t.csv"
    (tmp_path / "elsewhere" / "s.yaml").write_text(yaml.safe_dump(scenario))
    loaded = load_scenario(tmp_path / "elsewhere" / "s.yaml", ["workload.num_requests=5"])
    assert loaded.spec.workload.prompt_tokens.path == str(folder / "traces" / "t.csv")
    assert generate(loaded.spec.workload, 0).prompt_tokens.min() >= 100


def test_describe_prints_statistics_per_class_and_writes_plots(tmp_path):
    result = CliRunner().invoke(app, ["workload", "describe", str(REPO / "workloads" / "mixed-tenants.yaml"),
                                      "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for text in ("IAT CV", "chat", "code", "batch-summarisation", "prompt mean / p50 / p90 / p99"):
        assert text in result.stdout
    for name in ("arrivals.png", "interarrival.png", "lengths.png"):
        assert (tmp_path / name).stat().st_size > 1000
    code = CliRunner().invoke(app, ["workload", "describe", str(REPO / "scenarios" /
                                                                "llama70b-hgx-h100-azure-code.yaml"),
                                    "-o", str(tmp_path / "code")])
    assert code.exit_code == 0 and "14.6" in code.stdout and "3628" in code.stdout  # the CV of the code trace
