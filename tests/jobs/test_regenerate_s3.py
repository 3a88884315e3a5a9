"""`misomap regenerate` on the real fixtures together: working stores, model checkpoint and published
versions on the SeaweedFS bucket, the cube and map chunks on a dask-gateway cluster, imagery found
through the rustac STAC API. A run SIGKILLed mid-way and rerun publishes the clean run's product;
a further rerun does no work; a new item in one chunk redoes only the chunks it touches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import xarray as xr
import yaml
from dask_gateway import Gateway
from dask_gateway.auth import BasicAuth

from misomap.config import config_from_dict
from misomap.core.config_base import StorageConfig
from misomap.cube.store import COMPLETE_KEY
from misomap.jobs.regenerate import run_regenerate
from misomap.publish import versions
from misomap.runtime.records import COMPLETE_ATTR
from misomap.services.gateway import dask_gateway_server
from tests.jobs.test_regenerate import _new_item_in_chunk_00, _stages
from tests.support import ROOT
from tests.support.cube_fixtures import cube_section, write_source_world

BANDS = ["s2_summer_nir", "s2_summer_red"]


@pytest.fixture(scope="module")
def s3_gateway(s3_server, tmp_path_factory):
    """A gateway whose workers get the bucket's credentials from their environment (as the Helm
    values give them in production) and can import the test predictor."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           **s3_server.env()}
    with dask_gateway_server(tmp_path_factory.mktemp("gw-s3"), env=env) as (server, _):
        yield server


@pytest.fixture
def env(s3_server, s3_gateway, monkeypatch):
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MISOMAP_GATEWAY_PASSWORD", s3_gateway.password)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def _config(prefix: str, stac_url: str, endpoint: str, gateway: str) -> dict:
    """One gateway worker (the machine has 2 cores); working stores, model and versions in the bucket."""
    return {"name": "regen-test", "workdir": f"{prefix}/work", "stac": {"url": stac_url},
            "storage": {"endpoint_url": endpoint}, "gateway": {"address": gateway},
            "cube": cube_section("ignored.zarr", workers=1),
            "map": {"cube": "ignored-cube", "output": "ignored-output", "model": "tests.support.regen_predictor:factory",
                    "model_path": f"{prefix}/model.json", "chunk_px": 32, "workers": 1},
            "publish": {"root": f"{prefix}/published", "keep": 2}}


def _product(root: str, storage: StorageConfig) -> dict[str, str]:
    """The published version's files (relative path -> sha256), after checking every file against them."""
    v = versions.latest(root, storage)
    assert v is not None
    versions.verify(root, storage, v)
    return {rel: info["sha256"] for rel, info in v.files.items()}


def _stop_orphaned_clusters(gateway: str, password: str) -> None:
    """A SIGKILLed client leaves its gateway cluster running (until idle_timeout): stop it, as an
    operator or the gateway's idle culling would."""
    gw = Gateway(gateway, auth=BasicAuth("misomap", password))
    try:
        for report in gw.list_clusters():
            gw.stop_cluster(report.name)
    finally:
        gw.close()


def _marked(fs, store: str, attr: str) -> bool:
    """Whether the Zarr v3 store at bucket path `store` carries `attr` (its zarr.json, read afresh)."""
    fs.invalidate_cache()
    return attr in json.loads(fs.cat_file(f"{store}/zarr.json"))["attributes"]


def _listed(fs, prefix: str) -> bool:
    """Whether a completion record is stored under `prefix` (listed afresh; SeaweedFS keeps empty
    folder markers after a delete, so a bare listing proves nothing)."""
    fs.invalidate_cache()
    return any(p.endswith(".json") for p in fs.find(prefix))


def _setup(fs, bucket: str, name: str, stac_url: str, s3_server, s3_gateway) -> tuple[str, dict]:
    """A run under s3://<bucket>/<name>/ (its model checkpoint put there); its prefix and config."""
    prefix = f"s3://{bucket}/{name}"
    fs.pipe_file(f"{bucket}/{name}/model.json", json.dumps({"bands": BANDS}).encode())
    return prefix, _config(prefix, stac_url, s3_server.endpoint_url, s3_gateway.address)


def test_s3_gateway_regenerate_publishes_whole_version_then_does_nothing(
        env, s3_server, s3_gateway, s3fs_filesystem, s3_bucket, stac_api_factory, tmp_path, monkeypatch):
    from misomap.mapping import working

    world = write_source_world(tmp_path / "world")
    prefix, data = _setup(s3fs_filesystem, s3_bucket, "regen", stac_api_factory(world.stac_files), s3_server,
                          s3_gateway)
    storage = StorageConfig(endpoint_url=s3_server.endpoint_url)
    summary = run_regenerate(config_from_dict(data))
    assert summary.new_version
    assert {s.name: s.ran for s in summary.stages} == {"search": 8, "cube": 6, "predict": 6, "publish": 1}
    product = _product(f"{prefix}/published", storage)
    assert "map.zarr/zarr.json" in product and any(r.startswith("cogs/") for r in product)
    # the working stores carry their complete marks; the published map opens from the bucket
    assert _marked(s3fs_filesystem, f"{s3_bucket}/regen/work/regen/cube.zarr", COMPLETE_KEY)
    assert _marked(s3fs_filesystem, f"{s3_bucket}/regen/work/regen/map/map.zarr", COMPLETE_ATTR)
    v, url = versions.latest_url(f"{prefix}/published", storage)
    assert v.id == summary.version
    ds = xr.open_zarr(url, storage_options=storage.storage_options(), consolidated=None)
    assert ds["permafrost_probability"].shape == (64, 96) and ds.attrs[COMPLETE_ATTR]
    # unchanged inputs: no cluster, no chunk, no version
    monkeypatch.setattr(working, "dask_client", lambda *a: pytest.fail("started a cluster for no work"))
    again = run_regenerate(config_from_dict(data))
    assert [(s.name, s.ran) for s in again.stages[1:]] == [("cube", 0), ("predict", 0), ("publish", 0)]
    assert again.version == summary.version and not again.new_version


@pytest.mark.slow  # ~6 min on 2 shared cores: five regenerations on the gateway, one killed
def test_s3_gateway_kill_resume_noop_and_new_item(env, s3_server, s3_gateway, s3fs_filesystem, s3_bucket,
                                                  stac_api_factory, tmp_path):
    world = write_source_world(tmp_path / "world")
    url = stac_api_factory(world.stac_files)
    storage = StorageConfig(endpoint_url=s3_server.endpoint_url)
    fs = s3fs_filesystem
    # a clean, uninterrupted run in one prefix (the product does not depend on where the stores live)
    clean, clean_data = _setup(fs, s3_bucket, "clean", url, s3_server, s3_gateway)
    summary = run_regenerate(config_from_dict(clean_data))
    assert summary.new_version and {s.name: s.ran for s in summary.stages}["cube"] == 6
    clean_product = _product(f"{clean}/published", storage)
    prefix, data = _setup(fs, s3_bucket, "regen", url, s3_server, s3_gateway)
    published = f"{prefix}/published"

    # the same run SIGKILLed once its first cube chunk is recorded, then rerun
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    cli = [sys.executable, "-c", "from misomap.cli import run_cli; run_cli()", "regenerate", "--config", str(cfg)]
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cli, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    state = f"{s3_bucket}/regen/work/regen/state/cube"
    deadline = time.monotonic() + 300
    while proc.poll() is None and not _listed(fs, state):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    _stop_orphaned_clusters(s3_gateway.address, s3_gateway.password)
    assert versions.latest(published, storage) is None  # nothing half-published
    assert not _marked(fs, f"{s3_bucket}/regen/work/regen/cube.zarr", COMPLETE_KEY)
    done = subprocess.run(cli, check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    ran = _stages(done.stdout)
    assert 0 < ran["cube"] < 6, done.stdout  # resumed: the recorded chunk was not rebuilt
    assert _product(published, storage) == clean_product

    # nothing changed: no work, no new version
    again = subprocess.run(cli, check=False, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert _stages(again.stdout) == {"cube": 0, "predict": 0, "publish": 0}
    assert "unchanged" in again.stdout

    # a new item inside chunk 0.0: that cube chunk and the map chunks reading it are redone, while a
    # reader polling the bucket only ever sees whole versions
    url2 = stac_api_factory(_new_item_in_chunk_00(world, tmp_path))
    first = versions.latest(published, storage)
    seen, stop = [], threading.Event()
    reader = threading.Thread(target=_read_while, args=(published, storage, seen, stop))
    reader.start()
    try:
        summary = run_regenerate(config_from_dict({**data, "stac": {"url": url2}}))
    finally:
        stop.set()
        reader.join()
    ran = {s.name: s.ran for s in summary.stages}
    assert (ran["cube"], ran["predict"], ran["publish"]) == (1, 4, 1), summary.stages
    assert seen and {v for v, ok in seen} <= {first.id, summary.version} and all(ok for _, ok in seen)
    cat = json.loads(fs.cat_file(f"{s3_bucket}/regen/published/catalog.json"))
    assert [link["title"] for link in cat["links"] if link["rel"] == "item"] == [first.id, summary.version]


def _read_while(root: str, storage: StorageConfig, seen: list, stop: threading.Event) -> None:
    """Open the latest published map from the bucket repeatedly (without dask: the run's cluster is
    the process's default scheduler); each read must match its manifest. A failed read is recorded."""
    while not stop.is_set() or not seen:
        try:
            v, url = versions.latest_url(root, storage)
            values = xr.open_zarr(url, storage_options=storage.storage_options(), consolidated=None,
                                  chunks=None)["permafrost_probability"].values
            versions.verify(root, storage, v)
        except Exception as err:  # noqa: BLE001 - any failure is a reader seeing a broken version
            seen.append((repr(err), False))
            return
        seen.append((v.id, values.shape == (64, 96)))
        time.sleep(0.2)
