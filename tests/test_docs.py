"""Docs that run: every fenced block of docs/quickstart.md and docs/tutorials/*.md is executed, in order, so
that the docs cannot rot.

- ```bash blocks run in bash (-e: a failing command fails the test), ```python blocks in Python;
- ```yaml file=NAME (or csv, any language) blocks are written to NAME first, exactly as shown;
- any other fenced block is refused, so nothing shown goes untested.

Each document runs in a fresh folder holding a copy of the package and the data folders (scenarios/,
topologies/, workloads/, validation/), with `infersim` and `python` running that copy: a tutorial that adds a
chip to the catalog or writes results changes nothing in the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

DOCS = [REPO / "docs" / "quickstart.md", *sorted((REPO / "docs" / "tutorials").glob("*.md"))]
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
COPIED = ("scenarios", "topologies", "workloads", "validation")


def blocks(text: str) -> list[tuple[str, str | None, str]]:
    """(language, file name or None, body) of each fenced block, in order."""
    found = []
    for match in FENCE.finditer(text):
        info = match["info"].split()
        language = info[0] if info else ""
        target = next((part.removeprefix("file=") for part in info[1:] if part.startswith("file=")), None)
        found.append((language, target, match["body"]))
    return found


def test_every_doc_is_listed_and_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    assert len(DOCS) >= 6
    for doc in DOCS:
        assert str(doc.relative_to(REPO)) in readme, f"README does not link {doc.relative_to(REPO)}"


def _workspace(tmp_path: Path) -> dict[str, str]:
    shutil.copytree(REPO / "simulator", tmp_path / "simulator",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in COPIED:
        shutil.copytree(REPO / name, tmp_path / name)
    shim = tmp_path / ".bin"
    shim.mkdir()
    (shim / "infersim").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m simulator "$@"\n')
    (shim / "infersim").chmod(0o755)
    (shim / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(tmp_path), "COLUMNS": "160", "MPLBACKEND": "Agg"}
    return env


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.stem)
def test_doc_runs(doc, tmp_path):
    env = _workspace(tmp_path)
    found = blocks(doc.read_text())
    assert found, f"{doc.name} has no fenced block"
    for number, (language, target, body) in enumerate(found, start=1):
        where = f"{doc.relative_to(REPO)} block {number} ({language})"
        if target is not None:
            path = tmp_path / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
            continue
        if language == "bash":
            command = ["bash", "-e", "-o", "pipefail", "-c", body]
        elif language == "python":
            command = [sys.executable, "-c", body]
        else:
            pytest.fail(f"{where}: a ```{language} block is neither run nor written (use bash, python or "
                        "file=NAME)")
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{where} failed:\n{body}\n--- stdout\n{done.stdout[-3000:]}\n" \
                                     f"--- stderr\n{done.stderr[-3000:]}"
