"""Lazy, chunk-aware reads of cube bands for training: crops around pedons come from the Zarr cube
through a bounded LRU cache of decoded chunks, so memory depends on the cache size, not the cube's.

`LazyBands` looks like a (band, y, x) float32 array to slicing code (`shape`, `dtype`,
`arr[:, r0:r1, c0:c1]`), which is all crop samplers need; per-band statistics stream over chunks.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np
import zarr

from misomap.core.config_base import StorageConfig
from misomap.core.storage import Target
from misomap.cube.errors import CubeStorageError
from misomap.cube.reader import ChunkCheck, chunk_check

log = logging.getLogger(__name__)


class LazyBands:
    """Selected bands of a (band, y, x) Zarr array, read chunk by chunk with an LRU chunk cache."""

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, array: zarr.Array, band_index: list[int], cache_bytes: int = 512 * 2**20,
                 check: ChunkCheck | None = None) -> None:
        if len(array.shape) != 3:
            raise CubeStorageError(f"expected a (band, y, x) array, got shape {array.shape}")
        self._array = array
        self._bands = np.asarray(band_index, dtype=np.intp)
        _, self.height, self.width = array.shape
        self.chunk_h, self.chunk_w = array.chunks[1], array.chunks[2]
        self.shape = (len(self._bands), self.height, self.width)
        chunk_bytes = len(self._bands) * self.chunk_h * self.chunk_w * 4
        self.max_chunks = max(4, cache_bytes // chunk_bytes)  # a crop may span 4 chunks
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.chunk_reads = 0
        self._check = check

    def _read_chunk(self, iy: int, ix: int) -> np.ndarray:
        r0, c0 = iy * self.chunk_h, ix * self.chunk_w
        block = self._array[:, r0:min(r0 + self.chunk_h, self.height), c0:min(c0 + self.chunk_w, self.width)]
        self.chunk_reads += 1
        if self._check is not None:
            self._check.block(f"{iy}.{ix}", block)
        return np.ascontiguousarray(block[self._bands], dtype=np.float32)

    def _chunk(self, iy: int, ix: int) -> np.ndarray:
        key = (iy, ix)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        block = self._cache[key] = self._read_chunk(iy, ix)
        if len(self._cache) > self.max_chunks:
            self._cache.popitem(last=False)
        return block

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        """`arr[bands, rows, cols]` with step-1 row/column slices inside the array."""
        bands, rows, cols = key
        r0, r1, rs = rows.indices(self.height)
        c0, c1, cs = cols.indices(self.width)
        if rs != 1 or cs != 1:
            raise IndexError("LazyBands reads contiguous windows only (step 1)")
        out = np.empty((len(self._bands), max(r1 - r0, 0), max(c1 - c0, 0)), np.float32)
        for iy in range(r0 // self.chunk_h, (r1 - 1) // self.chunk_h + 1 if r1 > r0 else 0):
            for ix in range(c0 // self.chunk_w, (c1 - 1) // self.chunk_w + 1 if c1 > c0 else 0):
                block = self._chunk(iy, ix)
                br0, bc0 = iy * self.chunk_h, ix * self.chunk_w
                a0, a1 = max(r0, br0), min(r1, br0 + block.shape[1])
                b0, b1 = max(c0, bc0), min(c1, bc0 + block.shape[2])
                out[:, a0 - r0:a1 - r0, b0 - c0:b1 - c0] = block[:, a0 - br0:a1 - br0, b0 - bc0:b1 - bc0]
        return out[bands]

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-band NaN-ignoring mean and standard deviation, streamed over chunks (not cached)."""
        n = np.zeros(len(self._bands))
        s = np.zeros(len(self._bands))
        s2 = np.zeros(len(self._bands))
        for iy in range(-(-self.height // self.chunk_h)):
            for ix in range(-(-self.width // self.chunk_w)):
                block = self._read_chunk(iy, ix).astype(np.float64)
                ok = np.isfinite(block)
                n += ok.sum(axis=(1, 2))
                s += np.where(ok, block, 0.0).sum(axis=(1, 2))
                s2 += np.where(ok, block * block, 0.0).sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s / n
            std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
        return mean, std


def open_bands(location: str, storage: StorageConfig, bands: list[str],
               cache_bytes: int = 512 * 2**20) -> LazyBands:
    """Lazy reader of `bands` of the cube at `location`; CubeStorageError naming missing bands."""
    try:
        group = zarr.open_group(Target(location, storage).zarr_store(read_only=True), mode="r")
        data, names = group["data"], [str(b) for b in group["band"][:]]
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError) as err:
        raise CubeStorageError(f"no finished cube at {location!r} ({err}): run `misomap cube build`") from None
    missing = [b for b in bands if b not in names]
    if missing:
        raise CubeStorageError(f"cube {location} lacks the band(s) {missing}; it has {names}")
    return LazyBands(data, [names.index(b) for b in bands], cache_bytes, chunk_check(location, storage))


def band_mean_std(arr: np.ndarray | LazyBands) -> tuple[np.ndarray, np.ndarray]:
    """Per-band NaN-ignoring mean and std of an in-memory or lazy (band, y, x) array."""
    if isinstance(arr, LazyBands):
        return arr.mean_std()
    return np.nanmean(arr, axis=(1, 2)), np.nanstd(arr, axis=(1, 2))
