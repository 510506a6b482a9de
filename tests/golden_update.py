"""Regenerate tests/golden/<scenario>.json from the shipped scenarios: `python tests/golden_update.py`.

Run it only when a change to the results is intended, and say why in the commit message.
"""

from __future__ import annotations

import json
from pathlib import Path

from simulator import load_scenario, run

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"


def stable_summary(summary: dict) -> dict:
    """The summary without the fields that depend on the machine (wall time, memory)."""
    return {**summary, "sim": {k: v for k, v in summary["sim"].items() if k in ("events", "simulated_s")}}


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for path in sorted((REPO / "scenarios").glob("*.yaml")):
        summary = stable_summary(run(load_scenario(path)).summary)
        (GOLDEN / f"{path.stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {path.stem}")


if __name__ == "__main__":
    main()
