"""The cube builder end to end against a real STAC API (rustac) over real COGs in several CRSs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401 - registers the .rio accessor
import xarray as xr
import yaml
from tests.support.cube_fixtures import (
    CHUNK,
    COVER_X,
    S2_BANDS,
    X0,
    Y1,
    cube_section,
    elevation,
    in_cloud,
    in_snow,
    reflectance,
    vv_db,
    write_source_world,
)

from misomap.config import RunConfig, config_from_dict
from misomap.core.config_base import StorageConfig
from misomap.cube.errors import ChunkBuildError, CubeStorageError, SourceItemError, StacSearchError
from misomap.cube.grid import Grid
from misomap.cube.reader import open_cube
from misomap.jobs.build_cube import run_build_cube

NO_STORAGE = StorageConfig()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_source_world(tmp_path_factory.mktemp("cube-world"))


@pytest.fixture(scope="module")
def stac_url(world, stac_api_factory) -> str:
    return stac_api_factory(world.stac_files)


def run_config(url: str, out: Path | str, **cube) -> RunConfig:
    return config_from_dict({"stac": {"url": url, "max_retries": 1}, "cube": cube_section(str(out), **cube)})


@pytest.fixture(scope="module")
def built(stac_url, tmp_path_factory) -> tuple[Path, xr.Dataset]:
    out = tmp_path_factory.mktemp("built") / "cube.zarr"
    result = run_build_cube(run_config(stac_url, out))
    assert result.chunks_built == result.chunks_total == 6
    return out, open_cube(str(out), NO_STORAGE).load()


def _truth_grid(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(ds.x.values, ds.y.values)


def test_cube_layout_follows_the_contract(built):
    out, ds = built
    assert ds.data.dtype == np.float32 and ds.data.dims == ("band", "y", "x")
    assert list(ds.band.values) == ([f"s2_summer_{b}" for b in S2_BANDS] + ["s1_summer_vv_db", "s1_summer_vh_db",
                                     "elevation", "slope", "precip_annual", "jan_min_temp"])
    assert ds.data.attrs["grid_mapping"] == "spatial_ref"
    grid = Grid("EPSG:3338", 10.0, X0, Y1 - 640.0, X0 + 960.0, Y1)
    np.testing.assert_allclose(ds.x.values, grid.x_coords())
    np.testing.assert_allclose(ds.y.values, grid.y_coords())
    assert ds.spatial_ref.attrs["GeoTransform"] == grid.spatial_ref_attrs()["GeoTransform"]
    raw = xr.open_zarr(out)
    assert raw.data.encoding["chunks"] == (10, CHUNK, CHUNK)
    meta = json.loads((out / "data" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3 and any(c["name"] == "zstd" for c in meta["codecs"])
    assert "consolidated_metadata" in json.loads((out / "zarr.json").read_text())


def test_lineage_names_search_items_and_version(built):
    _, ds = built
    lineage = ds.attrs["misomap"]
    assert lineage["software"].startswith("misomap ")
    assert lineage["search"]["datetime"] == "2021-01-01/2021-12-31"
    assert lineage["items"]["sentinel-2-l2a"] == ["S2_A_d1", "S2_A_d2", "S2_B_d1", "S2_B_d2"]  # May item left out
    assert lineage["items"]["ak-terrain"] == ["ak-terrain-1"]
    # acquisition span of the items used (not the static terrain): the maps' STAC dates
    assert lineage["imagery_datetime"] == ["2021-07-01T21:00:00Z", "2021-07-20T21:00:00Z"]
    assert lineage["grid"]["crs"] == "EPSG:3338"


def test_optical_composite_masks_cloud_shadow_snow_and_mosaics_two_utm_zones(built):
    _, ds = built
    x, y = _truth_grid(ds)
    covered = x < X0 + COVER_X - 10
    for band in S2_BANDS:
        got = ds.data.sel(band=f"s2_summer_{band}").values
        ok = covered & np.isfinite(got)
        assert ok.sum() > 0.95 * covered.sum()
        # nearest resampling of a smooth field: error well under the cloud (0.85) / snow (0.75) jumps
        assert np.abs(got[ok] - reflectance(band, x[ok], y[ok])).max() < 0.01
    red = ds.data.sel(band="s2_summer_red").values
    for patch in (in_cloud(x, y) & covered, in_snow(x, y) & covered):
        assert patch.sum() > 50 and np.nanmax(red[patch]) < 0.5
    # the overlap of tile A (EPSG:32605) and tile B (EPSG:32606) holds values, not NaN
    overlap = (x > X0 + 440) & (x < X0 + 490)
    assert np.isfinite(red[overlap]).all()


def test_radar_mean_in_db_and_static_covariates(built):
    _, ds = built
    x, y = _truth_grid(ds)
    covered = x < X0 + COVER_X - 10
    inner = covered & (x > X0 + 30) & (y < Y1 - 30) & (y > Y1 - 610)
    vv = ds.data.sel(band="s1_summer_vv_db").values
    both = covered & (y < Y1 - 200.0) & np.isfinite(vv)  # the second scene misses the northern strip
    assert both.sum() > 0.9 * (covered & (y < Y1 - 200.0)).sum()
    assert np.abs(vv[both] - vv_db(x[both], y[both])).max() < 0.15
    vh = ds.data.sel(band="s1_summer_vh_db").values
    assert np.abs(vh[both] - (vv_db(x[both], y[both]) - 7.0)).max() < 0.15
    elev = ds.data.sel(band="elevation").values
    assert np.isfinite(elev[inner]).all()
    assert np.abs(elev[inner] - elevation(x[inner], y[inner])).max() < 6.5  # 30 m source pixels
    temp = ds.data.sel(band="jan_min_temp").values[covered]  # 100 m source pixels: edges may be NaN
    assert np.isfinite(temp).mean() > 0.8 and np.nanmin(temp) == np.nanmax(temp) == -30.0


def test_all_nodata_chunks_are_nan_unwritten_and_do_not_spread(built):
    out, ds = built
    empty = ds.data.values[:, :, 64:]
    assert np.isnan(empty).all()
    written = sorted(str(p.relative_to(out / "data" / "c")) for p in (out / "data" / "c").rglob("*") if p.is_file())
    assert written == ["0/0/0", "0/0/1", "0/1/0", "0/1/1"]
    # the chunk next to the empty one is complete up to the data's edge (within one 30 m source pixel)
    assert np.isfinite(ds.data.sel(band="elevation").values[:, 32:57]).all()
    assert np.isfinite(ds.data.sel(band="s2_summer_nir").values[5:-5, 32:57]).all()
    records = sorted(p.name for p in Path(str(out) + ".progress").iterdir())
    assert records == ["0.0.json", "0.1.json", "0.2.json", "1.0.json", "1.1.json", "1.2.json", "template.json"]


def test_quicklook_png_written(built):
    out, _ = built
    png = Path(str(out) + ".quicklook.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_rioxarray_reads_crs_and_transform_of_the_v3_cube(built):
    out, _ = built
    da = xr.open_zarr(out, decode_coords="all").data
    assert da.rio.crs.to_epsg() == 3338
    assert tuple(da.rio.transform())[:6] == (10.0, 0.0, X0, 0.0, -10.0, Y1)


def test_zarr_v2_cube_is_read_by_gdal_with_crs_and_transform(stac_url, tmp_path, built):
    out = tmp_path / "cube_v2.zarr"
    run_build_cube(run_config(stac_url, out, zarr_format=2))
    with rasterio.open(f'ZARR:"{out}":/data') as src:
        assert src.crs.to_epsg() == 3338
        assert tuple(src.transform)[:6] == (10.0, 0.0, X0, 0.0, -10.0, Y1)
        assert src.count == 10
        v2_red = src.read(2)
    np.testing.assert_array_equal(v2_red, built[1].data.sel(band="s2_summer_red").values)


def test_geomedian_composite_also_recovers_the_surface(stac_url, tmp_path):
    section = cube_section(str(tmp_path / "g.zarr"))
    section["sources"] = [{**section["sources"][0], "method": "geomedian"}]
    section["quicklook_bands"] = None
    cfg = config_from_dict({"stac": {"url": stac_url}, "cube": section})
    run_build_cube(cfg)
    ds = open_cube(str(tmp_path / "g.zarr"), NO_STORAGE).load()
    x, y = _truth_grid(ds)
    got = ds.data.sel(band="s2_summer_nir").values
    ok = np.isfinite(got)
    assert ok.sum() > 3000 and np.abs(got[ok] - reflectance("nir", x[ok], y[ok])).max() < 0.01


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_killed_build_resumes_byte_identical(stac_url, tmp_path, built):
    killed, clean = tmp_path / "killed.zarr", tmp_path / "clean.zarr"
    section = cube_section(str(killed), chunk=16, workers=1)
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump({"stac": {"url": stac_url}, "cube": section}, sort_keys=False))
    run_build_cube(config_from_dict({"stac": {"url": stac_url}, "cube": {**section, "out": str(clean)}}))
    progress = Path(str(killed) + ".progress")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "misomap"), "cube", "build", "--config",
                             str(cfg_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None and len(list(progress.glob("[0-9]*.json"))) < 3:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done_before = len(list(progress.glob("[0-9]*.json")))
    assert proc.returncode == -signal.SIGKILL and 3 <= done_before < 24, "the build was not killed mid-way"
    result = run_build_cube(config_from_dict(yaml.safe_load(cfg_path.read_text())))
    assert result.chunks_skipped >= 3 and result.chunks_built == 24 - result.chunks_skipped
    assert _tree(killed) == _tree(clean)


def test_rebuild_onto_a_cube_of_other_inputs_is_refused(stac_url, built):
    out, _ = built
    with pytest.raises(CubeStorageError, match="other inputs"):
        run_build_cube(run_config(stac_url, out, datetime="2021-06-01/2021-12-31"))


def test_empty_search_names_collection_and_range(stac_url, tmp_path):
    with pytest.raises(StacSearchError, match=r"no items of collection 'sentinel-2-l2a'.*2019-01-01/2019-12-31"):
        run_build_cube(run_config(stac_url, tmp_path / "c.zarr", datetime="2019-01-01/2019-12-31"))
    assert not (tmp_path / "c.zarr").exists()


def test_missing_band_names_item_and_asset(stac_url, tmp_path):
    section = cube_section(str(tmp_path / "c.zarr"))
    section["sources"][0]["bands"]["red"] = "B04"
    with pytest.raises(SourceItemError, match=r"item 'S2_A_d0'.*no asset 'B04' \(band 'red'\)"):
        run_build_cube(config_from_dict({"stac": {"url": stac_url}, "cube": section}))


def test_item_without_projection_info_is_named(stac_api_factory, tmp_path):
    bare = write_source_world(tmp_path / "bare", drop_proj=True)
    url = stac_api_factory(bare.stac_files)
    with pytest.raises(SourceItemError, match=r"item 'S2_A_d0'.*no usable projection information"):
        run_build_cube(run_config(url, tmp_path / "c.zarr"))


def test_corrupt_cog_fails_its_chunks_only_and_rerun_completes(stac_api_factory, tmp_path, built):
    own = write_source_world(tmp_path / "w")
    url = stac_api_factory(own.stac_files)
    bad = own.cogs[("sentinel-2-l2a", "S2_B_d1", "red")]
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[: len(good_bytes) // 3])
    out = tmp_path / "c.zarr"
    with pytest.raises(ChunkBuildError, match=r"of 6 chunks failed") as err:
        run_build_cube(run_config(url, out))
    message = str(err.value)
    assert bad.resolve().as_uri() in message and "chunk 0.1" in message and "chunk 1.1" in message
    assert "chunk 0.0" not in message and "chunk 1.0" not in message  # tile A alone: unaffected
    records = {p.stem for p in Path(str(out) + ".progress").glob("[0-9]*.json")}
    assert {"0.0", "1.0"} <= records and not {"0.1", "1.1"} & records
    bad.write_bytes(good_bytes)
    result = run_build_cube(run_config(url, out))
    assert result.chunks_built == 6 - len(records) and result.chunks_skipped == len(records)
    np.testing.assert_array_equal(open_cube(str(out), NO_STORAGE).data.values, built[1].data.values)


def test_signing_hook_rewrites_hrefs(stac_api_factory, tmp_path, world):
    """Hrefs served as unreadable `https://blob.invalid/...` only work after the configured signer."""
    stac = tmp_path / "stac"
    stac.mkdir()
    files = []
    for f in world.stac_files:
        text = f.read_text().replace("file:///", "https://blob.invalid/")
        (stac / f.name).write_text(text)
        files.append(stac / f.name)
    url = stac_api_factory(files)
    with pytest.raises(ChunkBuildError, match="blob.invalid"):
        run_build_cube(run_config(url, tmp_path / "unsigned.zarr"))
    out = tmp_path / "signed.zarr"
    run_build_cube(run_config(url, out, sign="tests.support.cube_fixtures:fake_sign"))
    assert np.isfinite(open_cube(str(out), NO_STORAGE).data.sel(band="s2_summer_red").values[:, :40]).mean() > 0.9


def test_unreachable_stac_endpoint_fails_after_bounded_retries(tmp_path):
    import http.server
    import threading

    hits = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            hits.append(self.path)
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        cfg = config_from_dict({"stac": {"url": url, "max_retries": 2}, "cube": cube_section(str(tmp_path / "c"))})
        with pytest.raises(StacSearchError, match=rf"STAC API {url} did not answer after 2 retries"):
            run_build_cube(cfg)
    finally:
        server.shutdown()
        server.server_close()
    assert len(hits) == 3  # one try and two retries, then a clear error
    shutil.rmtree(tmp_path, ignore_errors=True)
    closed = config_from_dict({"stac": {"url": url, "max_retries": 1, "timeout_s": 2}, "cube": cube_section(str(tmp_path / "c"))})
    with pytest.raises(StacSearchError, match="did not answer"):
        run_build_cube(closed)
