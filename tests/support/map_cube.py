"""A small finished cube (two bands, an all-nodata corner) and the plug-in predictor the map tests run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from misomap.cube.grid import Grid
from misomap.cube.store import COMPLETE_KEY

FACTORY = "tests.support.map_test_predictor:factory"
IMAGERY_PERIOD = ["2019-06-15T20:31:00Z", "2023-08-14T21:02:00Z"]


def write_cube(path: Path, grid: Grid, chunk: int = 40) -> None:
    rng = np.random.default_rng(1)
    h, w = grid.shape
    data = rng.normal(size=(2, h, w)).astype("float32")
    data[:, :35, :35] = np.nan  # an all-nodata corner spanning a whole output chunk
    ds = xr.Dataset({"data": (("band", "y", "x"), data, {"grid_mapping": "spatial_ref"})},
                    coords={"band": np.array(["b0", "b1"], dtype=object),  # vlen-utf8, as the real cube
                            "y": grid.y_coords(), "x": grid.x_coords(),
                            "spatial_ref": ((), 0, grid.spatial_ref_attrs())},
                    # written whole in one go, so it carries the complete mark a finished build writes last
                    attrs={"misomap": {"imagery_datetime": IMAGERY_PERIOD},
                           COMPLETE_KEY: {"records_sha256": "written-whole", "chunks": 0}})
    ds.chunk({"band": 2, "y": chunk, "x": chunk}).to_zarr(path, zarr_format=3, mode="w", consolidated=True)
