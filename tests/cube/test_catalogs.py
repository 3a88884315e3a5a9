"""Real catalog layouts: item JSON as Earth Search v1 and the Planetary Computer publish it
(tests/data/catalogs/, sources in its README), assets served from local COGs on each asset's own
declared grid (a 40-pixel window of it, so files stay small), and the cube's values checked against
the reflectance / backscatter / elevation the COGs were written from."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

from misomap.cube import composite
from misomap.cube.build import build_chunk
from misomap.cube.config import CubeConfig, SourceConfig
from misomap.cube.errors import AssetReadError, ChunkBuildError, SourceItemError
from misomap.cube.grid import Grid, plan_chunks
from misomap.cube.search import FoundItems, check_item, datatake
from misomap.cube.stack import forget_datasets, read_window

DATA = Path(__file__).parents[1] / "data" / "catalogs"
N = 40  # pixels of the window served, per side, at the finest resolution


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def refl(k: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True surface reflectance of band number k at projected coordinates (smooth, 0.03..0.45)."""
    return 0.05 + 0.08 * k + 0.03 * np.sin(x / 97.0) * np.cos(y / 61.0)


def serve(item: dict, tmp: Path, assets: dict[str, tuple[str, float | None, Callable]],
          row0: int, col0: int, n: int = N, epsg: int | None = None) -> pystac.Item:
    """Write each asset as a local COG over an n-pixel window of its declared grid (window origin
    at (row0, col0) of the finest grid), point the item at it and shrink proj:shape/transform to it.
    `assets` maps key -> (dtype, nodata tag or None, fn(x, y) -> pixel values)."""
    declared = item
    item = copy.deepcopy(item)
    props = item["properties"]

    def transform(key: str) -> list[float]:
        return declared["assets"][key].get("proj:transform") or declared["properties"]["proj:transform"]
    fine = min(abs(transform(k)[0]) for k in assets)
    for key, (dtype, nodata, fn) in assets.items():
        asset = item["assets"][key]
        where = asset if "proj:transform" in asset else props
        t = Affine(*transform(key)[:6])
        f = round(abs(t.a) / fine)
        win = t @ Affine.translation(col0 // f, row0 // f)
        m = max(n // f, 1)
        cols, rows = np.meshgrid(np.arange(m) + 0.5, np.arange(m) + 0.5)
        x, y = win @ (cols, rows)
        path = tmp / item["id"] / f"{key}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="COG", width=m, height=m, count=1, dtype=dtype,
                           crs=f"EPSG:{epsg or props['proj:epsg']}", transform=win, nodata=nodata,
                           blocksize=128) as dst:
            dst.write(np.asarray(fn(x, y)).astype(dtype), 1)
        asset["href"] = path.as_uri()
        where["proj:shape"], where["proj:transform"] = [m, m], list(win)[:6]
    return pystac.Item.from_dict(item)


def grid_of(item: pystac.Item, key: str) -> Grid:
    """The cube grid = the served window of `key` (same CRS and pixels: nearest reads are exact)."""
    fields = {**item.properties, **item.assets[key].extra_fields}
    t, (h, w) = Affine(*fields["proj:transform"][:6]), fields["proj:shape"]
    epsg = fields.get("proj:epsg") or fields["proj:code"].split(":")[1]
    return Grid(f"EPSG:{epsg}", t.a, t.c, t.f + h * t.e, t.c + w * t.a, t.f)


def cube_of(source: dict, grid: Grid, items: list[pystac.Item]) -> np.ndarray:
    """build_chunk over the whole grid (one chunk) for one source, items checked as a search would."""
    cfg = CubeConfig.model_validate({
        "out": "/tmp/unused.zarr", "datetime": "2015-01-01/2025-12-31", "crs": grid.crs,
        "resolution": grid.resolution, "bounds": list(grid.bounds), "chunk": max(grid.shape),
        "seasons": {"all": {"start": "01-01", "end": "12-31"}}, "sources": [source]})
    src = cfg.sources[0]
    checked = tuple(check_item(it, src) for it in items)
    found = FoundItems(src, {"static" if src.kind == "static" else "all": checked})
    forget_datasets()
    return build_chunk(cfg, [found], grid, plan_chunks(grid, cfg.chunk)[0], {})


def expected(grid: Grid, k: int) -> np.ndarray:
    x, y = np.meshgrid(grid.x_coords(), grid.y_coords())
    return np.round(refl(k, x, y) * 1e4) / 1e4


# --- Earth Search v1 sentinel-2-l2a ------------------------------------------------------------

ES_BANDS = ["blue", "green", "red", "nir"]


def es_item(tmp: Path, applied: bool, baseline: str, item_id: str | None = None,
            bump: float = 0.0) -> pystac.Item:
    """The real Earth Search item with its flag and baseline set; pixels encoded as Element 84's
    pipeline left them: +1000 only where the baseline is >= 04.00 and the offset not applied."""
    doc = load("earth-search-v1-sentinel-2-l2a.json")
    doc["properties"]["earthsearch:boa_offset_applied"] = applied
    doc["properties"]["s2:processing_baseline"] = baseline
    if item_id:
        doc["id"] = item_id
    add = 1000 if baseline >= "04.00" and not applied else 0
    assets = {b: ("uint16", 0, lambda x, y, k=k: np.round((refl(k, x, y) + bump) * 1e4) + add)
              for k, b in enumerate(ES_BANDS)}
    return serve(doc, tmp, assets, 5000, 5000)


ES_SOURCE = {"collection": "sentinel-2-l2a", "kind": "optical", "prefix": "s2",
             "bands": {b: b for b in ES_BANDS}}


@pytest.mark.parametrize("applied, baseline", [(True, "05.09"), (False, "05.09"), (False, "03.01")])
def test_earth_search_reflectance_right_whatever_the_pipeline_did(tmp_path, applied, baseline):
    item = es_item(tmp_path, applied, baseline)
    assert item.properties["earthsearch:boa_offset_applied"] is applied
    assert item.assets["red"].extra_fields["raster:bands"][0]["offset"] == -0.1  # as published
    grid = grid_of(item, "red")
    cube = cube_of(ES_SOURCE, grid, [item])
    for k in range(len(ES_BANDS)):
        np.testing.assert_allclose(cube[k], expected(grid, k), atol=2e-6)


def test_raster_bands_rule_on_earth_search_would_be_off_by_the_offset(tmp_path):
    """What the issue saw: taking raster:bands at its word puts applied items 0.1 too low."""
    item = es_item(tmp_path, True, "05.09")
    grid = grid_of(item, "red")
    cube = cube_of({**ES_SOURCE, "scaling": "raster-bands"}, grid, [item])
    np.testing.assert_allclose(cube[2], expected(grid, 2) - 0.1, atol=2e-6)


def test_earth_search_flag_false_without_baseline_is_refused_by_name(tmp_path):
    item = es_item(tmp_path, False, "05.09")
    del item.properties["s2:processing_baseline"]
    with pytest.raises(SourceItemError, match="S2B_22MHD_20230912_0_L2A.*s2:processing_baseline"):
        check_item(item, SourceConfig.model_validate(ES_SOURCE))


# --- Planetary Computer sentinel-2-l2a --------------------------------------------------------

PC_S2 = {"collection": "sentinel-2-l2a", "kind": "optical", "prefix": "s2", "mask_asset": "SCL",
         "bands": {"red": "B04", "swir16": "B11"}}


def pc_s2_item(tmp: Path, name: str) -> pystac.Item:
    doc = load(name)
    add = 1000 if doc["properties"]["s2:processing_baseline"] >= "04.00" else 0
    return serve(doc, tmp, {
        "B04": ("uint16", 0, lambda x, y: np.round(refl(0, x, y) * 1e4) + add),
        "B11": ("uint16", 0, lambda x, y: np.round(refl(1, x, y) * 1e4) + add),
        # cloud (SCL 9) over the window's west half
        "SCL": ("uint8", 0, lambda x, y: np.where(x < x.min() + (x.max() - x.min()) / 2, 9, 4)),
    }, 5000, 5000)


@pytest.mark.parametrize("name", ["sentinel-2-l2a-pc.json", "sentinel-2-l2a-pc-baseline-02.12.json"])
def test_planetary_computer_s2_by_processing_baseline(tmp_path, name):
    item = pc_s2_item(tmp_path, name)
    assert "raster:bands" not in item.assets["B04"].extra_fields  # PC publishes no scale/offset
    grid = grid_of(item, "B04")
    cube = cube_of(PC_S2, grid, [item])
    x, y = np.meshgrid(grid.x_coords(), grid.y_coords())
    cloudy = x < grid.xmin + N * 10.0 / 2  # SCL (20 m, same origin) flags its west half
    assert np.isnan(cube[0][cloudy]).all() and not np.isnan(cube[0][~cloudy]).any()
    np.testing.assert_allclose(cube[0][~cloudy], expected(grid, 0)[~cloudy], atol=2e-6)
    # B11 is 20 m: each cube pixel takes the 20 m pixel it falls in
    x20, y20 = x - (x - grid.xmin) % 20 + 10, y - (y - grid.ymax) % 20 + 10
    np.testing.assert_allclose(cube[1][~cloudy], (np.round(refl(1, x20, y20) * 1e4) / 1e4)[~cloudy],
                               atol=2e-6)


def test_s2_item_with_offset_but_no_flag_is_refused_unless_configured(tmp_path):
    item = pc_s2_item(tmp_path, "sentinel-2-l2a-pc.json")
    for key in ("B04", "B11"):
        item.assets[key].extra_fields["raster:bands"] = [{"scale": 0.0001, "offset": -0.1, "nodata": 0}]
    with pytest.raises(SourceItemError, match="S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458.*"
                                              "set `scaling`"):
        check_item(item, SourceConfig.model_validate(PC_S2))
    grid = grid_of(item, "B04")
    cube = cube_of({**PC_S2, "scaling": "planetary-computer-s2"}, grid, [item])
    assert np.nanmax(np.abs(cube[0] - expected(grid, 0))) < 2e-6


# --- Planetary Computer sentinel-1-rtc --------------------------------------------------------

def vv_lin(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 10 ** ((-12.0 + 3.0 * np.sin(x / 150.0)) / 10)


def s1_item(tmp: Path, file_nodata: float | None) -> pystac.Item:
    doc = load("sentinel-1-rtc-pc.json")  # proj on the item, raster:bands nodata -32768 per asset
    def vv(x, y):
        v = vv_lin(x, y)
        v[:5] = -32768.0  # a strip outside the swath
        return v
    return serve(doc, tmp, {"vv": ("float32", file_nodata, vv),
                            "vh": ("float32", file_nodata, lambda x, y: vv_lin(x, y) / 5)}, 4000, 9000)


def test_planetary_computer_s1_rtc_nodata_from_raster_bands(tmp_path):
    item = s1_item(tmp_path, None)  # the file carries no nodata tag: raster:bands must supply it
    grid = grid_of(item, "vv")
    raw = read_window([check_item(item, SourceConfig(collection="sentinel-1-rtc", kind="radar", prefix="s1",
                                                     bands={"vv": "vv"}))], ["vv"], grid)
    assert np.isnan(raw[0, 0, :5]).all() and not np.isnan(raw[0, 0, 5:]).any()
    cube = cube_of({"collection": "sentinel-1-rtc", "kind": "radar", "prefix": "s1",
                    "bands": {"vv": "vv", "vh": "vh"}}, grid, [item])
    x, y = np.meshgrid(grid.x_coords(), grid.y_coords())
    np.testing.assert_allclose(cube[0, 5:], (10 * np.log10(vv_lin(x, y)))[5:], atol=1e-4)
    np.testing.assert_allclose(cube[1], 10 * np.log10(vv_lin(x, y) / 5), atol=1e-4)


def test_nodata_mismatch_between_stac_and_file_is_reported_and_stac_wins(tmp_path, caplog):
    item = s1_item(tmp_path, -9999.0)
    grid = grid_of(item, "vv")
    src = SourceConfig(collection="sentinel-1-rtc", kind="radar", prefix="s1", bands={"vv": "vv"})
    forget_datasets()
    with caplog.at_level(logging.WARNING, logger="misomap.cube.stack"):
        raw = read_window([check_item(item, src)], ["vv"], grid)
    assert "raster:bands nodata -32768 differs from the file's nodata tag -9999.0" in caplog.text
    assert item.id in caplog.text
    assert np.isnan(raw[0, 0, :5]).all()


# --- Copernicus DEM (Planetary Computer cop-dem-glo-30) ----------------------------------------

def test_copernicus_dem_static_mosaic_with_file_nodata(tmp_path):
    doc = load("cop-dem-glo-30-pc.json")  # EPSG:4326, no raster:bands: nodata from the file tag
    def dem(lon, lat):
        z = 2800.0 + 1000.0 * (lat + 90.0)
        z[lat > -89.02] = -32767.0  # a void, flagged only by the file's nodata tag
        return z
    item = serve(doc, tmp_path, {"data": ("float32", -32767.0, dem)}, 0, 0, n=200)
    lonlat = (-179.75, -89.02)  # inside the served window (lon -180..-179.44, lat -89..-89.055)
    tr = Transformer.from_crs("EPSG:4326", "EPSG:3031", always_xy=True)
    x, y = tr.transform(*lonlat)
    grid = Grid.aligned("EPSG:3031", 30.0, (x - 300, y - 300, x + 300, y + 300))
    cube = cube_of({"collection": "cop-dem-glo-30", "kind": "static", "bands": {"elevation": "data"}},
                   grid, [item])
    gx, gy = np.meshgrid(grid.x_coords(), grid.y_coords())
    lon, lat = Transformer.from_crs("EPSG:3031", "EPSG:4326", always_xy=True).transform(gx, gy)
    truth = 2800.0 + 1000.0 * (lat + 90.0)
    void, land = lat > -89.02 + 1 / 3600, lat < -89.02 - 1 / 3600  # one source pixel off the edge
    assert void.any() and land.any()
    assert np.isnan(cube[0][void]).all() and not np.isnan(cube[0][land]).any()
    np.testing.assert_allclose(cube[0][land], truth[land], atol=1000.0 / 3600)  # within one pixel


# --- Bad input ---------------------------------------------------------------------------------

def test_item_without_projection_metadata_is_named(tmp_path):
    item = es_item(tmp_path, True, "05.09")
    item.properties.pop("proj:epsg", None)
    item.properties.pop("proj:code", None)  # pystac may have migrated proj:epsg to proj:code
    with pytest.raises(SourceItemError, match="S2B_22MHD_20230912_0_L2A.*no usable projection"):
        check_item(item, SourceConfig.model_validate(ES_SOURCE))


def test_file_crs_contradicting_stac_is_refused_naming_the_asset(tmp_path):
    doc = load("earth-search-v1-sentinel-2-l2a.json")
    item = serve(doc, tmp_path, {b: ("uint16", 0, lambda x, y: np.full(x.shape, 1500)) for b in ES_BANDS},
                 5000, 5000, epsg=32723)  # the files say UTM 23S, the item says 22S
    grid = grid_of(item, "red")
    with pytest.raises(ChunkBuildError, match=r"S2B_22MHD_20230912_0_L2A/blue.*EPSG:32723.*EPSG:32722"):
        cube_of(ES_SOURCE, grid, [item])
    with pytest.raises(AssetReadError, match="the STAC item says EPSG:32722"):
        read_window([item], ["red"], grid)


# --- One acquisition counted once --------------------------------------------------------------

def test_one_datatake_on_overlapping_tiles_counts_once(tmp_path):
    """Two MGRS granules of one datatake overlap the chunk; a third date differs. The median must be
    that of two acquisitions, not of three observations (median{a, b, b} = b)."""
    a = es_item(tmp_path / "a", True, "05.09", "S2B_22MHD_20230912_0_L2A")
    # brighter copies, so the median shows which observations counted; b has a's datatake id
    b = es_item(tmp_path / "b", True, "05.09", "S2B_22MHE_20230912_0_L2A", bump=0.03)
    c = es_item(tmp_path / "c", True, "05.09", "S2B_22MHD_20230922_0_L2A", bump=0.1)
    c.properties["s2:datatake_id"] = "GS2B_20230922T133839_034184_N05.09"
    c.datetime = c.datetime.replace(day=22)
    assert datatake(a) == datatake(b) != datatake(c)
    grid = grid_of(a, "red")
    cube = cube_of(ES_SOURCE, grid, [a, b, c])
    truth = expected(grid, 2)
    np.testing.assert_allclose(cube[2], truth + 0.05, atol=2e-6)  # median{a|b, c}
    # without de-duplication the three observations' median would be b
    stack = np.stack([truth, truth + 0.03, truth + 0.1])[:, None]
    np.testing.assert_allclose(composite.median(stack)[0], truth + 0.03, atol=1e-6)
    merged = composite.merge_duplicates(stack, [[0, 1], [2]])
    np.testing.assert_allclose(composite.median(merged)[0], truth + 0.05, atol=1e-6)


def test_merge_duplicates_fills_from_the_next_tile_where_the_first_has_no_data():
    nan = np.nan
    stack = np.array([[[[1.0, nan]], [[nan, nan]]], [[[5.0, 3.0]], [[6.0, 4.0]]],
                      [[[9.0, 9.0]], [[9.0, 9.0]]]], np.float32)  # (time 3, band 2, y 1, x 2)
    out = composite.merge_duplicates(stack, [[0, 1], [2]])
    np.testing.assert_array_equal(out[0], [[[1.0, 3.0]], [[6.0, 4.0]]])
    np.testing.assert_array_equal(out[1], stack[2])
