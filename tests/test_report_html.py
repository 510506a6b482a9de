"""Each kind of report.html (run, sweep, comparison, validation) opened in a real headless Chromium (Debian's
package, driven by selenium): it renders with no console error and no network request, every chart has a
title and words (not dotted keys) on its axes, and the charts hold the numbers of the tables they come from.
A screenshot of each page goes to results/report-screenshots/.

Locally the test skips when /usr/bin/chromium is absent; `.ci/run` installs it and sets
INFERSIM_REQUIRE_BROWSER=1, so there a missing browser fails instead of skipping."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from typer.testing import CliRunner

from simulator.cli import app

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "results" / "report-screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000"]
DOTTED = re.compile(r"\b[a-z_]+\.[a-z_0-9]+\b")  # tpot_s.p50, throughput.output_tokens_per_s


def _browser_or_skip():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        if os.environ.get("INFERSIM_REQUIRE_BROWSER"):
            pytest.fail(f"{', '.join(missing)} missing but INFERSIM_REQUIRE_BROWSER is set (.ci/run installs "
                        "Debian's chromium and chromium-driver)")
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="infersim-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    return driver, profile


@pytest.fixture(scope="module")
def browser():
    driver, profile = _browser_or_skip()
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _invoke(*args) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


_CHARTS = """
return Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => {
  const axes = {};
  for (const k of Object.keys(d._fullLayout)) {
    if (/^[xy]axis\\d*$/.test(k)) axes[k] = (d._fullLayout[k].title || {}).text || '';
  }
  return {title: ((d.layout.title || {}).text) || '', axes: axes, rendered: !!d.querySelector('svg.main-svg'),
          data: d.data.map(t => ({type: t.type, name: t.name || '', x: Array.from(t.x || []),
                                  y: Array.from(t.y || [])}))};
});
"""


def _open(browser, page: Path, name: str) -> list[dict]:
    """Load the page, check it rendered cleanly and offline, save its screenshot; return its charts."""
    browser.get(page.resolve().as_uri())
    browser.execute_script("return document.readyState")
    charts = browser.execute_script(_CHARTS)
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    remote = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('file:'))")
    assert remote == [], f"the page fetched {remote}"
    assert charts and all(c["rendered"] for c in charts)
    for chart in charts:
        assert chart["title"], "a chart without a title"
        for axis, text in chart["axes"].items():
            if axis in ("xaxis", "yaxis") or text:  # extra axes of a chart may share the first one's title
                assert text and not DOTTED.search(text), f"{chart['title']}: {axis} titled {text!r}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 40, 8000))
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    browser.set_window_size(1280, 1000)
    return charts


def _chart(charts: list[dict], title_start: str) -> dict:
    return next(c for c in charts if c["title"].startswith(title_start))


def test_run_report_renders_and_holds_the_runs_numbers(browser, tmp_path):
    out = tmp_path / "run"
    _invoke("run", REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml", "-o", out, "--set", "workload.num_requests=60",
            "--set", "deployment.tensor_parallel=4", "--set", "deployment.replicas=2")
    summary = json.loads((out / "summary.json").read_text())
    charts = _open(browser, out / "report.html", "run")
    assert len(charts) == 5  # latency CDFs, over time, breakdown, memory tiers, links
    ttft = next(t for t in _chart(charts, "Latency")["data"] if "TTFT" in t["name"])
    requests = pd.read_parquet(out / "requests.parquet")
    assert len(ttft["x"]) == (requests["status"] == "completed").sum()
    assert np.median(ttft["x"]) == pytest.approx(summary["ttft_s"]["p50"] * 1e3, rel=1e-9)
    bars = _chart(charts, "Where")["data"][0]
    assert dict(zip(bars["x"], bars["y"])) == pytest.approx({k: v or 0.0 for k, v in
                                                             summary["bottleneck_share"].items()})
    links = _chart(charts, "Link utilisation")
    assert summary["network"]["busiest_link"] in browser.execute_script(
        "return Array.from(document.querySelectorAll('.plotly-graph-div'))[4].data[0].y")
    assert links["axes"]["xaxis"] == "simulated time (s)"
    hbm = browser.execute_script("return Array.from(document.querySelectorAll('.plotly-graph-div'))[3].data[0].y")
    # equal time buckets over the whole span: their mean is the run's use of the tier
    assert np.mean(hbm) == pytest.approx(summary["utilization"]["memory_tiers"]["hbm"]["utilization"], abs=1e-5)
    text = browser.find_element("tag name", "body").text
    assert "The bottleneck is" in text and f"{summary['requests']['completed']} / 0 / 0" in text

    # infersim report DIR rebuilds the same charts from the folder's tables
    first = (out / "report.html").read_text()
    (out / "report.html").unlink()
    _invoke("report", out)
    assert (out / "report.html").read_text() == first.replace(f"<p>{_description()}</p>\n", "")  # no scenario file


def _description() -> str:
    import html

    spec = yaml.safe_load((REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml").read_text())
    return html.escape(spec["description"].strip())


def test_sweep_report_renders_and_holds_the_sweep_table(browser, tmp_path):
    file = tmp_path / "sweep.yaml"
    file.write_text(yaml.safe_dump({
        "name": "batch-cap", "base": str(REPO / "scenarios" / "default.yaml"), "seed": 3,
        "overrides": ["workload.num_requests=60", "workload.arrival.rate=40/s"],
        "axes": {"serving.batcher.max_batch_size": [1, 8, 64]}}))
    out = tmp_path / "out"
    _invoke("sweep", file, "-o", out, "--workers", "1")
    table = pd.read_parquet(out / "sweep.parquet")
    charts = _open(browser, out / "report.html", "sweep")
    tpot = _chart(charts, "TPOT p50")
    assert tpot["axes"] == {"xaxis": "batch size cap (requests)", "yaxis": "TPOT p50 (ms)"}
    assert tpot["data"][0]["y"] == pytest.approx((table["tpot_s.p50"] * 1e3).tolist())
    points = _chart(charts, "Pareto")["data"][0]
    assert points["y"] == pytest.approx(table["throughput.output_tokens_per_s_per_chip"].tolist())


def test_compare_report_renders_and_holds_the_comparison(browser, tmp_path):
    file = tmp_path / "compare.yaml"
    file.write_text(yaml.safe_dump({
        "name": "two-gpus", "seed": 1, "model": "llama-3.1-8b", "concurrency": [1, 8], "requests_per_user": 2,
        "workload": {"prompt_tokens": {"kind": "fixed", "value": 256}, "output_tokens": {"kind": "fixed",
                                                                                          "value": 32},
                     "arrival": {"kind": "closed_loop", "users": 1}, "num_requests": 4},
        "designs": [{"name": "h100", "cluster": "single-h100", "deployment": {"tensor_parallel": 1}},
                    {"name": "h200", "cluster": "hgx-h200", "deployment": {"tensor_parallel": 8}}]}))
    out = tmp_path / "out"
    _invoke("compare", file, "-o", out, "--workers", "1")
    table = pd.read_parquet(out / "compare.parquet")
    charts = _open(browser, out / "report.html", "compare")
    assert len(charts) == 3
    per_chip = _chart(charts, "output tokens/s per chip")
    h100 = next(t for t in per_chip["data"] if t["name"].startswith("h100"))
    rows = table[table["design"] == "h100"].sort_values("concurrency")
    assert h100["y"] == pytest.approx(rows["output_tokens_per_s_per_chip"].tolist())
    assert h100["x"] == pytest.approx(rows["tokens_per_s_per_user"].tolist())


def test_validation_report_renders_and_holds_the_cases(browser, tmp_path):
    rows = list(csv.DictReader((REPO / "validation" / "calibration.csv").open()))
    keep = [r for r in rows if r["case_id"] in ("TRT05_A100x1_GPTJ_BS1_DECODE", "TRT061_A100x1_L2_7B_THROUGHPUT")]
    cases = tmp_path / "cases.csv"
    with cases.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    out = tmp_path / "out"
    _invoke("validate", cases, "-o", out)
    table = pd.read_csv(out / "validation.csv")
    charts = _open(browser, out / "report.html", "validation")
    family = _chart(charts, "Predicted against measured")["data"][0]
    assert sorted(family["x"]) == pytest.approx(sorted(table["measured"]))
    assert sorted(family["y"]) == pytest.approx(sorted(table["predicted"]))
    ratios = _chart(charts, "Each case")["data"][1]
    assert sorted(ratios["x"]) == pytest.approx(sorted(table["predicted"] / table["measured"]))
