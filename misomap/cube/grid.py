"""The one output grid: a CRS, a resolution and bounds aligned to it; pixel-centre coordinates.

Shared by the cube builder, the demo world and the map job, so every raster lines up exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from pyproj import CRS


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid; bounds are multiples of the resolution (origin aligned)."""

    crs: str
    resolution: float
    xmin: float
    ymin: float
    xmax: float
    ymax: float

    def __post_init__(self) -> None:
        for name in ("xmin", "ymin", "xmax", "ymax"):
            v = getattr(self, name) / self.resolution
            if abs(v - round(v)) > 1e-6:
                raise ValueError(f"grid {name}={getattr(self, name)} is not a multiple of the "
                                 f"resolution {self.resolution}; use Grid.aligned()")
        if self.xmax <= self.xmin or self.ymax <= self.ymin:
            raise ValueError(f"empty grid bounds {self.bounds}")

    @classmethod
    def aligned(cls, crs: str, resolution: float, bounds: tuple[float, float, float, float]) -> Grid:
        """The smallest aligned grid covering `bounds` (xmin, ymin, xmax, ymax)."""
        r = resolution
        xmin, ymin, xmax, ymax = bounds
        return cls(crs, r, math.floor(xmin / r) * r, math.floor(ymin / r) * r,
                   math.ceil(xmax / r) * r, math.ceil(ymax / r) * r)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)

    @property
    def width(self) -> int:
        return round((self.xmax - self.xmin) / self.resolution)

    @property
    def height(self) -> int:
        return round((self.ymax - self.ymin) / self.resolution)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (self.height, self.width)

    @property
    def transform(self) -> Affine:
        return Affine(self.resolution, 0.0, self.xmin, 0.0, -self.resolution, self.ymax)

    def x_coords(self) -> np.ndarray:
        """Pixel-centre x coordinates, west to east."""
        return self.xmin + (np.arange(self.width) + 0.5) * self.resolution

    def y_coords(self) -> np.ndarray:
        """Pixel-centre y coordinates, north to south."""
        return self.ymax - (np.arange(self.height) + 0.5) * self.resolution

    def window(self, row0: int, col0: int, height: int, width: int) -> Grid:
        """The sub-grid of a pixel window (may extend past the grid, e.g. for halos)."""
        r = self.resolution
        return Grid(self.crs, r, self.xmin + col0 * r, self.ymax - (row0 + height) * r,
                    self.xmin + (col0 + width) * r, self.ymax - row0 * r)

    def rowcol(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer (row, col) of the pixels containing points; may fall outside the grid."""
        col = np.floor((np.asarray(x) - self.xmin) / self.resolution).astype(np.int64)
        row = np.floor((self.ymax - np.asarray(y)) / self.resolution).astype(np.int64)
        return row, col

    def spatial_ref_attrs(self) -> dict[str, Any]:
        """CF grid-mapping attributes (crs_wkt, GeoTransform) that rioxarray and GDAL read."""
        attrs = CRS.from_user_input(self.crs).to_cf()
        attrs["spatial_ref"] = attrs["crs_wkt"]
        attrs["GeoTransform"] = " ".join(str(v) for v in self.transform.to_gdal())
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"crs": self.crs, "resolution": self.resolution, "bounds": list(self.bounds)}


@dataclass(frozen=True)
class ChunkWindow:
    """A chunk of the cube: its index (iy, ix) and pixel window on the full grid."""

    iy: int
    ix: int
    row0: int
    col0: int
    height: int
    width: int

    @property
    def key(self) -> str:
        return f"{self.iy}.{self.ix}"


def plan_chunks(grid: Grid, chunk: int) -> list[ChunkWindow]:
    """Every chunk of the grid in row-major order; edge chunks are cut at the grid's border."""
    h, w = grid.shape
    return [ChunkWindow(iy, ix, r, c, min(chunk, h - r), min(chunk, w - c))
            for iy, r in enumerate(range(0, h, chunk)) for ix, c in enumerate(range(0, w, chunk))]
