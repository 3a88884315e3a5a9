"""Source-scene tiling: UTM tiles like Sentinel-2's MGRS grid (own CRS, grid and overlap, not
aligned to the cube), and resampling the 15 m surface onto a tile's pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer
from scipy import ndimage
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from misomap.cube.grid import Grid

ZONE_MARGIN_DEG = 0.03
"""How far a zone's tiles reach past the zone edge (real MGRS tiles overlap the boundary too)."""
_ZONE_OFFSETS_M = {5: (1230.0, 770.0), 6: (410.0, 1590.0)}


def utm_epsg(zone: int) -> int:
    return 32600 + zone


def reproject_geom(geom: BaseGeometry, src: str | int, dst: str | int) -> BaseGeometry:
    """A shapely geometry from CRS `src` to `dst` (densify first for curved edges)."""
    t = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geom, t.transform, interleaved=False)


@dataclass(frozen=True)
class TileSpec:
    """One tile: an MGRS-like id, its UTM CRS and its square extent in that CRS (metres)."""

    tile_id: str
    zone: int
    xmin: float
    ymax: float
    size_m: float

    @property
    def epsg(self) -> int:
        return utm_epsg(self.zone)

    def transform(self, res: float) -> Affine:
        return Affine(res, 0.0, self.xmin, 0.0, -res, self.ymax)

    def shape(self, res: float) -> tuple[int, int]:
        n = int(round(self.size_m / res))
        return (n, n)

    def footprint_lonlat(self) -> Polygon:
        """The tile's outline in lon/lat (densified edges)."""
        poly = box(self.xmin, self.ymax - self.size_m, self.xmin + self.size_m, self.ymax)
        return reproject_geom(poly.segmentize(self.size_m / 8), self.epsg, 4326)


def _region_lonlat(grid: Grid) -> Polygon:
    return reproject_geom(box(*grid.bounds).segmentize((grid.xmax - grid.xmin) / 16), grid.crs, 4326)


def layout_tiles(grid: Grid, tile_km: float, overlap_km: float, coarse_m: float) -> list[TileSpec]:
    """Tiles of every UTM zone the region touches, each covering its zone's share of the region."""
    region = _region_lonlat(grid)
    size = round(tile_km * 1000.0 / coarse_m) * coarse_m
    step = size - round(overlap_km * 1000.0 / coarse_m) * coarse_m
    tiles: list[TileSpec] = []
    lon_min, _, lon_max, _ = region.bounds
    for zone in range(int((lon_min + 180) // 6) + 1, int((lon_max + 180) // 6) + 2):
        west = -180.0 + 6 * (zone - 1)
        band = box(west - ZONE_MARGIN_DEG, -90, west + 6 + ZONE_MARGIN_DEG, 90)
        part = region.intersection(band)
        if part.is_empty:
            continue
        part_utm = reproject_geom(part, 4326, utm_epsg(zone))
        ox, oy = _ZONE_OFFSETS_M[zone] if zone in _ZONE_OFFSETS_M else (0.0, 0.0)
        bx0, by0, bx1, by1 = part_utm.bounds
        i0, i1 = math.floor((bx0 - ox - size) / step) + 1, math.floor((bx1 - ox) / step)
        j0, j1 = math.floor((by0 - oy) / step), math.floor((by1 - oy) / step)
        for j in range(j1, j0 - 1, -1):
            for i in range(i0, i1 + 1):
                x0, y0 = ox + i * step, oy + j * step
                if part_utm.intersects(box(x0, y0, x0 + size, y0 + size)):
                    letters = chr(65 + (i % 26)) + chr(65 + (j % 26))
                    tiles.append(TileSpec(f"{zone:02d}W{letters}", zone, x0, y0 + size, size))
    return tiles


@dataclass(frozen=True)
class Sampler:
    """Where a tile's pixels fall on the world's 15 m surface, for one pixel size."""

    tile: TileSpec
    res: float
    surface_grid: Grid

    @cached_property
    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (row, col) on the surface grid of each tile pixel centre."""
        h, w = self.tile.shape(self.res)
        cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        x, y = self.tile.transform(self.res) @ (cols, rows)
        t = Transformer.from_crs(self.tile.epsg, self.surface_grid.crs, always_xy=True)
        X, Y = t.transform(x, y)
        g = self.surface_grid
        return ((g.ymax - Y) / g.resolution - 0.5, (X - g.xmin) / g.resolution - 0.5)

    @cached_property
    def inside(self) -> np.ndarray:
        """Tile pixels that fall on the world (the rest are nodata)."""
        r, c = self.coords
        h, w = self.surface_grid.shape
        return (r >= -0.5) & (c >= -0.5) & (r <= h - 0.5) & (c <= w - 0.5)

    @cached_property
    def _bilinear(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices of the 4 neighbours and their weights, computed once per tile."""
        h, w = self.surface_grid.shape
        r, c = (np.clip(a, 0, n - 1) for a, n in zip(self.coords, (h, w)))
        r0 = np.minimum(np.floor(r).astype(np.int64), h - 2)
        c0 = np.minimum(np.floor(c).astype(np.int64), w - 2)
        fr, fc = (r - r0).astype(np.float32), (c - c0).astype(np.float32)
        top, bottom = r0 * w + c0, (r0 + 1) * w + c0
        idx = np.stack([top, top + 1, bottom, bottom + 1]).astype(np.int32)
        wts = np.stack([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc])
        return idx, wts

    @cached_property
    def _nearest(self) -> np.ndarray:
        h, w = self.surface_grid.shape
        r, c = (np.clip(np.round(a), 0, n - 1).astype(np.int64) for a, n in zip(self.coords, (h, w)))
        return (r * w + c).astype(np.int32)

    def values(self, layer: np.ndarray, order: int = 1) -> np.ndarray:
        """Resample a surface layer onto the tile's pixels: bilinear (order 1) or nearest (0).

        Layers sampled at a coarser pixel than the surface should be block-averaged first
        (see `average_to`).
        """
        flat = layer.ravel()
        if order == 0:
            return flat[self._nearest]
        idx, wts = self._bilinear
        return (flat[idx] * wts).sum(axis=0, dtype=np.float32)


def average_to(layer: np.ndarray, surface_res: float, res: float) -> np.ndarray:
    """Box-average a surface layer over the footprint of a `res` pixel (area-like sampling)."""
    k = int(round(res / surface_res))
    return ndimage.uniform_filter(layer, size=k, mode="nearest") if k > 1 else layer
