"""The cube's GeoZarr attributes: `proj:`/`spatial:` beside the CF grid mapping, valid against the
upstream convention schemas, while xarray/rioxarray read the cube as before."""

from __future__ import annotations

import json

import numpy as np
import rioxarray  # noqa: F401 - registers .rio
import xarray as xr
from jsonschema import Draft7Validator

from misomap.cube.grid import Grid
from misomap.cube.store import template
from tests.support import ROOT

SCHEMAS = ROOT / "tests" / "data" / "zarr-conventions"
GRID = Grid("EPSG:3338", 30.0, 300000.0, 1710000.0, 300000.0 + 40 * 30, 1710000.0 + 30 * 30)


def _errors(doc: dict, name: str) -> list[str]:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return [e.message for e in Draft7Validator(schema).iter_errors(doc)]


def test_cube_template_carries_geozarr_georeferencing(tmp_path):
    store = tmp_path / "cube.zarr"
    template(GRID, ["red", "nir"], 16, {"fingerprint": "f"}).to_zarr(store, compute=False, zarr_format=3)
    group_doc = json.loads((store / "zarr.json").read_text())
    data_doc = json.loads((store / "data" / "zarr.json").read_text())
    for doc in (group_doc, data_doc):
        assert _errors(doc, "geo-proj") == [] and _errors(doc, "spatial") == []
    attrs = group_doc["attributes"]
    assert attrs["proj:code"] == "EPSG:3338" and attrs["spatial:transform"] == list(GRID.transform)[:6]
    assert attrs["spatial:shape"] == [30, 40] and data_doc["attributes"]["spatial:dimensions"] == ["y", "x"]
    assert data_doc["dimension_names"] == ["band", "y", "x"]
    cube = xr.open_zarr(store)
    assert cube.rio.crs.to_epsg() == 3338 and cube.rio.transform() == GRID.transform
    np.testing.assert_allclose(cube.x.values, GRID.x_coords())
    assert cube.attrs["misomap"] == {"fingerprint": "f"}
