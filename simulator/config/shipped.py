"""Where the project's shipped data folders are when infersim runs from any folder: `topologies/`,
`workloads/` (with their trace slices) and `scenarios/`.

A checkout (and the README's editable install) keeps them beside the `simulator` package; a wheel installs them
under `<prefix>/share/infersim/` (`[tool.setuptools.data-files]` in pyproject.toml). Names resolve first
from the scenario's own folders (config/load.py), then from these.
"""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

from simulator.errors import ScenarioError

FOLDERS = ("topologies", "workloads", "scenarios")
_PROJECT = Path(__file__).resolve().parent.parent.parent  # the checkout that holds simulator/


def shipped_dir(folder: str) -> Path | None:
    """The shipped `folder` (one of FOLDERS), or None when this installation has none."""
    roots = ([_PROJECT] if _is_checkout(_PROJECT) else []) + [Path(sysconfig.get_path("data")) / "share" / "infersim"]
    for root in roots:
        if (root / folder).is_dir():
            return root / folder
    return None


def _is_checkout(root: Path) -> bool:
    """The package's parent is the infersim project (not some unrelated folder that happens to hold one)."""
    return (root / "pyproject.toml").is_file() and (root / "simulator" / "__init__.py").is_file()


def default_scenario() -> Path | None:
    """The embedded default scenario `infersim run` runs with no argument."""
    folder = shipped_dir("scenarios")
    path = folder / "default.yaml" if folder is not None else None
    return path if path is not None and path.is_file() else None


def copy_starter(dest: Path) -> int:
    """Copy the shipped folders into `dest` (new or empty) for the user to edit; the number of files copied."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ScenarioError("", "exists and is not an empty folder; allowed: a new or empty folder", str(dest))
    sources = [(folder, shipped_dir(folder)) for folder in FOLDERS]
    found = [(folder, source) for folder, source in sources if source is not None]
    if len(found) < len(sources):
        missing = sorted({folder for folder, _ in sources} - {folder for folder, _ in found})
        raise ScenarioError("", f"this installation ships no {', '.join(missing)} to copy", str(dest))
    for folder, source in found:
        shutil.copytree(source, dest / folder, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    return sum(1 for path in dest.rglob("*") if path.is_file())
