"""The chunk reader: same values as stackstac, each asset opened once per thread across chunks,
reopened after `forget_datasets`, unreadable assets named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import stackstac
from rasterio.transform import from_origin

from misomap.cube import stack
from misomap.cube.errors import AssetReadError
from misomap.cube.grid import Grid

GRID = Grid("EPSG:3338", 10.0, 200_000.0, 1_639_680.0, 200_640.0, 1_640_000.0)  # 64 x 32 px


def _cog(path: Path, nodata: float | None, seed: int) -> str:
    """A 7 m UTM raster over part of GRID (so the read both reprojects and leaves pixels uncovered)."""
    data = np.random.default_rng(seed).integers(1, 5000, (60, 50)).astype(np.uint16)
    data[:5, :5] = 0
    with rasterio.open(path, "w", driver="GTiff", width=50, height=60, count=1, dtype="uint16",
                       crs="EPSG:32605", transform=from_origin(652_500.0, 7_175_000.0, 7.0, 7.0),
                       nodata=nodata, tiled=True, blockxsize=16, blockysize=16) as dst:
        dst.write(data, 1)
    return str(path)


@pytest.fixture
def items(tmp_path) -> list[pystac.Item]:
    from rasterio.warp import transform_bounds

    w, s, e, n = transform_bounds("EPSG:3338", "EPSG:4326", *GRID.bounds)
    out = []
    for i, nodata in enumerate((0, None)):
        href = _cog(tmp_path / f"a{i}.tif", nodata, i)
        with rasterio.open(href) as src:
            proj = {"proj:epsg": 32605, "proj:shape": [src.height, src.width],
                    "proj:transform": list(src.transform)[:6]}
        item = pystac.Item(f"it{i}", None, [w - 1, s - 1, e + 1, n + 1], pystac.utils.str_to_datetime(
            "2021-07-01T00:00:00Z"), {})
        item.add_asset("b", pystac.Asset(href, extra_fields=proj))
        out.append(item)
    return out


def test_values_match_stackstac_including_nodata_and_uncovered_pixels(items):
    ours = stack.read_window(items, ["b"], GRID)
    ref = stackstac.stack([it.to_dict() for it in items], assets=["b"], epsg=3338, resolution=10.0,
                          bounds=GRID.bounds, snap_bounds=False, dtype="float32", fill_value=np.float32(np.nan),
                          rescale=False, sortby_date=False).data.compute(scheduler="synchronous")
    assert np.isnan(ours).any() and (~np.isnan(ours)).any()
    np.testing.assert_array_equal(ours, ref)


def test_each_asset_opened_once_across_chunks_until_forgotten(items, monkeypatch):
    opened: list[str] = []
    real_open = rasterio.open
    monkeypatch.setattr(stack.rasterio, "open", lambda href, **kw: opened.append(href) or real_open(href, **kw))
    stack.forget_datasets()
    for col0 in (0, 32):
        stack.read_window(items, ["b"], GRID.window(0, col0, 32, 32))
    assert sorted(opened) == sorted(it.assets["b"].href for it in items)
    stack.forget_datasets()
    stack.read_window(items, ["b"], GRID.window(0, 0, 32, 32))
    assert len(opened) == 2 * len(items)


def test_unreadable_asset_is_named(items, tmp_path):
    missing = str(tmp_path / "gone.tif")
    items[1].assets["b"].href = missing
    with pytest.raises(AssetReadError, match="gone.tif"):
        stack.read_window(items, ["b"], GRID)
