"""Where the project's shipped data folders are when infersim runs from any folder: `topologies/`,
`workloads/` (with their trace slices) and `scenarios/`.

A checkout (and the README's editable install) keeps them beside the `simulator` package; a wheel installs them
under `<prefix>/share/infersim/` (`[tool.setuptools.data-files]` in pyproject.toml). Names resolve first
from the scenario's own folders (config/load.py), then from these.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

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
