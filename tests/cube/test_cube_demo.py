"""Integration: a cube from the demo world through the real STAC API, locally and onto real S3 with the
demo COGs read through GDAL /vsis3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from misomap.config import config_from_dict
from misomap.core.config_base import StorageConfig
from misomap.cube.reader import open_cube
from misomap.jobs.build_cube import run_build_cube
from misomap.demo.run_sections import cube_section

def demo_cube_section(world: Path, out: str) -> dict[str, Any]:
    """The demo's own cube section, in small chunks so several chunks meet."""
    return cube_section(world, out, chunk=64)


def _terrain_cog(world: Path) -> Path:
    return next((world / "cogs" / "ak-terrain").rglob("elevation.tif"))


def _check_demo_cube(ds, world: Path) -> None:
    assert ds.sizes["band"] == 9 + 2 + 7 + 3
    with rasterio.open(_terrain_cog(world)) as src:
        elevation = src.read(1, masked=True).filled(np.nan)
        on_cube_grid = tuple(src.transform.to_gdal()) == tuple(
            float(v) for v in ds.spatial_ref.attrs["GeoTransform"].split())
    if on_cube_grid:  # the demo's terrain is published on the suggested grid: stacking must be exact
        np.testing.assert_array_equal(ds.data.sel(band="elevation").values, elevation)
    red = ds.data.sel(band="s2_summer_red").values
    assert np.isfinite(red).mean() > 0.95
    assert np.nanpercentile(red, 99) < 0.5  # clouds and snow masked out of the summer composite
    assert np.isfinite(ds.data.sel(band="s1_summer_vv_db").values).mean() > 0.95


def test_cube_from_the_demo_world_through_the_stac_api(demo_world, demo_stac_api, tmp_path):
    out = tmp_path / "demo.zarr"
    cfg = config_from_dict({"stac": {"url": demo_stac_api}, "cube": demo_cube_section(demo_world, str(out))})
    result = run_build_cube(cfg)
    assert result.chunks_built == result.chunks_total
    _check_demo_cube(open_cube(str(out), StorageConfig()).load(), demo_world)


@pytest.mark.slow  # ~45 s; tests/test_cube_s3.py covers /vsis3 sources and an S3 cube on a small world
def test_cube_from_demo_cogs_on_s3_onto_s3(demo_world, s3_server, s3fs_filesystem, s3_bucket, stac_api_factory,
                                           tmp_path, monkeypatch):
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    s3fs_filesystem.put(str(demo_world / "cogs"), f"{s3_bucket}/world/", recursive=True)
    local_prefix = (demo_world / "cogs").resolve().as_uri()
    files = []
    for f in (demo_world / "stac" / "api").glob("*.json"):
        text = f.read_text()
        (tmp_path / f.name).write_text(text.replace(local_prefix, f"s3://{s3_bucket}/world/cogs"))
        files.append(tmp_path / f.name)
    assert any(f"s3://{s3_bucket}/world/cogs" in f.read_text() for f in files)
    url = stac_api_factory(sorted(files))
    out = f"s3://{s3_bucket}/demo.zarr"
    cfg = config_from_dict({"stac": {"url": url}, "storage": {"endpoint_url": s3_server.endpoint_url},
                            "cube": demo_cube_section(demo_world, out)})
    run_build_cube(cfg)
    _check_demo_cube(open_cube(out, StorageConfig(endpoint_url=s3_server.endpoint_url)).load(), demo_world)


def test_demo_world_publishes_sentinel2_both_sides_of_baseline_04(demo_world):
    """Earth Search v1 as it is: pre-04.00 items, post-04.00 items with the offset still in the
    pixels and post-04.00 items where Element 84 removed it, all with raster:bands offset -0.1."""
    import json

    kinds = set()
    for path in (demo_world / "stac" / "sentinel-2-l2a").glob("*/*.json"):
        item = json.loads(path.read_text())
        props = item["properties"]
        kinds.add((props["s2:processing_baseline"] >= "04.00", props["earthsearch:boa_offset_applied"]))
        assert item["assets"]["red"]["raster:bands"][0]["offset"] == -0.1
    assert kinds == {(False, False), (True, False), (True, True)}


@pytest.mark.parametrize("when", ["2021-07-08T21:30:00", "2022-05-08T21:30:00", "2022-07-06T21:30:00"])
def test_demo_encoding_decodes_to_the_reflectance_under_the_earth_search_rule(tmp_path, when):
    """The demo's DN encoding for each kind of item, read back by the cube reader's `auto` rule,
    gives the reflectance it was written from (to DN rounding)."""
    from datetime import datetime

    import pystac
    from rasterio.transform import from_origin

    from misomap.cube.grid import Grid
    from misomap.cube.stack import read_window
    from misomap.demo import stac
    from misomap.demo.publish import cog_bytes
    from misomap.demo.scenes import Acquisition, _dn, processing

    acq = Acquisition("summer", datetime.fromisoformat(when), "a", 72)
    baseline, applied = processing(acq)
    refl = np.linspace(0.0003, 0.6, 64 * 64, dtype=np.float32).reshape(64, 64)
    dn = _dn(refl, baseline >= "04.00" and not applied)
    path = tmp_path / "red.tif"
    path.write_bytes(cog_bytes(dn, "EPSG:32606", from_origin(400_000.0, 7_500_000.0, 20.0, 20.0), 0, 256))
    item = pystac.Item("S2A_06WCP", None, None, acq.when, {
        "platform": "sentinel-2a", "s2:processing_baseline": baseline,
        "earthsearch:boa_offset_applied": applied, "proj:epsg": 32606})
    item.add_asset("red", pystac.Asset(path.as_uri(), extra_fields={"raster:bands": [
        {"nodata": 0, "scale": stac.S2_SCALE, "offset": stac.S2_OFFSET}]}))
    grid = Grid("EPSG:32606", 20.0, 400_000.0, 7_500_000.0 - 64 * 20, 400_000.0 + 64 * 20, 7_500_000.0)
    got = read_window([item], ["red"], grid, scaling="auto")[0, 0]
    np.testing.assert_allclose(got, refl, atol=5e-5 + 1e-6)
