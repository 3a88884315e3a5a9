"""One cube chunk from searched items: select the items over the chunk, read, mask, composite, and
stack every source's bands in the cube's band order (`build_chunk`, pure compute), and the chunk
engine's task that builds and writes one chunk (`build_cube_chunk`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pystac
from pyproj import Transformer

from misomap.core.config_base import StorageConfig
from misomap.core.storage import Target
from misomap.cube import composite
from misomap.cube.config import AREAS, CubeConfig, SourceConfig
from misomap.cube.errors import AssetReadError, ChunkBuildError
from misomap.cube.grid import ChunkWindow, Grid
from misomap.cube.search import FoundItems, datatake
from misomap.cube.stack import read_window
from misomap.cube.store import values_sha256
from misomap.runtime.zarr_io import write_region


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


@dataclass(frozen=True)
class CubeChunkSpec:
    """What every cube chunk task needs: the cube section, storage, the found items, the grid and
    the GDAL options of the sources (scattered once to the workers)."""

    cfg: CubeConfig
    storage: StorageConfig
    found: list[FoundItems]
    grid: Grid
    gdal_options: dict[str, str]


def build_cube_chunk(window: ChunkWindow, spec: CubeChunkSpec) -> dict[str, Any]:
    """Build and write one chunk; its completion record says whether it is all nodata and carries
    its values' checksum. A pure function of (window, spec)."""
    values = build_chunk(spec.cfg, spec.found, spec.grid, window, spec.gdal_options)
    write_region(Target(spec.cfg.out, spec.storage), {"data": values},
                 slice(window.row0, window.row0 + window.height), slice(window.col0, window.col0 + window.width))
    return {"all_nodata": bool(np.isnan(values).all()), "sha256": values_sha256(values)}
