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
from misomap.cube.errors import CorruptChunkError, CubeError, CubeStorageError
from misomap.cube.grid import Grid
from misomap.cube.store import LINEAGE_KEY, check_chunk, chunk_manifest, require_complete
from misomap.runtime.records import COMPLETE_ATTR


class CubeReadError(CubeError):
    """The cube lacks a band the model needs, or is not a georeferenced misomap cube."""


def open_cube(location: str, storage: StorageConfig, complete: bool = True) -> xr.Dataset:
    """Open a cube lazily (consolidated metadata when present); an unfinished cube is refused
    unless `complete` is False (the builder's own quicklook, or a caller that checked already).
    Every chunk later read through this module is checked against the cube's chunk manifest."""
    if complete:
        require_complete(location, storage)
    try:
        ds = xr.open_zarr(Target(location, storage).zarr_store(read_only=True), consolidated=None)
    except Exception as err:  # noqa: BLE001 - missing, garbage metadata or codec errors of many kinds
        raise CubeStorageError(f"no readable cube at {location!r} ({type(err).__name__}: {err}): run "
                               "`misomap cube build` (or `misomap verify` it)") from None
    if "data" in ds:
        ds["data"].encoding[SOURCE] = (location, storage)
    return ds


SOURCE = "misomap_source"
"""Encoding key of a cube's `data`: (location, storage), for the chunk check on read."""


class ChunkCheck:
    """Checks each cube chunk once per process against the chunk manifest (its completion records'
    digests): a flipped byte or two swapped chunks stop the reader with the chunk's key."""

    def __init__(self, location: str, manifest: dict[str, str], chunk: int) -> None:
        self.location, self.manifest, self.chunk = location, manifest, chunk
        self.verified: set[str] = set()

    def block(self, key: str, values: np.ndarray) -> None:
        """Check one whole chunk (all bands) already read."""
        if key not in self.verified:
            check_chunk(self.location, key, values, self.manifest)
            self.verified.add(key)

    def points(self, data: zarr.Array | xr.DataArray, rows: np.ndarray, cols: np.ndarray) -> None:
        """Check every chunk holding a pixel (rows[i], cols[i]) of `data` (band, y, x), reading those
        not checked yet whole."""
        c, (_, h, w) = self.chunk, data.shape
        for iy, ix in sorted({(int(r) // c, int(q) // c) for r, q in zip(rows.ravel(), cols.ravel(), strict=True)}):
            if (key := f"{iy}.{ix}") not in self.verified:
                try:
                    block = data[:, iy * c:min((iy + 1) * c, h), ix * c:min((ix + 1) * c, w)]
                    values = np.asarray(getattr(block, "values", block))
                except Exception as err:  # noqa: BLE001 - codec/IO errors of many kinds mean "corrupt"
                    raise CorruptChunkError(f"cube {self.location} chunk {key} is unreadable ({type(err).__name__}): "
                                            "rebuild it with `misomap cube build --repair` (same config)") from None
                self.block(key, values)

    def window(self, data: zarr.Array | xr.DataArray, r0: int, r1: int, c0: int, c1: int) -> None:
        """Check every chunk overlapping rows [r0, r1) x cols [c0, c1)."""
        c = self.chunk
        iy, ix = np.meshgrid(np.arange(r0 // c, (r1 - 1) // c + 1), np.arange(c0 // c, (c1 - 1) // c + 1))
        self.points(data, iy * c, ix * c)


@lru_cache(maxsize=8)
def _chunk_check(location: str, storage: StorageConfig, mark_sha: str, chunk: int) -> ChunkCheck:
    manifest = chunk_manifest(location, storage, {"chunk_manifest_sha256": mark_sha})
    assert manifest is not None
    return ChunkCheck(location, manifest, chunk)


def chunk_check(location: str, storage: StorageConfig) -> ChunkCheck | None:
    """The process's chunk check of the cube at `location` (one per chunk manifest, so a rebuilt
    cube gets a fresh one); None for a cube without a manifest (made outside misomap)."""
    group = zarr.open_group(Target(location, storage).zarr_store(read_only=True), mode="r")
    attrs = dict(group.attrs)
    mark = attrs.get(COMPLETE_ATTR)
    if not isinstance(mark, dict) or not mark.get("chunk_manifest_sha256") or LINEAGE_KEY not in attrs:
        return None
    return _chunk_check(location, storage, mark["chunk_manifest_sha256"], int(attrs[LINEAGE_KEY]["chunk"]))


def data_check(data: xr.DataArray) -> ChunkCheck | None:
    """The chunk check of a cube's `data` opened by open_cube (None otherwise)."""
    source = data.encoding.get(SOURCE)
    return chunk_check(*source) if source else None


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
    check = data_check(ds["data"])  # the band names and coordinates first, against the chunk manifest
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
        if check is not None:
            check.window(ds["data"], r0, r1, c0, c1)
        sub = ds["data"].sel(band=list(bands)).isel(y=slice(r0, r1), x=slice(c0, c1)).values
        out[:, r0 - row0:r1 - row0, c0 - col0:c1 - col0] = sub
    xs = grid.xmin + (np.arange(col0, col1) + 0.5) * r
    ys = grid.ymax - (np.arange(row0, row1) + 0.5) * r
    return Window(out, xs, ys)
