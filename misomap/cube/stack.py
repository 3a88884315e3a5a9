"""Read STAC items onto one window of the output grid: reprojected, float32 with NaN for nodata,
scale/offset from `raster:bands` applied.

Why not stackstac (which this replaced): it builds a dask graph per chunk and reopens every
overlapping asset for each chunk (~230 opens per chunk on the demo world), so the builder ran at
0.60-0.75x the naive whole-file read. Here each asset is opened at most once per worker thread and
reused by later chunks (a bounded per-thread cache keyed by href), and under nearest resampling one
WarpedVRT warp of a source-pixel index raster per (source geometry, chunk) tells every band of that
geometry which pixels to take, so an item's bands share one warp. Values are identical to stackstac's
(tests/test_cube_reader.py). bench/bench_cube.py, demo world, chunk 256, loading chunk by chunk:
this reader 1.42 s, stackstac 4.67 s, odc-stac 6.00 s; whole build 3.16x the naive way at 640² px.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
import pystac
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader, MemoryFile
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from misomap.config_base import StorageConfig
from misomap.cube.errors import AssetReadError
from misomap.cube.grid import Grid

MAX_OPEN_PER_THREAD = 512
"""Open datasets kept per worker thread: enough for every asset over a few neighbouring chunks,
bounded so memory and file handles stay flat however large the region grows."""

MAX_MAPS_PER_THREAD = 64
"""Nearest-pixel maps kept per worker thread (a chunk needs one per source tile and resolution)."""

GDAL_CACHEMAX_BYTES = 128 * 2**20
"""GDAL's block cache (decoded source tiles, shared by neighbouring chunks), bounded so memory stays
flat as the region grows (GDAL's default is 5% of RAM, which the open datasets would fill)."""

_local = threading.local()
_epoch = 0


def source_gdal_options(storage: StorageConfig) -> dict[str, str]:
    """GDAL options that read `s3://` assets through /vsis3 from a custom endpoint (credentials from
    the environment/AWS chain, which GDAL reads itself)."""
    opts = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "3",
            "GDAL_HTTP_RETRY_DELAY": "0.5"}
    if storage.endpoint_url:
        url = urlparse(storage.endpoint_url)
        opts.update(AWS_S3_ENDPOINT=url.netloc, AWS_HTTPS="YES" if url.scheme == "https" else "NO",
                    AWS_VIRTUAL_HOSTING="FALSE")
    if storage.region:
        opts["AWS_REGION"] = storage.region
    if storage.anon:
        opts["AWS_NO_SIGN_REQUEST"] = "YES"
    return opts


def _thread_cache(name: str) -> OrderedDict:
    """This thread's cache `name`, emptied (datasets closed) when `forget_datasets` was called since."""
    if getattr(_local, "epoch", None) != _epoch:
        for cache in getattr(_local, "caches", {}).values():
            for value in cache.values():
                if isinstance(value, DatasetReader):
                    value.close()
        _local.caches, _local.epoch = {}, _epoch
    return _local.caches.setdefault(name, OrderedDict())


def _dataset(href: str) -> DatasetReader:
    """The thread's open dataset for `href`, opened on first use (least recently used closed first)."""
    cache: OrderedDict[str, DatasetReader] = _thread_cache("datasets")
    ds = cache.get(href)
    if ds is not None and not ds.closed:
        cache.move_to_end(href)
        return ds
    try:
        ds = rasterio.open(href, sharing=False)
    except RasterioError as err:
        raise AssetReadError(f"cannot open {href!r}: {err}") from None
    if ds.count != 1:
        ds.close()
        raise AssetReadError(f"{href!r} has {ds.count} bands; each STAC asset must be one band")
    cache[href] = ds
    while len(cache) > MAX_OPEN_PER_THREAD:
        cache.popitem(last=False)[1].close()
    return ds


def forget_datasets() -> None:
    """Make every thread reopen its assets on next use (a new build: files may have been replaced)."""
    global _epoch
    _epoch += 1


@dataclass(frozen=True)
class _NearestMap:
    """Which source pixel each chunk pixel takes under nearest resampling: the source window to read
    and, for the covered chunk pixels, their row/col in that window."""

    covered: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    window: Window


def _nearest_map(ds: DatasetReader, grid: Grid) -> _NearestMap:
    """Warp a raster of source-pixel indices onto the chunk once per (source geometry, chunk), with
    the same WarpedVRT as a value read: every band of an item with that geometry then takes the same
    pixels, so one warp serves them all (identical values, several times fewer warps)."""
    key = (ds.crs.to_wkt(), tuple(ds.transform)[:6], ds.shape, grid.crs, grid.bounds, grid.shape)
    cache: OrderedDict[tuple, _NearestMap] = _thread_cache("nearest")
    hit = cache.get(key)
    if hit is not None:
        return hit
    h, w = ds.shape
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=w, height=h, count=1, dtype="int32", crs=ds.crs,
                      transform=ds.transform) as dst:
            dst.write(np.arange(h * w, dtype=np.int32).reshape(h, w), 1)
        with mem.open() as src, WarpedVRT(src, crs=grid.crs, transform=grid.transform,
                                          width=grid.shape[1], height=grid.shape[0],
                                          resampling=Resampling.nearest, nodata=-1) as vrt:
            index = vrt.read(1)
    covered = index >= 0
    rows, cols = np.divmod(index[covered], w)
    if rows.size:
        window = Window(int(cols.min()), int(rows.min()), int(np.ptp(cols)) + 1, int(np.ptp(rows)) + 1)
        rows, cols = rows - window.row_off, cols - window.col_off
    else:
        window = Window(0, 0, 0, 0)
    cache[key] = hit = _NearestMap(covered, rows, cols, window)
    while len(cache) > MAX_MAPS_PER_THREAD:
        cache.popitem(last=False)
    return hit


def _read_asset(href: str, grid: Grid, resampling: Resampling, out: np.ndarray) -> None:
    ds = _dataset(href)
    try:
        if resampling == Resampling.nearest:
            nearest = _nearest_map(ds, grid)
            out[...] = np.nan
            if nearest.rows.size:
                block = ds.read(1, window=nearest.window, out_dtype="float32")
                out[nearest.covered] = block[nearest.rows, nearest.cols]
            data = out[None]
        else:
            with WarpedVRT(ds, crs=grid.crs, transform=grid.transform, width=grid.shape[1],
                           height=grid.shape[0], resampling=resampling,
                           add_alpha=ds.nodata is None) as vrt:
                # one warp of the values (and alpha); a masked read would warp the mask a second time
                data = vrt.read(out_dtype="float32")
    except RasterioError as err:
        raise AssetReadError(f"cannot read {href!r} onto the chunk: {err}") from None
    if data.shape[0] == 2:  # no nodata in the file: the alpha band marks the covered pixels
        out[...] = np.where(data[1] != 0, data[0], np.float32(np.nan))
    elif ds.nodata is not None:
        out[...] = np.where(data[0] != np.float32(ds.nodata), data[0], np.float32(np.nan))


def _scale_offset(items: Sequence[pystac.Item], assets: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    scale = np.ones((len(items), len(assets)), np.float32)
    offset = np.zeros((len(items), len(assets)), np.float32)
    for i, item in enumerate(items):
        for j, key in enumerate(assets):
            bands = item.assets[key].extra_fields.get("raster:bands") or [{}]
            scale[i, j] = bands[0].get("scale", 1.0)
            offset[i, j] = bands[0].get("offset", 0.0)
    return scale, offset


def read_window(items: Sequence[pystac.Item], assets: Sequence[str], grid: Grid,
                resampling: str = "nearest", gdal_options: dict[str, str] | None = None,
                unscaled: Sequence[str] = ()) -> np.ndarray:
    """Items' assets on `grid` as float32 (time, asset, y, x); NaN where nodata or not covered.

    Assets listed in `unscaled` (class bands such as SCL) keep their raw values. AssetReadError
    names the href that could not be opened or read.
    """
    data = np.empty((len(items), len(assets), *grid.shape), np.float32)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHEMAX_BYTES, **(gdal_options or {})):
        for i, item in enumerate(items):
            for j, key in enumerate(assets):
                _read_asset(item.assets[key].href, grid, Resampling[resampling], data[i, j])
    scale, offset = _scale_offset(items, assets)
    keep = np.array([a in unscaled for a in assets])
    scale[:, keep], offset[:, keep] = 1.0, 0.0
    data *= scale[:, :, None, None]
    data += offset[:, :, None, None]
    return data
