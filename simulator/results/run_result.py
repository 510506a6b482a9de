"""RunResult: everything one run produced, and how it is written to its output folder."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from simulator.config.load import Scenario
from simulator.hardware.model import ModelShape
from simulator.hardware.placement import Plan
from simulator.results import plots as plotting
from simulator.results.iteration_store import IterationStore
from simulator.results.memory_tiers import MEMORY_NAME, plan_tiers, series
from simulator.results.outputs import staged_folder
from simulator.results.report import markdown
from simulator.results.run_html import HTML_NAME, write_run_html
from simulator.results.summary import summary_json
from simulator.results.trace import TRACE_NAME, TraceBounds, write_trace


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced; `write(dir)` puts it on disk in the documented layout."""
    scenario: Scenario
    plan: Plan
    model: ModelShape
    summary: dict
    requests: pd.DataFrame
    iteration_store: IterationStore
    links: pd.DataFrame

    @property
    def iterations(self) -> pd.DataFrame:
        """Every iteration as a DataFrame, built on each call (a long run's is large: the store reads columns)."""
        return self.iteration_store.frame()

    @property
    def memory(self) -> pd.DataFrame:
        """Each memory tier's bytes and utilisation per time bucket (memory.parquet), built on each call."""
        return series(self.iteration_store, plan_tiers(self.plan, self.scenario.chip.efficiency.memory),
                      self.summary["chips"], self.summary["sim"]["simulated_s"])

    def write(self, out_dir: str | Path, plots: bool = True, trace: TraceBounds | None = None,
              png: bool = False) -> Path:
        """Write the run's folder all or nothing (outputs.py): a killed write leaves the previous folder;
        `plots`: report.html (its interactive charts), and with `png` the PNG plots too (plots/);
        `trace`: also trace.json (trace.py), bounded so."""
        out = Path(out_dir)
        self.iteration_store.finish()
        # the largest table is encoded in a thread while the rest is written (arrow releases the GIL while it
        # encodes and compresses); leaving the pool waits for it, before the folder is swapped in or removed
        with staged_folder(out) as folder, ThreadPoolExecutor(1) as background:
            iterations = background.submit(self.iteration_store.write_parquet, folder / "iterations.parquet")
            self.requests.to_parquet(folder / "requests.parquet", index=False)
            self.links.to_parquet(folder / "links.parquet", index=False)
            memory = self.memory
            memory.to_parquet(folder / MEMORY_NAME, index=False)
            if plots and png:
                plotting.write_plots(self.summary, self.requests, self.iteration_store, self.links,
                                     folder / "plots")
            if plots:
                write_run_html(folder / HTML_NAME, self.summary, self.requests, self.iteration_store, self.links,
                               self.scenario.spec.description, memory)
            text = markdown(self.summary, self.plan, self.scenario.spec.description, not self.links.empty,
                            plots and png, html=plots)
            (folder / "report.md").write_text(text, encoding="utf-8")
            (folder / "summary.json").write_text(summary_json(self.summary), encoding="utf-8")
            if trace is not None:
                write_trace(folder / TRACE_NAME, self.summary, self.requests, self.iteration_store, self.links,
                            trace)
            iterations.result()
        return out
