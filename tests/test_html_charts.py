"""report.html's charts are the very fragments plotly.io.to_html writes, though a run does not import
plotly.io (results/html.py writes them itself): every chart of a real run's page, and figures whose text
could close a script element or whose numbers are NaN, infinite or numpy values."""

from __future__ import annotations

import numpy as np
import plotly.io as pio

from simulator import load_scenario, run
from simulator.results import html

CONFIG = {"displaylogo": False, "responsive": True}


def _plotly(fig: dict, div_id: str) -> str:
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, validate=False, config=CONFIG, div_id=div_id)


def test_every_chart_of_a_run_page_is_plotlys_own_fragment(write_scenario, tmp_path, monkeypatch):
    seen = []
    ours = html.plotly_div

    def compare(fig, config, div_id):
        seen.append(div_id)
        assert config == CONFIG
        fragment = ours(fig, config, div_id)
        assert fragment == _plotly(fig, div_id)
        return fragment

    monkeypatch.setattr(html, "plotly_div", compare)
    run(load_scenario(write_scenario({"serving.batcher.kv_policy": "paged"}), [])).write(tmp_path / "out")
    assert len(seen) >= 4  # latency CDFs, over time, breakdown, memory tiers
    assert all(f'id="{i}"' in (tmp_path / "out" / "report.html").read_text() for i in seen)


def test_text_that_could_close_the_script_and_numbers_json_lacks_are_written_as_plotly_writes_them():
    figures = [
        {"data": [{"type": "scatter", "x": [1, 2.5, float("nan")], "y": [float("inf"), -float("inf"), 3],
                   "name": "a</script><b>"}], "layout": {"height": 380, "title": {"text": "x/y <b>"}}},
        {"data": [{"type": "bar", "x": np.arange(3), "y": np.array([1.5, np.nan, 2.0]), "width": np.float64(0.5)}],
         "layout": {"width": "50%"}},
        {"data": [], "layout": {"width": 640, "template": {"layout": {"height": 200}}}},
    ]
    for fig in figures:
        assert html.plotly_div(fig, CONFIG, "chart-1") == _plotly(fig, "chart-1")
