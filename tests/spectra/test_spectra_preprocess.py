"""Spectral preprocessing transformers and the bad-input checks."""

from __future__ import annotations

import numpy as np
import pytest

from misomap.spectra.config import AxisSpec
from misomap.spectra.errors import SampleIdMismatchError, SpectralGridError, SpectralValueError
from misomap.spectra.library import SensorSpectra
from misomap.spectra.preprocess import (ReflectanceToAbsorbance, Resample, axis_values, check_unit, common_axis,
                                        preprocess, spectral_pipeline, validate_sensor)
from misomap.models.spectral.regressors import skewed_columns


def test_resample_from_another_descending_grid_is_exact_for_linear_spectra():
    src = np.linspace(4100, 500, 901)            # descending, 4 cm-1, like many instruments
    X = np.stack([0.001 * src + 1.0, -0.0005 * src + 3.0])
    tgt = axis_values(AxisSpec(start=600, stop=4000, step=2))
    out = Resample(src, tgt).fit_transform(X)
    np.testing.assert_allclose(out, np.stack([0.001 * tgt + 1.0, -0.0005 * tgt + 3.0]), rtol=1e-5)


def test_resample_refuses_a_grid_that_does_not_cover_the_model_axis():
    src = np.arange(650, 3901, 4.0)
    with pytest.raises(SpectralGridError, match=r"650\.\.3898.*600\.\.4000"):
        Resample(src, axis_values(AxisSpec(start=600, stop=4000, step=2))).fit(np.ones((2, src.size)))
    with pytest.raises(SpectralGridError, match="channels"):
        Resample(src, src).fit(np.ones((2, 10)))


def test_log_inverse_reflectance_and_negative_reflectance():
    np.testing.assert_allclose(ReflectanceToAbsorbance().fit_transform(np.array([[1.0, 0.1, 0.01]])), [[0, 1, 2]],
                               atol=1e-6)
    with pytest.raises(SpectralValueError, match="rows \\[1\\]"):
        ReflectanceToAbsorbance().fit_transform(np.array([[0.5, 0.5], [0.5, -0.1]]))


def _sensor(values, quantity="reflectance"):
    ids = np.array([f"s{i}" for i in range(values.shape[0])])
    return SensorSpectra(ids, np.arange(values.shape[2], dtype=float), values, quantity, "nm")


def test_validate_names_samples_with_nans_and_negative_reflectance():
    values = np.full((3, 2, 5), 0.5, dtype=np.float32)
    values[0, 1] = np.nan                     # an absent repeat is fine
    validate_sensor(_sensor(values), "nir")
    bad = values.copy()
    bad[2, 0, 3] = np.nan
    with pytest.raises(SpectralValueError, match=r"nir: 1 samples have NaN.*\['s2'\]"):
        validate_sensor(_sensor(bad), "nir")
    neg = values.copy()
    neg[1, 0, 0] = -0.01
    with pytest.raises(SpectralValueError, match=r"negative reflectance.*\['s1'\]"):
        validate_sensor(_sensor(neg), "nir")
    validate_sensor(_sensor(neg, "absorbance"), "mir")   # negative absorbance is physically possible
    fill = values.copy()
    fill[0, 0, 2] = 1e30                      # a fill value, finite but no spectrum
    with pytest.raises(SpectralValueError, match=r"beyond ±1000.*\['s0'\]"):
        validate_sensor(_sensor(fill, "absorbance"), "mir")


def test_pipeline_snv_and_savgol():
    rng = np.random.default_rng(0)
    src = np.linspace(1300, 2600, 300)
    X = rng.uniform(0.2, 0.6, (4, 300))
    out = preprocess(X, src, AxisSpec(start=1350, stop=2550, step=2), "reflectance")
    assert out.shape == (4, 601) and out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=1), 1, atol=1e-4)
    pipe = spectral_pipeline(src, AxisSpec(start=1350, stop=2550, step=2), "reflectance", savgol_window=11)
    assert [name for name, _ in pipe.steps] == ["resample", "absorbance", "snv", "savgol"]
    assert pipe.fit_transform(X).shape == (4, 601)


def test_skewed_columns_picks_lognormal_targets():
    rng = np.random.default_rng(1)
    Y = np.stack([rng.lognormal(0, 1, 500), rng.normal(50, 5, 500), rng.normal(0, 1, 500) ** 2 * -1], axis=1)
    Y[3, 0] = np.nan
    assert skewed_columns(Y, 1.0) == (0,)


def test_validate_refuses_duplicate_ids_infinite_values_and_too_few_samples():
    values = np.full((3, 1, 5), 0.5, dtype=np.float32)
    dup = SensorSpectra(np.array(["a", "b", "a"]), np.arange(5.0), values, "reflectance", "nm")
    with pytest.raises(SampleIdMismatchError, match=r"mir: 1 sample ids occur on more than one row.*\['a'\]"):
        validate_sensor(dup, "mir")
    inf = values.copy()
    inf[1, 0, 2] = np.inf
    with pytest.raises(SpectralValueError, match=r"infinite values.*\['s1'\]"):
        validate_sensor(_sensor(inf), "nir")
    with pytest.raises(SpectralValueError, match="1 sample in the library but at least 2"):
        validate_sensor(_sensor(values[:1]), "mir", min_samples=2)


def test_common_axis_is_the_intersection_on_the_model_grid():
    bounds = AxisSpec(start=600, stop=4000, step=2)
    nrw = common_axis({"NRW.115": (549.6, 3799.0)}, bounds)          # a real instrument's range
    assert (nrw.start, nrw.stop, nrw.step) == (600, 3798, 2)
    both = common_axis({"NRW.115": (549.6, 3799.0), "O.32": (751.1, 3800.0)}, bounds)
    assert (both.start, both.stop) == (752, 3798)
    spectra = np.ones((2, 1686))
    Resample(np.linspace(549.6, 3799.0, 1686), axis_values(both)).fit(spectra)   # covered: no error
    with pytest.raises(SpectralGridError, match=r"no usable overlap.*FT-NIR 4000..10000"):
        common_axis({"FT-NIR": (4000, 10000)}, bounds)        # NIR in wavenumbers: one shared channel
    visnir = SensorSpectra(np.array(["a"]), np.arange(350.0, 2501.0), np.ones((1, 1, 2151)), "reflectance", "nm")
    with pytest.raises(SpectralGridError, match="mir: spectra on a nm axis but the model axis is in cm-1"):
        check_unit(visnir, "cm-1", "mir")
