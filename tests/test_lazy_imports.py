"""Start-up cost: `infersim --help` and every command's parsing import no heavy library (issue 20)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "pyarrow", "numpy", "networkx", "matplotlib", "plotly", "scipy", "simpy", "pydantic")


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nsys.stderr.write(' '.join(sorted(set(sys.modules) & {set(HEAVY)!r})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(done.stderr.split())  # stdout: what the command printed


def test_the_cli_module_imports_no_heavy_library() -> None:
    assert _imported_after("import simulator.cli") == set()


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys\nfrom simulator.cli import main\nsys.argv = ['infersim', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass")
    assert _imported_after(code) == set()


def test_the_package_names_are_the_functions_whichever_is_imported_first() -> None:
    code = ("import simulator.run\nimport simulator.studies.sweep\nfrom simulator import run, sweep, load_scenario\n"
            "assert callable(run) and run.__module__ == 'simulator.run', run\n"
            "assert sweep.__module__ == 'simulator.studies.sweep' and callable(load_scenario)")
    subprocess.run([sys.executable, "-c", code], check=True)
