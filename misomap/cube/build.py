"""One cube chunk from searched items: select the items over the chunk, read, mask, composite, and
stack every source's bands in the cube's band order. Pure compute; the job writes the result."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pystac
from pyproj import Transformer

from misomap.cube import composite
from misomap.cube.config import AREAS, CubeConfig, SourceConfig
from misomap.cube.errors import AssetReadError, ChunkBuildError
from misomap.cube.grid import ChunkWindow, Grid
from misomap.cube.search import FoundItems, datatake
from misomap.cube.stack import read_window


def planned_grid(cfg: CubeConfig) -> Grid:
    """The grid the configured cube will have: `bounds` as given (in `crs`), or the aligned cover of a bbox / named area."""
    if cfg.bounds is not None:
        return Grid.aligned(cfg.crs, cfg.resolution, cfg.bounds)
    lonlat = cfg.bbox if cfg.bbox is not None else AREAS[cfg.area]  # type: ignore[index]
    tr = Transformer.from_crs("EPSG:4326", cfg.crs, always_xy=True)
    return Grid.aligned(cfg.crs, cfg.resolution, tr.transform_bounds(*lonlat, densify_pts=21))


def search_bbox(grid: Grid) -> tuple[float, float, float, float]:
    """The grid's lon/lat bounding box, for the STAC search."""
    tr = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return tr.transform_bounds(*grid.bounds, densify_pts=21)


def overlapping(items: Sequence[pystac.Item], bbox: tuple[float, float, float, float]) -> list[pystac.Item]:
    w, s, e, n = bbox
    return [it for it in items if it.bbox and it.bbox[0] <= e and it.bbox[2] >= w
            and it.bbox[1] <= n and it.bbox[3] >= s]


def _composite_group(src: SourceConfig, items: Sequence[pystac.Item], grid: Grid,
                     gdal_options: dict[str, str]) -> np.ndarray:
    keys = list(src.bands.values())
    if src.mask_asset:
        keys.append(src.mask_asset)
    stack = read_window(items, keys, grid, src.resampling, gdal_options,
                        unscaled=[src.mask_asset] if src.mask_asset else (), scaling=src.scaling,
                        source=src.collection)
    if stack.shape[0] == 0:
        return np.full((len(src.bands), *grid.shape), np.nan, np.float32)
    if src.mask_asset:
        stack = composite.scl_mask(stack[:, :-1], stack[:, -1], src.mask_classes)
    if src.kind == "static":
        return composite.mosaic(stack)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(datatake(item), []).append(i)
    stack = composite.merge_duplicates(stack, list(groups.values()))
    if src.kind == "radar":
        return composite.mean_db(stack)
    return composite.geomedian(stack) if src.method == "geomedian" else composite.median(stack)


def build_chunk(cfg: CubeConfig, found: Sequence[FoundItems], grid: Grid, window: ChunkWindow,
                gdal_options: dict[str, str]) -> np.ndarray:
    """The chunk's (band, y, x) float32 array; ChunkBuildError names the chunk and the failing read."""
    sub = grid.window(window.row0, window.col0, window.height, window.width)
    bbox = search_bbox(sub)
    parts = []
    for f in found:
        order = ["static"] if f.source.kind == "static" else list(cfg.seasons)
        for group in order:
            items = overlapping(f.groups[group], bbox)
            if not items:
                parts.append(np.full((len(f.source.bands), *sub.shape), np.nan, np.float32))
                continue
            try:
                parts.append(_composite_group(f.source, items, sub, gdal_options))
            except AssetReadError as err:
                raise ChunkBuildError(f"chunk {window.key} (rows {window.row0}+{window.height}, cols "
                                      f"{window.col0}+{window.width}), {f.source.collection} {group}: "
                                      f"{err}") from None
    return np.concatenate(parts, axis=0)
