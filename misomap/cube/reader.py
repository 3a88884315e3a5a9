"""The cube's read side (docs/contracts.md §2): open a cube (local or S3, one way), recover its grid
from the store's own CRS and coordinates, and read a window of bands with NaN beyond its edges.
Training, mapping, regeneration and the benchmarks all read cubes through here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import xarray as xr
import zarr

from misomap.core.config_base import StorageConfig
from misomap.core.storage import Target
from misomap.cube.errors import CubeError, CubeStorageError
from misomap.cube.grid import Grid
from misomap.cube.store import require_complete


class CubeReadError(CubeError):
    """The cube lacks a band the model needs, or is not a georeferenced misomap cube."""


def open_cube(location: str, storage: StorageConfig, complete: bool = True) -> xr.Dataset:
    """Open a cube lazily (consolidated metadata when present); an unfinished cube is refused
    unless `complete` is False (the builder's own quicklook, or a caller that checked already)."""
    if complete:
        require_complete(location, storage)
    try:
        return xr.open_zarr(Target(location, storage).zarr_store(read_only=True), consolidated=None)
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError) as err:
        raise CubeStorageError(f"no finished cube at {location!r} ({err}): run `misomap cube build`") from None


@lru_cache(maxsize=4)
def open_cube_cached(location: str, storage: StorageConfig) -> xr.Dataset:
    """The cube opened once per process (one per dask worker); completeness is the caller's check,
    made once on the client before any task is submitted."""
    return open_cube(location, storage, complete=False)


def cube_data(ds: xr.Dataset, location: str) -> xr.DataArray:
    """The cube's `data` array (band, y, x), checked against docs/contracts.md §2."""
    if "data" not in ds or ds["data"].dims != ("band", "y", "x"):
        raise CubeReadError(f"{location}: no `data` variable with dims (band, y, x); "
                            f"variables {list(ds.data_vars)}")
    return ds["data"]


def cube_grid(ds: xr.Dataset | xr.DataArray) -> Grid:
    """The cube's grid, from its pixel-centre coordinates and the CRS its spatial_ref records."""
    x, y = ds["x"].values, ds["y"].values
    res = float(x[1] - x[0]) if len(x) > 1 else float(y[0] - y[1])
    ref = ds.coords.get("spatial_ref")
    if ref is None and isinstance(ds, xr.Dataset):
        ref = ds.get("spatial_ref")
    crs = ref.attrs.get("crs_wkt") if ref is not None else None
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
