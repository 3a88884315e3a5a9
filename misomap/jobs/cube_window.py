"""Reading a window of the cube, with a halo, padded with NaN beyond its edges."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from misomap.cube.grid import Grid
from misomap.core.errors import MisomapError


class CubeReadError(MisomapError):
    """The cube lacks a band the model needs, or is not a misomap cube."""


def cube_grid(ds: xr.Dataset) -> Grid:
    """The cube's grid, recovered from its pixel-centre coordinates and spatial_ref."""
    x, y = ds["x"].values, ds["y"].values
    res = float(x[1] - x[0])
    crs = ds["spatial_ref"].attrs.get("crs_wkt") if "spatial_ref" in ds else None
    if crs is None:
        raise CubeReadError("cube has no spatial_ref/crs_wkt: not a georeferenced misomap cube")
    return Grid(crs, res, float(x[0] - res / 2), float(y[-1] - res / 2),
                float(x[-1] + res / 2), float(y[0] + res / 2))


@dataclass(frozen=True)
class Window:
    """Cube values (band, H, W) and their pixel-centre coordinates."""

    values: np.ndarray
    x: np.ndarray
    y: np.ndarray


def read_window(ds: xr.Dataset, bands: tuple[str, ...], bounds: tuple[float, float, float, float]
                ) -> Window:
    """All cube pixels whose centres fall in `bounds` (xmin, ymin, xmax, ymax), NaN outside the cube."""
    missing = [b for b in bands if b not in ds["band"].values.tolist()]
    if missing:
        raise CubeReadError(f"cube lacks bands the model needs: {missing}")
    grid = cube_grid(ds)
    r = grid.resolution
    xmin, ymin, xmax, ymax = bounds
    col0 = int(np.floor((xmin - grid.xmin) / r + 0.5))
    col1 = int(np.floor((xmax - grid.xmin) / r + 0.5))
    row0 = int(np.floor((grid.ymax - ymax) / r + 0.5))
    row1 = int(np.floor((grid.ymax - ymin) / r + 0.5))
    h, w = row1 - row0, col1 - col0
    out = np.full((len(bands), h, w), np.nan, np.float32)
    r0, r1 = max(row0, 0), min(row1, grid.height)
    c0, c1 = max(col0, 0), min(col1, grid.width)
    if r1 > r0 and c1 > c0:
        sub = ds["data"].sel(band=list(bands)).isel(y=slice(r0, r1), x=slice(c0, c1)).values
        out[:, r0 - row0:r1 - row0, c0 - col0:c1 - col0] = sub
    xs = grid.xmin + (np.arange(col0, col1) + 0.5) * r
    ys = grid.ymax - (np.arange(row0, row1) + 0.5) * r
    return Window(out, xs, ys)
