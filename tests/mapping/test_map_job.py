"""The map job's machinery: chunking, halos, resumability, outputs an analyst can open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from misomap.config import config_from_dict
from misomap.cube.grid import Grid
from misomap.mapping.store import MapStoreError
from misomap.jobs.predict import run_predict
from tests.support import ROOT
from tests.support.map_cube import FACTORY, write_cube


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cube") / "cube.zarr"
    write_cube(path, Grid("EPSG:3338", 30.0, 300000.0, 1710000.0, 300000.0 + 90 * 30, 1710000.0 + 70 * 30))
    return path


def run_config(cube: Path, out: Path, **map_kw):
    return config_from_dict({"name": "t", "map": {"cube": str(cube), "output": str(out), "model": FACTORY,
                                                  "chunk_px": 32, "workers": 2, **map_kw}})


@pytest.fixture(autouse=True)
def _importable_test_predictor(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def _decoded(out: Path) -> xr.Dataset:
    return xr.open_zarr(out / "map.zarr").load()


def _store_bytes(out: Path) -> dict[str, bytes]:
    files = [p for p in (out / "map.zarr").rglob("*") if p.is_file()] + sorted((out / "cogs").glob("*.tif"))
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(files)}


@pytest.fixture(scope="module")
def reference_map(cube, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "map"
    summary = run_predict(run_config(cube, out))
    assert summary.chunks_run == summary.chunks_total == 9
    return out


def test_outputs_georeferenced_and_cf(reference_map):
    import rioxarray  # noqa: F401

    ds = xr.open_zarr(reference_map / "map.zarr")
    pf = ds["permafrost_probability"]
    assert pf.rio.crs.to_epsg() == 3338
    assert pf.rio.transform().c == 300000.0 and pf.rio.transform().f == 1710000.0 + 70 * 30
    assert ds["soil_order_class"].attrs["flag_meanings"].split()[0] == "Andisols"
    values = pf.values
    assert np.all(np.isnan(values[:35, :35])), "nodata corner must stay nodata"
    assert np.nanmin(values) >= 0 and np.nanmax(values) <= 1
    assert np.isfinite(values[40:, 40:]).all(), "no NaN spread outside the nodata corner"
    probs = ds["soil_order_probability"].values[:, 50, 50]
    assert abs(probs.sum() - 1) < 0.05


def test_cogs_valid_with_colour_table(reference_map):
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    for tif in sorted((reference_map / "cogs").glob("*.tif")):
        valid, errors, _ = cog_validate(str(tif))
        assert valid, (tif, errors)
    with rasterio.open(reference_map / "cogs" / "soil_order_class.tif") as src:
        assert src.crs.to_epsg() == 3338 and src.nodata == 255
        assert src.colormap(1)[2][:3] == (70, 130, 220)
        assert src.transform.c == 300000.0
    with rasterio.open(reference_map / "cogs" / "soil_order_probability.tif") as src:
        assert src.count == 7 and src.descriptions[0] == "Andisols" and src.scales[0] == 0.01


def test_stac_and_quicklook(reference_map):
    import pystac

    col = pystac.Collection.from_file(str(reference_map / "stac" / "collection.json"))
    item = next(iter(col.get_items()))
    assert item.properties["proj:code"] == "EPSG:3338"
    assert item.assets["permafrost_probability"].extra_fields["file:checksum"].startswith("1220")
    assert not any(link.rel == "derived_from" for link in item.links)  # a local cube outside the folder
    assert item.properties["misomap:input_cube"]["name"] == "cube.zarr"
    assert (reference_map / "quicklook.png").stat().st_size > 10_000


def test_other_chunking_agrees_no_seams(cube, reference_map, tmp_path):
    out = tmp_path / "map48"
    run_predict(run_config(cube, out, chunk_px=48, workers=1))
    a, b = _decoded(reference_map), _decoded(out)
    for name in ("permafrost_probability", "soil_order_probability", "soil_order_class"):
        np.testing.assert_array_equal(a[name].values, b[name].values)


def test_rerun_skips_finished_chunks_and_other_config_refused(cube, reference_map):
    again = run_predict(run_config(cube, reference_map))
    assert again.chunks_run == 0
    with pytest.raises(MapStoreError, match="another configuration"):
        run_predict(run_config(cube, reference_map, chunk_px=64))


def _cli(cfg_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from misomap.cli import run_cli; run_cli()",
                             "predict", "--config", str(cfg_path)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _write_cfg(path: Path, cube: Path, out: Path) -> Path:
    path.write_text(yaml.safe_dump({"name": "t", "map": {"cube": str(cube), "output": str(out),
                                                         "model": FACTORY, "chunk_px": 32, "workers": 1}}))
    return path


def test_sigkill_midway_then_rerun_is_byte_identical(cube, reference_map, tmp_path):
    out = tmp_path / "killed"
    cfg = _write_cfg(tmp_path / "run.yaml", cube, out)
    proc = _cli(cfg)
    progress = out / "_progress" / "map"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(progress.glob("*.json"))) < 3:
        time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(progress.glob("*.json")))
    assert 3 <= done_before < 9, "the kill must land mid-way"
    rerun = subprocess.run([sys.executable, "-c", "from misomap.cli import run_cli; run_cli()",
                            "predict", "--config", str(cfg)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"chunks run {9 - done_before}/9" in rerun.stdout
    assert _store_bytes(out) == _store_bytes(reference_map)


def test_two_concurrent_runs_end_identical(cube, reference_map, tmp_path):
    out = tmp_path / "concurrent"
    procs = [_cli(_write_cfg(tmp_path / f"run{i}.yaml", cube, out)) for i in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stdout.read().decode()
    assert _store_bytes(out) == _store_bytes(reference_map)


def test_overlap_off_writes_the_same_bytes(cube, reference_map, tmp_path):
    """The reference map ran with overlap (the default: each worker reads the next chunk and writes
    the last while one computes); without it the store and the COGs are byte for byte the same."""
    out = tmp_path / "plain"
    summary = run_predict(run_config(cube, out, overlap=False, workers=1))
    assert summary.chunks_run == 9
    assert _store_bytes(out) == _store_bytes(reference_map)


def test_model_loaded_once_per_worker(cube, tmp_path):
    from distributed import Client, LocalCluster

    from misomap.core.storage import Target
    from misomap.cube.grid import plan_chunks
    from misomap.mapping.chunk import MapSpec, output_grid, predict_chunk, zarr_url
    from misomap.mapping.store import ensure_template
    from misomap.mapping.predictors import api as predictors

    cfg = run_config(cube, tmp_path / "once")
    grid = output_grid(cfg.map, cfg.storage)
    ensure_template(Target(zarr_url(cfg.map)), grid, 32, 3, {}, "h")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            Client(cl) as client:
        client.gather(client.map(predict_chunk, plan_chunks(grid, 32), spec=MapSpec(cfg.map, cfg.storage),
                                  pure=False))
        loads = client.run(lambda: len(predictors.LOADS))
    assert sum(loads.values()) <= 2 and all(n <= 1 for n in loads.values())


def test_gateway_run_matches_local(cube, reference_map, gateway_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MISOMAP_GATEWAY_PASSWORD", gateway_server.password)
    cfg = config_from_dict({"name": "t", "gateway": {"address": gateway_server.address},
                            "map": {"cube": str(cube), "output": str(tmp_path / "gw"), "model": FACTORY,
                                    "chunk_px": 32, "workers": 2}})
    summary = run_predict(cfg)
    assert summary.chunks_run == 9
    assert _store_bytes(tmp_path / "gw") == _store_bytes(reference_map)


ANALYST_SCRIPT = """
import sys, json, xarray as xr, rioxarray
url, endpoint, key, secret = sys.argv[1:5]
so = {"key": key, "secret": secret, "client_kwargs": {"endpoint_url": endpoint}}
ds = xr.open_zarr(url, storage_options=so)
pf = ds["permafrost_probability"]
print(json.dumps({"epsg": pf.rio.crs.to_epsg(), "x0": float(ds.x[0]), "y0": float(ds.y[0]),
                  "shape": list(pf.shape), "mean": float(pf.mean())}))
assert "misomap" not in sys.modules
"""


def test_s3_output_opened_by_analyst_without_misomap(cube, s3_server, s3_bucket, tmp_path, monkeypatch):
    import json

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    out = f"s3://{s3_bucket}/maps/demo"
    cfg = config_from_dict({"name": "t", "storage": {"endpoint_url": s3_server.endpoint_url},
                            "map": {"cube": str(cube), "output": out, "model": FACTORY, "chunk_px": 32,
                                    "workers": 1}})
    run_predict(cfg)
    proc = subprocess.run([sys.executable, "-c", ANALYST_SCRIPT, f"{out}/map.zarr", s3_server.endpoint_url,
                           s3_server.access_key, s3_server.secret_key], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["epsg"] == 3338 and got["shape"] == [70, 90]
    assert got["x0"] == 300015.0 and got["y0"] == 1710000.0 + 70 * 30 - 15


def test_zarr_v2_map_is_read_by_gdal_with_crs_transform_and_nodata(cube, reference_map, tmp_path):
    import rasterio

    out = tmp_path / "v2"
    run_predict(run_config(cube, out, zarr_format=2, workers=1, cogs=False))
    with rasterio.open(f'ZARR:"{out / "map.zarr"}":/permafrost_probability') as src:
        assert src.crs.to_epsg() == 3338
        assert tuple(src.transform)[:6] == (30.0, 0.0, 300000.0, 0.0, -30.0, 1710000.0 + 70 * 30)
        assert src.nodata == 255
        raw = src.read(1)
    expected = xr.open_zarr(reference_map / "map.zarr", mask_and_scale=False)["permafrost_probability"].values
    np.testing.assert_array_equal(raw, expected)
