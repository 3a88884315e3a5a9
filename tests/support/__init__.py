"""Shared test helpers: synthetic source worlds and cubes, small spectral libraries, and the map
predictors tests name as `tests.support.<module>:factory` plug-ins."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: tests put it on sys.path and PYTHONPATH so dask workers and subprocesses
import the `tests.support` plug-ins."""
DATA = ROOT / "tests" / "data"
