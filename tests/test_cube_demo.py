"""Integration: a cube from the demo world through the real STAC API, locally and onto real S3 with the
demo COGs read through GDAL /vsis3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from misomap.config import config_from_dict
from misomap.config_base import StorageConfig
from misomap.cube.store import open_cube
from misomap.jobs.build_cube import run_build_cube
from misomap.jobs.demo import cube_section

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
