"""Readers of the real libraries' table layouts, built here with exactly their columns:
OSSL v1.2 MIR + soil-lab tables (key id.layer_uuid_txt) and the NeoSpectra / KSSL paired NIR + MIR
tables (key id.sample_local_c, one NIR row per handheld scan). Column names as in the OSSL data
dictionary (soilspectroscopy/ossl-manual) and the NeoSpectra import (soilspectroscopy/ossl-imports,
dataset/Neospectra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from misomap.cli import app
from misomap.spectral.store import import_library
from misomap.spectra.config import AxisSpec, NINE_PROPERTIES
from misomap.spectra.errors import LibraryFormatError, SpectralError
from misomap.spectra.library import read_library
from misomap.spectra.readers import OSSL_PROPERTY_COLUMNS
from misomap.spectra.synthetic import synthetic_library

OSSL_MIR = AxisSpec(start=600, stop=4000, step=2)        # scan_mir.600_abs .. scan_mir.4000_abs
NEO_NIR = AxisSpec(start=1350, stop=2550, step=2)        # scan_nir.1350_ref .. scan_nir.2550_ref


def _lab(ids: np.ndarray, Y: np.ndarray, key: str) -> pd.DataFrame:
    lab = {key: ids}
    for j, name in enumerate(NINE_PROPERTIES):
        column, factor = OSSL_PROPERTY_COLUMNS[name]
        lab[column] = Y[:, j] / factor
    lab["bd_usda.a4_g.cm3"] = 1.3                                     # columns misomap does not use
    return pd.DataFrame(lab)


def _ossl_mir_tables(n: int = 24):
    lib = synthetic_library(n, 0.5, 1, OSSL_MIR, NEO_NIR, seed=5)
    ids = np.array([f"{i:032x}" for i in range(n)])                  # md5-like OSSL uuids
    mir = pd.DataFrame(lib.sensors["mir"].values[:, 0], columns=[f"scan_mir.{w:g}_abs" for w in
                                                                 lib.sensors["mir"].axis])
    meta = pd.DataFrame({"id.layer_uuid_txt": ids, "id.scan_local_c": [f"{i}MD01" for i in range(n)],
                         "dataset.code_ascii_txt": "KSSL.SSL",
                         "scan.mir.model.name_utf8_txt": "Bruker Vertex 70 with HTS-XT accessory"})
    table = pd.concat([meta, mir], axis=1)
    empty = table.iloc[[0]].copy()                                   # a layer without a MIR scan
    empty["id.layer_uuid_txt"] = "no-scan"
    empty.loc[:, mir.columns] = np.nan
    return lib, ids, pd.concat([table, empty], ignore_index=True), _lab(ids, lib.properties, "id.layer_uuid_txt")


def test_ossl_mir_and_soillab_import_through_the_cli(tmp_path):
    lib, ids, mir, lab = _ossl_mir_tables()
    mir.to_csv(tmp_path / "ossl_mir_L0_v1.2.csv.gz", index=False)
    lab.to_parquet(tmp_path / "ossl_soillab_L0_v1.2.parquet")
    out = str(tmp_path / "lib.zarr")
    args = ["import-spectra", out, "--mir", str(tmp_path / "ossl_mir_L0_v1.2.csv.gz"),
            "--soillab", str(tmp_path / "ossl_soillab_L0_v1.2.parquet"), "--properties", ",".join(NINE_PROPERTIES)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    back = read_library(out)
    mir_back = back.sensors["mir"]
    assert mir_back.sample_id.tolist() == ids.tolist(), "the row without a scan is skipped"
    assert mir_back.axis[0] == 600 and mir_back.axis[-1] == 4000 and mir_back.axis.size == 1701
    assert (mir_back.quantity, mir_back.unit) == ("absorbance", "cm-1")
    np.testing.assert_allclose(mir_back.values[:, 0], lib.sensors["mir"].values[:, 0], rtol=1e-5)
    np.testing.assert_allclose(back.targets(("inorganic_c", "clay"), ids),
                               lib.properties[:, [2, 6]], rtol=1e-5)    # CaCO3 x 0.12 = inorganic C
    again = subprocess.run([str(Path(sys.executable).parent / "misomap"), *args], capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr


def _neospectra_tables(n: int = 30):
    lib = synthetic_library(n, 1.0, 3, OSSL_MIR, NEO_NIR, seed=6)
    ids = np.array([str(70000 + i) for i in range(n)])               # KSSL sample numbers
    nir = lib.sensors["nir"]
    rows = []
    for i in range(n):
        for r in range(1 if i % 3 else 3):                           # several handheld units per sample
            rows.append({"id.sample_local_c": ids[i], "id.scan_local_c": f"{ids[i]}XN{r}",
                         "scan.lab_utf8_txt": "Woodwell", "scan.nir.model.name_utf8_txt": "NeoSpectra Scanner",
                         "scan.nir.model.serialnumber_utf8_int": 1000 + r,
                         "scan.nir.accessory.used_utf8_txt": "saucer",
                         **{f"scan_nir.{w:g}_ref": v for w, v in zip(nir.axis, nir.values[i, r])}})
    nir_table = pd.DataFrame(rows)
    mir_vals = lib.sensors["mir"].values[:, 0]
    mir_table = pd.DataFrame({"id.sample_local_c": ids,
                              "scan.mir.model.name_utf8_txt": "Bruker Vertex 70 with HTS-XT accessory",
                              **{f"scan_mir.{w:g}_abs": mir_vals[:, k] for k, w in enumerate(lib.sensors["mir"].axis)}})
    return lib, ids, nir_table, mir_table.iloc[:-2], _lab(ids, lib.properties, "id.sample_local_c")


def test_neospectra_kssl_paired_import_keeps_repeats_and_pairs(tmp_path):
    lib, ids, nir, mir, lab = _neospectra_tables()
    for name, table in (("nir", nir), ("mir", mir), ("lab", lab)):
        table.to_csv(tmp_path / f"neospectra_{name}_v1.2.csv", index=False)
    out = str(tmp_path / "paired.zarr")
    imported = import_library({"nir": str(tmp_path / "neospectra_nir_v1.2.csv"),
                               "mir": str(tmp_path / "neospectra_mir_v1.2.csv")}, out,
                              str(tmp_path / "neospectra_lab_v1.2.csv"), NINE_PROPERTIES,
                              id_column="id.sample_local_c", paired_only=True)
    back = read_library(out)
    nir_back, mir_back = back.sensors["nir"], back.sensors["mir"]
    assert nir_back.sample_id.tolist() == ids[:-2].tolist(), "NIR samples without MIR are left out"
    assert nir_back.values.shape == (28, 3, 601) and nir_back.axis[-1] == 2550
    present = ~np.isnan(nir_back.values).all(axis=2)
    assert present.sum(axis=1).tolist() == [3 if i % 3 == 0 else 1 for i in range(28)], "scans as repeats"
    np.testing.assert_allclose(nir_back.values[3, 0], lib.sensors["nir"].values[3, 0], rtol=1e-5)
    assert (nir_back.quantity, mir_back.quantity) == ("reflectance", "absorbance")
    assert len(imported.sample_id) == 30 and back.property_names == NINE_PROPERTIES


def test_import_refuses_a_table_without_the_key_or_spectra(tmp_path):
    _, _, mir, _ = _ossl_mir_tables(6)
    mir.drop(columns=["id.layer_uuid_txt"]).to_csv(tmp_path / "mir.csv", index=False)
    with pytest.raises(LibraryFormatError, match="'id.layer_uuid_txt' missing"):
        import_library({"mir": str(tmp_path / "mir.csv")}, str(tmp_path / "a.zarr"))
    mir[["id.layer_uuid_txt"]].to_csv(tmp_path / "ids.csv", index=False)
    with pytest.raises(LibraryFormatError, match="scan_mir"):
        import_library({"mir": str(tmp_path / "ids.csv")}, str(tmp_path / "b.zarr"))
    one = mir.iloc[[0]]
    one.to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(SpectralError, match="1 sample in the library but at least 2"):
        import_library({"mir": str(tmp_path / "one.csv")}, str(tmp_path / "c.zarr"))


@pytest.mark.parametrize("column, value", [("oc_usda.c729_w.pct", 1e30), ("ph.h2o_usda.a268_index", -5.0)])
def test_soil_properties_outside_their_physical_range_are_refused(tmp_path, column, value):
    _, _, mir, lab = _ossl_mir_tables(6)
    mir.to_csv(tmp_path / "mir.csv", index=False)
    lab.loc[3, column] = value
    lab.to_csv(tmp_path / "lab.csv", index=False)
    with pytest.raises(SpectralError, match=r"lab.csv: .* of sample \S+ is .*outside its physical range"):
        import_library({"mir": str(tmp_path / "mir.csv")}, str(tmp_path / "a.zarr"), str(tmp_path / "lab.csv"),
                       NINE_PROPERTIES)
    assert not (tmp_path / "a.zarr").exists()


def test_empty_all_nan_and_text_tables_are_named_one_line_errors(tmp_path):
    _, _, mir, _ = _ossl_mir_tables(6)
    mir.iloc[:0].to_csv(tmp_path / "header.csv", index=False)
    nan = mir.copy()
    nan.loc[:, [c for c in mir.columns if c.startswith("scan_mir")]] = np.nan
    nan.to_csv(tmp_path / "nan.csv", index=False)
    text = mir.astype(object)
    text.loc[2, "scan_mir.1000_abs"] = "n/a?"
    text.to_csv(tmp_path / "text.csv", index=False)
    for name, match in (("header", "holds no mir spectrum"), ("nan", "holds no mir spectrum"),
                        ("text", "row 3, column 'scan_mir.1000_abs' holds 'n/a\\?'")):
        with pytest.raises(LibraryFormatError, match=rf"{name}.csv.*{match}|{match}"):
            import_library({"mir": str(tmp_path / f"{name}.csv")}, str(tmp_path / f"{name}.zarr"))
