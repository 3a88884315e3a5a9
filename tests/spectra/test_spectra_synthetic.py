"""The synthetic library: consistent properties, real band positions, repeats, multi-fidelity NIR."""

from __future__ import annotations

import numpy as np

from misomap.spectra.config import NINE_PROPERTIES, AxisSpec
from misomap.spectra.preprocess import axis_values
from misomap.spectra.synthetic import synthetic_library


def _lib(n=400):
    return synthetic_library(n, 0.2, 3, AxisSpec(start=600, stop=4000, step=2),
                             AxisSpec(start=1350, stop=2550, step=2), seed=5)


def test_properties_are_mutually_consistent():
    lib = _lib()
    p = {name: lib.properties[:, i] for i, name in enumerate(NINE_PROPERTIES)}
    assert lib.property_names == NINE_PROPERTIES
    np.testing.assert_allclose(p["total_c"], p["organic_c"] + p["inorganic_c"], rtol=1e-5)
    np.testing.assert_allclose(p["clay"] + p["silt"] + p["sand"], 100.0, rtol=1e-5)
    assert (lib.properties >= 0).all() and (p["ph"] > 3).all() and (p["ph"] < 10).all()
    assert np.corrcoef(p["inorganic_c"] > 0.1, p["ph"])[0, 1] > 0.5, "carbonate soils are alkaline"


def _band(lib, lo, hi, rows):
    ax = lib.sensors["mir"].axis
    mean = lib.sensors["mir"].mean()[rows]
    inside = (ax >= lo) & (ax <= hi)
    shoulders = ((ax >= lo - 60) & (ax < lo - 30)) | ((ax > hi + 30) & (ax <= hi + 60))
    return mean[:, inside].max(axis=1) - mean[:, shoulders].mean(axis=1)


def test_mir_bands_follow_the_constituents():
    lib = _lib()
    p = {name: lib.properties[:, i] for i, name in enumerate(NINE_PROPERTIES)}
    every = np.arange(len(lib.sample_id))
    assert np.corrcoef(_band(lib, 2480, 2560, every), p["inorganic_c"])[0, 1] > 0.8
    assert np.corrcoef(_band(lib, 2900, 2940, every), np.log1p(p["organic_c"]))[0, 1] > 0.6
    assert np.corrcoef(_band(lib, 3600, 3710, every), p["clay"])[0, 1] > 0.6
    assert np.corrcoef(_band(lib, 1960, 2020, every), p["sand"] + 0.5 * p["silt"])[0, 1] > 0.5


def test_repeats_differ_by_noise_and_nir_is_a_paired_subset():
    lib = _lib()
    mir, nir = lib.sensors["mir"], lib.sensors["nir"]
    assert mir.values.shape == (400, 3, 1701) and mir.axis[0] == 600 and mir.axis[-1] == 4000
    diff = np.abs(mir.values[:, 0] - mir.values[:, 1]).mean()
    assert 0 < diff < 0.05 * np.abs(mir.values).mean()
    assert len(nir.sample_id) == 80 and set(nir.sample_id) <= set(mir.sample_id)
    assert nir.quantity == "reflectance" and 0 < nir.values.min() and nir.values.max() <= 1
    np.testing.assert_array_equal(nir.axis, axis_values(AxisSpec(start=1350, stop=2550, step=2)))


def test_same_seed_same_library():
    a, b = _lib(50), _lib(50)
    np.testing.assert_array_equal(a.sensors["mir"].values, b.sensors["mir"].values)
    np.testing.assert_array_equal(a.properties, b.properties)
