"""The Zarr spectral library (local and on real S3) and the OSSL / LimeSoDa readers."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from misomap.spectra.errors import LibraryFormatError, MissingPropertyError, SampleIdMismatchError
from misomap.spectra.library import (open_library_group, pair_rows, read_library, read_sensor, sensor_rows,
                                     write_library)
from misomap.spectra.readers import properties_from_frame, read_limesoda, read_ossl_csv
from tests.support.spectral_helpers import small_library


def _assert_same(a, b):
    assert a.property_names == b.property_names
    np.testing.assert_array_equal(a.sample_id, b.sample_id)
    np.testing.assert_array_equal(a.properties, b.properties)
    assert sorted(a.sensors) == sorted(b.sensors)
    for name in a.sensors:
        sa, sb = a.sensors[name], b.sensors[name]
        np.testing.assert_array_equal(sa.sample_id, sb.sample_id)
        np.testing.assert_array_equal(sa.axis, sb.axis)
        np.testing.assert_array_equal(sa.values, sb.values)
        assert (sa.quantity, sa.unit) == (sb.quantity, sb.unit)


def test_library_roundtrip_local_and_row_slices(tmp_path):
    lib = small_library(40)
    url = str(tmp_path / "lib.zarr")
    write_library(lib, url, chunk_rows=16)
    back = read_library(url)
    _assert_same(lib, back)
    group = open_library_group(url, None)
    assert sensor_rows(group, "mir") == 40
    part = read_sensor(group, "mir", 10, 25)
    np.testing.assert_array_equal(part.values, lib.sensors["mir"].values[10:25])
    np.testing.assert_array_equal(part.sample_id, lib.sensors["mir"].sample_id[10:25])


def test_library_roundtrip_on_s3(s3_server, s3_bucket, s3fs_filesystem):
    lib = small_library(30, seed=3)
    url = f"s3://{s3_bucket}/spectra/lib.zarr"
    write_library(lib, url, s3_server.storage_options(), chunk_rows=8)
    assert s3fs_filesystem.exists(f"{s3_bucket}/spectra/lib.zarr/mir/spectra/zarr.json")
    _assert_same(lib, read_library(url, s3_server.storage_options()))
    part = read_sensor(open_library_group(url, s3_server.storage_options()), "nir", 2, 9)
    np.testing.assert_array_equal(part.values, lib.sensors["nir"].values[2:9])


def test_not_a_library_and_unknown_sensor(tmp_path):
    with pytest.raises(LibraryFormatError, match="no spectral library"):
        read_library(str(tmp_path / "absent.zarr"))
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(LibraryFormatError, match="not a misomap spectral library"):
        read_library(str(tmp_path / "plain.zarr"))
    url = str(tmp_path / "lib.zarr")
    write_library(small_library(20), url)
    with pytest.raises(LibraryFormatError, match="no sensor 'visnir'"):
        read_sensor(open_library_group(url, None), "visnir")


def test_library_missing_a_property_names_it():
    lib = small_library(20)
    with pytest.raises(MissingPropertyError, match=r"\['soc_stock'\].*total_c"):
        lib.targets(("clay", "soc_stock"), lib.sample_id)


def test_nir_and_mir_ids_that_do_not_match():
    mir_ids = np.array(["a", "b", "c"])
    np.testing.assert_array_equal(pair_rows(mir_ids, np.array(["c", "a"])), [2, 0])
    with pytest.raises(SampleIdMismatchError, match=r"1 of 2 sample ids have no partner.*'zz'"):
        pair_rows(mir_ids, np.array(["a", "zz"]))
    with pytest.raises(SampleIdMismatchError, match="duplicate"):
        pair_rows(mir_ids, np.array(["a", "a"]))


def test_ossl_csv_repeats_and_percent_reflectance():
    wn = [600, 602, 604]
    rows = [["s1", 0.1, 0.2, 0.3], ["s2", 0.5, 0.6, 0.7], ["s1", 0.11, 0.21, 0.31]]
    frame = pd.DataFrame(rows, columns=["id.layer_uuid_txt", *[f"scan_mir.{w}_abs" for w in wn]])
    mir = read_ossl_csv(io.StringIO(frame.to_csv(index=False)), "mir")
    assert mir.sample_id.tolist() == ["s1", "s2"] and mir.values.shape == (2, 2, 3)
    np.testing.assert_allclose(mir.values[0, 1], [0.11, 0.21, 0.31], rtol=1e-6)
    assert np.isnan(mir.values[1, 1]).all(), "s2 has one scan: its second repeat is absent"
    assert (mir.quantity, mir.unit) == ("absorbance", "cm-1") and mir.axis.tolist() == wn
    nir = pd.DataFrame([["s1", 40.0, 50.0]], columns=["id.layer_uuid_txt", "scan_nir.1350_ref", "scan_nir.1352_ref"])
    spectra = read_ossl_csv(io.StringIO(nir.to_csv(index=False)), "nir")
    np.testing.assert_allclose(spectra.values[0, 0], [0.4, 0.5])
    with pytest.raises(LibraryFormatError, match="scan_visnir"):
        read_ossl_csv(io.StringIO(nir.to_csv(index=False)), "visnir")


def test_ossl_properties_mapping_and_missing_column():
    frame = pd.DataFrame({"id.layer_uuid_txt": ["a", "b"], "caco3_usda.a54_w.pct": [10.0, 0.0],
                          "clay.tot_usda.a334_w.pct": [20.0, 35.0]})
    ids, values = properties_from_frame(frame, ("inorganic_c", "clay"))
    assert ids.tolist() == ["a", "b"]
    np.testing.assert_allclose(values, [[1.2, 20.0], [0.0, 35.0]])
    with pytest.raises(MissingPropertyError, match="ph"):
        properties_from_frame(frame, ("ph",))


@pytest.mark.parametrize(("name", "unit", "n"), [("H.138", "cm-1", 138), ("SSP.460", "nm", 460)])
def test_limesoda_reader(name, unit, n):
    ds = read_limesoda(name)
    assert ds.spectra.unit == unit and ds.spectra.values.shape[:2] == (n, 1)
    assert ds.property_names == ("organic_c", "ph", "clay")
    assert ds.properties.shape == (n, 3) and set(np.unique(ds.folds)) == set(range(1, 11))
    assert 0 < np.nanmin(ds.spectra.values) and np.nanmax(ds.spectra.values) < 1.5, "percent -> fraction"
