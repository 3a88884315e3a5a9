"""The lazy crop reader: windows and crops equal the in-memory cube's, the chunk cache stays bounded,
band statistics stream, and missing bands are named."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from misomap.core.config_base import StorageConfig
from misomap.cube.crops import LazyBands, band_mean_std, open_bands
from misomap.cube.errors import CubeStorageError
from misomap.cube.grid import Grid
from misomap.models.miso.config import CropConfig
from misomap.models.miso.crops import CropSampler, Points

GRID = Grid("EPSG:3338", 30.0, 300_000.0, 1_200_000.0, 300_000.0 + 150 * 30, 1_200_000.0 + 110 * 30)
BANDS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(4, *GRID.shape)).astype(np.float32)
    data[:, :40, :40] = np.nan  # a never-written (all-nodata) chunk and partial nodata
    path = tmp_path_factory.mktemp("crops") / "cube.zarr"
    ds = xr.Dataset({"data": (("band", "y", "x"), data)},
                    coords={"band": np.array(BANDS, dtype=object), "y": GRID.y_coords(), "x": GRID.x_coords()})
    ds.chunk({"band": 4, "y": 32, "x": 32}).to_zarr(path, zarr_format=3, mode="w", consolidated=False)
    return str(path), data


def test_windows_match_the_in_memory_cube(cube):
    path, data = cube
    lazy = open_bands(path, StorageConfig(), ["c", "a"])
    assert lazy.shape == (2, *GRID.shape)
    ref = data[[2, 0]]
    rng = np.random.default_rng(0)
    for _ in range(30):
        r0, c0 = int(rng.integers(0, 100)), int(rng.integers(0, 140))
        r1, c1 = r0 + int(rng.integers(1, 80)), c0 + int(rng.integers(1, 80))
        np.testing.assert_array_equal(lazy[:, r0:r1, c0:c1], ref[:, r0:r1, c0:c1])
    np.testing.assert_array_equal(lazy[1:, 5:9, 140:150], ref[1:, 5:9, 140:150])


def test_crops_equal_and_cache_stays_bounded(cube):
    path, data = cube
    pts = Points(GRID.xmin + np.array([100.0, 2000.0, 4400.0]), GRID.ymin + np.array([100.0, 1500.0, 3200.0]),
                 np.array([1, 0, 1]), np.array([2, 3, 4]))
    cfg = CropConfig(size_px=24, jitter_px=5, label_slots=2, pseudo_points=3, grid=2, min_valid_fraction=0.1)
    lazy = LazyBands(open_bands(path, StorageConfig(), BANDS)._array, [0, 1, 2, 3], cache_bytes=1)
    eager = CropSampler(data, None, GRID, pts, cfg)
    streamed = CropSampler(lazy, None, GRID, pts, cfg)
    for seed in range(5):
        a = eager.labelled(np.arange(3), np.random.default_rng(seed))
        b = streamed.labelled(np.arange(3), np.random.default_rng(seed))
        np.testing.assert_array_equal(a.imagery, b.imagery)
        np.testing.assert_array_equal(a.pix, b.pix)
        a = eager.unlabelled(4, np.random.default_rng(seed))
        b = streamed.unlabelled(4, np.random.default_rng(seed))
        np.testing.assert_array_equal(a.imagery, b.imagery)
    assert lazy.max_chunks == 4 and len(lazy._cache) <= 4 and lazy.chunk_reads > 4


def test_streamed_band_statistics_and_missing_bands(cube):
    path, data = cube
    mean, std = band_mean_std(open_bands(path, StorageConfig(), BANDS))
    np.testing.assert_allclose(mean, np.nanmean(data, axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, np.nanstd(data, axis=(1, 2)), rtol=1e-4)
    with pytest.raises(CubeStorageError, match=r"lacks the band\(s\) \['nir'\]"):
        open_bands(path, StorageConfig(), ["a", "nir"])
