from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401 - registers the .rio accessor
import xarray as xr

from misomap.cube.grid import Grid


def test_aligned_grid_covers_bounds_on_resolution_multiples():
    g = Grid.aligned("EPSG:3338", 30.0, (100010.0, 1500001.0, 130000.0, 1530020.0))
    assert g.bounds == (99990.0, 1500000.0, 130020.0, 1530030.0)
    assert g.shape == (1001, 1001)
    assert g.x_coords()[0] == pytest.approx(g.xmin + 15.0)
    assert g.y_coords()[0] == pytest.approx(g.ymax - 15.0)


def test_unaligned_grid_refused():
    with pytest.raises(ValueError, match="not a multiple"):
        Grid("EPSG:3338", 30.0, 10.0, 0.0, 300.0, 300.0)


def test_rowcol_and_window_roundtrip():
    g = Grid("EPSG:3338", 10.0, 0.0, 0.0, 1000.0, 500.0)
    row, col = g.rowcol(np.array([5.0, 995.0]), np.array([495.0, 5.0]))
    assert row.tolist() == [0, 49] and col.tolist() == [0, 99]
    w = g.window(10, 20, 5, 7)
    assert w.shape == (5, 7) and w.xmin == 200.0 and w.ymax == 400.0


def test_rioxarray_reads_crs_and_transform_from_spatial_ref():
    g = Grid("EPSG:3338", 30.0, 0.0, 0.0, 300.0, 150.0)
    da = xr.DataArray(np.zeros(g.shape, "float32"), dims=("y", "x"),
                      coords={"y": g.y_coords(), "x": g.x_coords(),
                              "spatial_ref": xr.DataArray(0, attrs=g.spatial_ref_attrs())},
                      attrs={"grid_mapping": "spatial_ref"})
    assert da.rio.crs.to_epsg() == 3338
    assert tuple(da.rio.transform())[:6] == tuple(g.transform)[:6]
