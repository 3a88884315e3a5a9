"""Small spectral libraries and configs shared by the spectral tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from misomap.config import RunConfig, config_from_dict
from misomap.spectra.config import AxisSpec
from misomap.spectra.library import SpectralLibrary
from misomap.spectra.synthetic import synthetic_library

MIR_AXIS = AxisSpec(start=600, stop=4000, step=16)
NIR_AXIS = AxisSpec(start=1350, stop=2550, step=16)
PROPS = ("total_c", "organic_c", "inorganic_c", "clay")


def small_library(n: int = 120, seed: int = 0, nir_fraction: float = 0.5) -> SpectralLibrary:
    """A synthetic library on coarse axes (fast tests)."""
    return synthetic_library(n, nir_fraction, 2, MIR_AXIS, NIR_AXIS, seed=seed)


def small_config(workdir: Path, **spectral: Any) -> RunConfig:
    """A run config whose spectral section trains in seconds."""
    section = {
        "mir_axis": MIR_AXIS.model_dump(), "nir_axis": NIR_AXIS.model_dump(), "properties": list(PROPS),
        "vae": {"epochs": 5, "min_steps": 150, "hidden": [64, 32], "latent_dim": 8},
        "nir": {"epochs": 5, "min_steps": 150, "hidden": [64, 32]},
        "cv_folds": 2, "pls_max_components": 8, "limesoda": [], "chunk_size": 16, "local_workers": 2,
        "local_processes": False, "regressors": ["plsr"],
    }
    section.update(spectral)
    return config_from_dict({"workdir": str(workdir), "spectral": section})


def low_rank_spectra(n: int, channels: int = 120, rank: int = 4, repeats: int = 2, noise: float = 0.01,
                     seed: int = 0):
    """(scans, sample of each scan, observed sample means): smooth spectra of rank `rank` (the same
    absorption bands for every seed; the seed draws the samples) plus scan noise (fast tests)."""
    import numpy as np

    grid = np.linspace(0, 1, channels)
    bands = np.stack([np.exp(-((grid - c) ** 2) / 0.004) for c in np.random.default_rng(1234).uniform(0.1, 0.9, rank)])
    rng = np.random.default_rng(seed)
    clean = rng.normal(size=(n, rank)) @ bands + grid
    rows = np.repeat(np.arange(n), repeats)
    scans = clean[rows] + noise * rng.normal(size=(len(rows), channels))
    means = scans.reshape(n, repeats, channels).mean(1)
    return scans.astype(np.float32), rows, means.astype(np.float32)
