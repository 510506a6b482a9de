"""The map in docs/architecture.md stays true: every module is on it, and imports follow its rules."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from conftest import REPO
from importlinter.cli import lint_imports

MAP = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "simulator"


def modules_on_disk() -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py")
            if p.name != "__init__.py" or p.parent == PACKAGE}


def modules_on_the_map() -> set[str]:
    """Every `path.py` the map names, written from the package root (`simulator/x.py`) or from a package
    (`engine/x.py`)."""
    named = set(re.findall(r"`((?:simulator/)?[a-z_]+(?:/[a-z_]+)*\.py)(?::\w+)?`", MAP.read_text()))
    return {name if name.startswith("simulator/") else f"simulator/{name}" for name in named}


def test_every_module_is_on_the_map_and_the_map_names_no_missing_module():
    on_disk, on_map = modules_on_disk(), modules_on_the_map()
    assert sorted(on_disk - on_map) == [], "modules docs/architecture.md does not describe"
    assert sorted(p for p in on_map - on_disk if not (REPO / p.removeprefix("simulator/")).exists()) == []


def test_imports_follow_the_layers(capsys):
    assert lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True) == 0, \
        capsys.readouterr().out


def test_a_wrong_way_import_breaks_the_contracts(tmp_path):
    """The contracts bite: a copy of the package where physics imports a study and results import SimPy."""
    copy = tmp_path / "simulator"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "catalog"))
    with open(copy / "hardware" / "energy.py", "a", encoding="utf-8") as f:
        f.write("\nfrom simulator.studies import sweep  # noqa\n")
    with open(copy / "results" / "summary.py", "a", encoding="utf-8") as f:
        f.write("\nimport simpy  # noqa\n")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command(['--no-cache'])"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Packages import down the data flow only BROKEN" in done.stdout
    assert "SimPy only in the engine BROKEN" in done.stdout
    assert "simulator.hardware.energy -> simulator.studies.sweep" in done.stdout
    where = [sys.executable, "-c", "import importlib.util; print(importlib.util.find_spec('simulator').origin)"]
    assert subprocess.run(where, cwd=tmp_path, env=env, capture_output=True, text=True).stdout.startswith(
        str(tmp_path))  # the copy was checked, not the installed package
