"""GeoZarr conventions beside the CF attributes: `proj:` (CRS), `spatial:` (grid) and `multiscales`
(overview levels), so Zarr-native clients (GDAL >= 3.13, GeoZarr viewers) find georeferencing and
overviews without parsing CF. Each convention is registered in `zarr_conventions` exactly as its own
repository states it (docs/outputs.md names the versions). Attributes only: nothing here changes how
data are stored, and xarray/rioxarray keep reading the CF grid mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from pyproj import CRS

from misomap.cube.grid import Grid

MULTISCALES = {  # github.com/zarr-conventions/multiscales README (v1)
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/multiscales/blob/v1/README.md",
    "uuid": "d35379db-88df-4056-af3a-620245f8e347",
    "name": "multiscales",
    "description": "Multiscale layout of zarr datasets",
}
PROJ = {  # github.com/zarr-conventions/geo-proj README (v1)
    "schema_url": "https://raw.githubusercontent.com/zarr-experimental/geo-proj/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-experimental/geo-proj/blob/v1/README.md",
    "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "name": "proj:",
    "description": "Coordinate reference system information for geospatial data",
}
SPATIAL = {  # github.com/zarr-conventions/spatial README (tag v0.1)
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v0.1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/spatial/blob/v0.1/README.md",
    "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    "name": "spatial",
    "description": "Spatial coordinate information",
}
DIMENSIONS = ["y", "x"]  # spatial:dimensions: the Y axis first, then X


def spatial_fields(grid: Grid) -> dict[str, Any]:
    """`spatial:` transform (rasterio/Affine order), shape [height, width] and bbox of `grid`."""
    return {"spatial:transform": [float(v) for v in list(grid.transform)[:6]],
            "spatial:shape": [grid.height, grid.width],
            "spatial:bbox": [float(v) for v in grid.bounds]}


def proj_fields(grid: Grid) -> dict[str, Any]:
    """The CRS in exactly one form (the convention's schema takes one of them): `proj:code` when the
    CRS has an EPSG code, else `proj:wkt2`."""
    crs = CRS.from_user_input(grid.crs)
    epsg = crs.to_epsg()
    return {"proj:code": f"EPSG:{epsg}"} if epsg else {"proj:wkt2": crs.to_wkt()}


def group_attrs(grid: Grid, layout: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Group attributes: conventions, CRS, grid (pixel registration) and, with `layout`, the
    multiscales levels."""
    conventions = ([MULTISCALES] if layout else []) + [PROJ, SPATIAL]
    attrs: dict[str, Any] = {"zarr_conventions": conventions, **proj_fields(grid),
                             "spatial:dimensions": DIMENSIONS, **spatial_fields(grid),
                             "spatial:registration": "pixel"}
    if layout:
        attrs["multiscales"] = {"layout": layout, "resampling_method": "nearest"}
    return attrs


def array_attrs(grid: Grid) -> dict[str, Any]:
    """Array attributes: which dimensions are Y and X (required on arrays by the spatial convention)
    and the CRS; the transform comes from the group."""
    return {"zarr_conventions": [PROJ, SPATIAL], **proj_fields(grid), "spatial:dimensions": DIMENSIONS}


@dataclass(frozen=True)
class Level:
    """An overview level that keeps every `factor`-th row and column of a grid: same top-left origin,
    pixels `factor` times larger, ceil(shape / factor) pixels."""

    grid: Grid
    factor: int

    @property
    def shape(self) -> tuple[int, int]:
        return math.ceil(self.grid.height / self.factor), math.ceil(self.grid.width / self.factor)

    @property
    def transform(self) -> Affine:
        return self.grid.transform * Affine.scale(self.factor)

    def x_coords(self) -> np.ndarray:
        """Pixel-centre x coordinates."""
        return (self.transform * (np.arange(self.shape[1]) + 0.5, np.zeros(self.shape[1])))[0]

    def y_coords(self) -> np.ndarray:
        """Pixel-centre y coordinates (north first)."""
        return (self.transform * (np.zeros(self.shape[0]), np.arange(self.shape[0]) + 0.5))[1]

    def spatial_ref_attrs(self) -> dict[str, Any]:
        """The CF grid mapping of the level (the full grid's, with this level's GeoTransform)."""
        return {**self.grid.spatial_ref_attrs(),
                "GeoTransform": " ".join(str(v) for v in self.transform.to_gdal())}

    def spatial_fields(self) -> dict[str, Any]:
        """`spatial:transform` and `spatial:shape` of the level."""
        return {"spatial:transform": [float(v) for v in list(self.transform)[:6]],
                "spatial:shape": list(self.shape)}


def layout(grid: Grid, factors: tuple[int, ...], path: str) -> list[dict[str, Any]]:
    """The multiscales layout of overview groups `<path>/<factor>` beside the group's own
    full-resolution arrays: each level with its relative scale and absolute `spatial:` grid."""
    return [{"asset": f"{path}/{f}", "transform": {"scale": [float(f), float(f)], "translation": [0.0, 0.0]},
             **Level(grid, f).spatial_fields(), "resampling_method": "nearest"} for f in factors]
