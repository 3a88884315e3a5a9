"""What an assessment reads from a finished misomap map: its class layers, their class names, the
grid, the map's digest, each pixel's confidence in its mapped class, and zones rasterised on the grid.

The map's digest is its complete mark (`misomap_complete`: the sha256 of the completion records,
each of which carries its chunk's checksum), so two maps with different pixels never share one.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr
from pyproj import CRS
from rasterio.features import rasterize

from misomap.core.config_base import StorageConfig
from misomap.core.errors import MisomapError, MissingObjectError
from misomap.core.storage import Target
from misomap.cube.grid import Grid
from misomap.mapping.layers import LAYERS, NODATA, PROB_SCALE
from misomap.mapping.store import require_map_complete
from misomap.runtime.records import COMPLETE_ATTR
from misomap.runtime.zarr_io import open_group

log = logging.getLogger(__name__)

CLASS_LAYERS: dict[str, tuple[str, ...]] = {layer.name: layer.classes for layer in LAYERS if layer.classes}
"""Every class layer of a map and its class names, in code order."""


class AssessError(MisomapError):
    """An assessment input is unusable (map, sample, labels, zones); the message names the file and
    the point, stratum or column at fault."""


def map_store_url(path: str) -> str:
    """The map.zarr of a map output folder (a map.zarr path is kept as it is)."""
    path = path.rstrip("/")
    return path if path.endswith(".zarr") else f"{path}/map.zarr"


@dataclass(frozen=True)
class MapLayer:
    """One class layer of a finished map in memory: codes (uint8, NODATA where unmapped), class names,
    the grid, the map's digest and where it was read from."""

    url: str
    layer: str
    codes: np.ndarray
    classes: tuple[str, ...]
    grid: Grid
    digest: str

    @property
    def pixel_km2(self) -> float:
        """Area of one pixel in km² (the map grid is equal-area EPSG:3338)."""
        return self.grid.resolution ** 2 / 1e6

    @property
    def valid(self) -> np.ndarray:
        """Pixels with a mapped class."""
        return self.codes != NODATA

    def pixel_counts(self) -> np.ndarray:
        """Mapped pixels per class."""
        return np.bincount(self.codes[self.valid].ravel(), minlength=len(self.classes))[: len(self.classes)]

    def rowcol(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row and column of points, and whether each falls inside the map."""
        row, col = self.grid.rowcol(np.asarray(x, float), np.asarray(y, float))
        inside = (row >= 0) & (row < self.grid.height) & (col >= 0) & (col < self.grid.width)
        return np.where(inside, row, 0), np.where(inside, col, 0), inside


def _open(url: str, storage: StorageConfig) -> xr.Dataset:
    target = Target(url, storage)
    if open_group(target) is None:
        raise AssessError(f"no misomap map at {url}: give a map folder (or its map.zarr) made by `misomap predict`")
    require_map_complete(target)
    return xr.open_zarr(target.zarr_store(read_only=True), mask_and_scale=False)


def _grid(ds: xr.Dataset, url: str) -> Grid:
    x, y = ds["x"].values, ds["y"].values
    res = float(x[1] - x[0]) if len(x) > 1 else float(y[0] - y[1])
    crs = ds["spatial_ref"].attrs.get("crs_wkt") or ds["spatial_ref"].attrs.get("spatial_ref")
    if not crs:
        raise AssessError(f"{url} has no CRS on spatial_ref: not a misomap map")
    return Grid(CRS.from_user_input(crs).to_string(), res, float(x[0] - res / 2), float(y[-1] - res / 2), float(x[-1] + res / 2),
                float(y[0] + res / 2))


def read_layer(path: str, layer: str, storage: StorageConfig | None = None) -> MapLayer:
    """The class layer `layer` of the finished map at `path` (folder or map.zarr)."""
    url = map_store_url(path)
    if layer not in CLASS_LAYERS:
        raise AssessError(f"--layer {layer!r} is not a class layer; choose one of {sorted(CLASS_LAYERS)}")
    ds = _open(url, storage or StorageConfig())
    if layer not in ds:
        raise AssessError(f"{url} has no layer {layer!r}")
    classes = tuple(str(ds[layer].attrs.get("flag_meanings", "")).split()) or CLASS_LAYERS[layer]
    return MapLayer(url, layer, ds[layer].values, classes, _grid(ds, url), str(ds.attrs[COMPLETE_ATTR]))


def confidence(path: str, layer: str, storage: StorageConfig | None = None) -> np.ndarray:
    """Each pixel's stored probability of its mapped class (NaN where unmapped): the map's own guess
    of its user's accuracy, which the optimal (Neyman) allocation uses."""
    ds = _open(map_store_url(path), storage or StorageConfig())
    if layer == "permafrost_class":
        p = ds["permafrost_probability"].values.astype(np.float64)
        cls = ds[layer].values
        out = np.where(cls == 1, p, 100.0 - p) * PROB_SCALE
    else:
        out = ds["soil_order_probability"].values.max(axis=0).astype(np.float64) * PROB_SCALE
    return np.where(ds[layer].values == NODATA, np.nan, out)


def zone_raster(zones_file: str, column: str | None, grid: Grid,
                storage: StorageConfig | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Zones (GeoParquet polygons with a name column) burnt onto the map grid: codes (-1 outside every
    zone) and zone names. `column` None takes the file's only non-geometry column."""
    try:
        gdf = gpd.read_parquet(io.BytesIO(Target(zones_file, storage or StorageConfig()).read_bytes()))
    except MissingObjectError as err:
        raise AssessError(str(err)) from None
    except (ValueError, OSError) as err:
        raise AssessError(f"--zones {zones_file} is not a readable GeoParquet file: {err}") from None
    names_cols = [c for c in gdf.columns if c != gdf.geometry.name]
    if column is None:
        if len(names_cols) != 1:
            raise AssessError(f"--zones {zones_file} has columns {names_cols}: name one with --zone-column")
        column = names_cols[0]
    if column not in gdf.columns:
        raise AssessError(f"--zones {zones_file} has no column {column!r}; it has {names_cols}")
    if gdf.crs is None:
        raise AssessError(f"--zones {zones_file} has no CRS")
    gdf = gdf.to_crs(grid.crs)
    names = tuple(sorted(str(v) for v in gdf[column].dropna().unique()))
    code = {n: i for i, n in enumerate(names)}
    shapes = [(geom, code[str(v)]) for geom, v in zip(gdf.geometry, gdf[column]) if geom is not None and not pd.isna(v)]
    raster = rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=-1, dtype="int32")
    log.info("zones %s (%s): %d zones on the map grid", zones_file, column, len(names))
    return raster, names
