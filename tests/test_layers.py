"""The package's layering (the import-linter contracts in pyproject.toml) holds, and the check bites:
the same contracts refuse a copy of the package in which the cube imports torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())", "--no-cache"]


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(LINT, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    run = _lint(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_a_cube_module_importing_torch_breaks_the_contracts(tmp_path):
    shutil.copytree(ROOT / "misomap", tmp_path / "misomap", ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    grid = tmp_path / "misomap" / "cube" / "grid.py"
    grid.write_text(grid.read_text() + "\nimport torch  # noqa: E402,F401\n")
    run = _lint(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "misomap.cube.grid -> torch" in run.stdout
