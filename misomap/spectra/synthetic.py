"""A physically plausible synthetic spectral library for demos and scale tests.

Nine mutually consistent properties (total C = organic + inorganic, clay + silt + sand = 100) drive
MIR absorbance built from the real band positions of soil constituents, with scan repeats,
instrument noise, baseline shifts and multiplicative scatter; NIR reflectance (1350-2550 nm) of a
subset of the same samples (multi-fidelity: far fewer NIR than MIR scans).
"""

from __future__ import annotations

import numpy as np

from misomap.spectra.config import NINE_PROPERTIES, AxisSpec
from misomap.spectra.library import SensorSpectra, SpectralLibrary
from misomap.spectra.preprocess import axis_values

# (centre cm-1, half-width cm-1, constituent) -- band assignments from the soil MIR literature
MIR_BANDS: tuple[tuple[float, float, str], ...] = (
    (3695, 12, "kaolinite"), (3620, 14, "clay"),            # clay-mineral O-H stretch
    (3400, 180, "water"),                                    # adsorbed water O-H
    (2920, 22, "organic"), (2850, 16, "organic"),            # aliphatic C-H stretch
    (2520, 25, "carbonate"), (1795, 14, "carbonate"),        # carbonate combination / overtone
    (1990, 30, "quartz"), (1870, 25, "quartz"), (1790, 22, "quartz"),  # quartz overtones
    (1720, 20, "organic"), (1630, 35, "organic"),            # carboxyl C=O, amide / aromatic C=C
    (1420, 60, "carbonate"),                                 # carbonate C-O asymmetric stretch
    (1160, 40, "quartz"), (1080, 45, "quartz"),              # Si-O stretch (quartz reststrahlen)
    (1030, 40, "clay"), (915, 12, "kaolinite"),              # clay Si-O, Al-OH bend
    (875, 8, "carbonate"), (800, 10, "quartz"), (780, 10, "quartz"), (713, 6, "carbonate"),
)
# (centre nm, half-width nm, constituent) -- NIR overtones and combinations
NIR_BANDS: tuple[tuple[float, float, str], ...] = (
    (1414, 15, "clay"), (1414, 30, "water"), (1730, 25, "organic"), (1912, 40, "water"),
    (2165, 12, "kaolinite"), (2205, 18, "clay"), (2310, 25, "organic"), (2340, 20, "carbonate"),
    (2350, 40, "organic"), (2450, 40, "clay"),
)


def synthetic_properties(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 9) properties in NINE_PROPERTIES order, mutually consistent."""
    texture = rng.dirichlet([1.6, 2.2, 2.6], size=n) * 100.0            # clay, silt, sand in %
    organic_c = np.clip(rng.lognormal(np.log(1.4), 0.85, n), 0.05, 45.0)  # %
    calcareous = rng.random(n) < 0.3
    inorganic_c = np.where(calcareous, np.clip(rng.lognormal(np.log(1.0), 0.7, n), 0.02, 10.0),
                           rng.uniform(0.0, 0.02, n))
    total_c = organic_c + inorganic_c
    cn_ratio = np.clip(rng.normal(12.0, 2.0, n), 8.0, 25.0)
    total_n = organic_c / cn_ratio
    ph = np.clip(5.4 + 2.0 * calcareous - 0.15 * np.log1p(organic_c) + rng.normal(0, 0.5, n), 3.5, 9.5)
    cec = np.clip(0.5 * texture[:, 0] + 2.8 * organic_c + rng.normal(0, 2.0, n), 0.5, None)
    cols = dict(total_c=total_c, total_n=total_n, inorganic_c=inorganic_c, organic_c=organic_c, ph=ph,
                cec=cec, clay=texture[:, 0], silt=texture[:, 1], sand=texture[:, 2])
    return np.stack([cols[name] for name in NINE_PROPERTIES], axis=1).astype(np.float32)


def _constituents(Y: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    p = {name: Y[:, i] for i, name in enumerate(NINE_PROPERTIES)}
    kaolinite_share = rng.beta(2, 2, len(Y))
    return {
        "clay": p["clay"] / 100.0, "kaolinite": kaolinite_share * p["clay"] / 100.0,
        "organic": np.log1p(p["organic_c"]) / 2.0, "carbonate": p["inorganic_c"] / 4.0,
        "quartz": (p["sand"] + 0.5 * p["silt"]) / 100.0,
        "water": 0.2 + 0.3 * p["clay"] / 100.0 + 0.1 * np.log1p(p["organic_c"]) + rng.normal(0, 0.03, len(Y)),
    }


def _band_matrix(axis: np.ndarray, bands: tuple[tuple[float, float, str], ...]) -> np.ndarray:
    centres = np.array([b[0] for b in bands])[:, None]
    widths = np.array([b[1] for b in bands])[:, None]
    return np.exp(-0.5 * ((axis[None, :] - centres) / widths) ** 2)


def _amplitudes(consts: dict[str, np.ndarray], bands: tuple[tuple[float, float, str], ...],
                gains: dict[str, float]) -> np.ndarray:
    return np.stack([gains[b[2]] * consts[b[2]] for b in bands], axis=1)


def _scans(clean: np.ndarray, repeats: int, rng: np.random.Generator, noise: float,
           baseline: float, scatter: float) -> np.ndarray:
    n, w = clean.shape
    ramp = np.linspace(0.0, 1.0, w, dtype=np.float32)
    mult = 1.0 + rng.normal(0, scatter, (n, repeats, 1))
    offset = rng.normal(0, baseline, (n, repeats, 1)) + rng.normal(0, baseline, (n, repeats, 1)) * ramp
    return (clean[:, None, :] * mult + offset + rng.normal(0, noise, (n, repeats, w))).astype(np.float32)


def synthetic_mir(Y: np.ndarray, axis: np.ndarray, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """MIR absorbance (n, repeats, channels) for properties Y."""
    consts = _constituents(Y, rng)
    gains = {"clay": 0.9, "kaolinite": 0.8, "organic": 0.5, "carbonate": 1.0, "quartz": 0.7, "water": 0.6}
    clean = _amplitudes(consts, MIR_BANDS, gains) @ _band_matrix(axis, MIR_BANDS)
    sample_baseline = 0.3 + 0.2 * (4000 - axis[None, :]) / 3400 * rng.uniform(0.5, 1.5, (len(Y), 1))
    return _scans(clean + sample_baseline, repeats, rng, noise=0.004, baseline=0.01, scatter=0.02)


def synthetic_nir(Y: np.ndarray, axis: np.ndarray, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """NIR reflectance (n, repeats, channels), as a fraction, for properties Y."""
    consts = _constituents(Y, rng)
    gains = {"clay": 0.12, "kaolinite": 0.08, "organic": 0.06, "carbonate": 0.10, "quartz": 0.0,
             "water": 0.15}
    absorb = _amplitudes(consts, NIR_BANDS, gains) @ _band_matrix(axis, NIR_BANDS)
    darkening = 0.25 + 0.35 * consts["organic"][:, None] - 0.1 * consts["quartz"][:, None]
    scans = _scans(absorb + darkening, repeats, rng, noise=0.003, baseline=0.01, scatter=0.015)
    return np.clip(10.0 ** (-scans), 1e-3, 1.0).astype(np.float32)


def synthetic_library(n_samples: int, nir_fraction: float, repeats: int, mir_axis: AxisSpec,
                      nir_axis: AxisSpec, seed: int = 0) -> SpectralLibrary:
    """A library with MIR for all samples and NIR for the first `nir_fraction` of them."""
    rng = np.random.default_rng(seed)
    Y = synthetic_properties(n_samples, rng)
    ids = np.array([f"syn-{i:07d}" for i in range(n_samples)])
    mir_ax, nir_ax = axis_values(mir_axis), axis_values(nir_axis)
    mir = SensorSpectra(ids, mir_ax, synthetic_mir(Y, mir_ax, repeats, rng), "absorbance", "cm-1")
    n_nir = max(2, int(round(nir_fraction * n_samples)))
    nir_rows = np.sort(rng.choice(n_samples, n_nir, replace=False))
    nir = SensorSpectra(ids[nir_rows], nir_ax, synthetic_nir(Y[nir_rows], nir_ax, repeats, rng),
                        "reflectance", "nm")
    return SpectralLibrary({"mir": mir, "nir": nir}, ids, Y, NINE_PROPERTIES,
                           {"source": f"misomap synthetic library, seed {seed}"})
