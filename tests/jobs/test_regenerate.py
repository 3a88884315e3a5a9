"""`misomap regenerate` on the tiny source world behind a real STAC API: kill and resume, a rerun
that does no work, a new item that redoes only the chunks it touches, readers that only ever see
whole versions, and bad inputs refused before anything is written or published."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from pyproj import Transformer

from tests.support.cube_fixtures import X0, Y1, cube_section, write_source_world
from misomap.config import config_from_dict
from misomap.core.config_base import StorageConfig
from misomap.jobs.regenerate import RegenerateError, run_regenerate
from misomap.publish import versions
from misomap.publish.versions import PublishError
from tests.support import ROOT

STORAGE = StorageConfig()


@pytest.fixture(autouse=True)
def _importable_test_predictor(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_source_world(tmp_path_factory.mktemp("regen-world"))


@pytest.fixture(scope="module")
def stac_url(world, stac_api_factory) -> str:
    return stac_api_factory(world.stac_files)


def _model(path: Path, bands: list[str]) -> Path:
    path.write_text(json.dumps({"bands": bands}))
    return path


def _config(tmp: Path, url: str, model: Path, keep: int = 2) -> dict:
    return {"name": "regen-test", "workdir": str(tmp / "work"), "stac": {"url": url},
            "cube": cube_section(str(tmp / "ignored.zarr"), workers=1),
            "map": {"cube": "ignored-cube", "output": "ignored-output", "model": "tests.support.regen_predictor:factory",
                    "model_path": str(model), "chunk_px": 32, "workers": 1},
            "publish": {"root": str(tmp / "published"), "keep": keep}}


def _write(tmp: Path, data: dict) -> Path:
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # band order is cube order
    return path


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from misomap.cli import run_cli; run_cli()", *args],
                          capture_output=True, text=True, timeout=600, **kw)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _published_product(root: Path) -> dict[str, str]:
    v = versions.latest(str(root), STORAGE)
    assert v is not None
    versions.verify(str(root), STORAGE, v)
    return {rel: info["sha256"] for rel, info in v.files.items()}


def _new_item_in_chunk_00(world, tmp: Path) -> list[Path]:
    """The world's STAC files plus one new summer S2 item (the brighter May scene, re-dated) whose footprint lies
    inside cube chunk 0.0."""
    files = []
    for f in world.stac_files:
        if f.name == "sentinel-2-l2a.items.json":
            doc = json.loads(f.read_text())
            item = copy.deepcopy(next(i for i in doc["features"] if i["id"] == "S2_A_d0"))
            to_ll = Transformer.from_crs("EPSG:3338", "EPSG:4326", always_xy=True)
            # 60 m clear of the 320 m chunk's edges, so its lon/lat box touches no other chunk's
            w, s, e, n = to_ll.transform_bounds(X0 + 60, Y1 - 260, X0 + 260, Y1 - 60)
            item.update(id="S2_A_d3", bbox=[w, s, e, n], geometry={
                "type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]})
            item["properties"].update(datetime="2021-07-25T21:00:00Z", updated="2026-11-01T00:00:00Z")
            doc["features"].append(item)
            f = tmp / f.name
            f.write_text(json.dumps(doc))
        files.append(f)
    return files


def _stages(stdout: str) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[2]) for line in stdout.splitlines()
            if line.split() and line.split()[0] in ("cube", "predict", "publish")}


@pytest.mark.slow  # ~3.5 min on 2 shared cores: five regenerations, one killed
def test_kill_resume_noop_and_new_item(world, stac_url, stac_api_factory, tmp_path):
    model = _model(tmp_path / "model.json", ["s2_summer_nir", "s2_summer_red"])
    # a clean, uninterrupted run; its product is kept, its stores removed
    run = tmp_path / "run"
    run.mkdir()
    cfg = _write(run, _config(run, stac_url, model))
    summary = run_regenerate(config_from_dict(_config(run, stac_url, model)))
    assert summary.new_version and {s.name: s.ran for s in summary.stages}["cube"] == 6
    clean_product = _published_product(run / "published")
    assert "map.zarr/zarr.json" in clean_product and any(r.startswith("cogs/") for r in clean_product)
    shutil.rmtree(run / "work")
    shutil.rmtree(run / "published")

    # the same run killed once its first cube chunk is recorded, then rerun
    proc = subprocess.Popen([sys.executable, "-c", "from misomap.cli import run_cli; run_cli()", "regenerate",
                             "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = run / "work" / "regen" / "state" / "cube"
    deadline = time.monotonic() + 300
    while not (state.exists() and any(state.glob("*.json"))) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert versions.latest(str(run / "published"), STORAGE) is None  # nothing half-published
    done = _cli("regenerate", "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    ran = _stages(done.stdout)
    assert 0 < ran["cube"] < 6, done.stdout  # resumed: the recorded chunk was not rebuilt
    assert _published_product(run / "published") == clean_product

    # nothing changed: no work, no new version
    again = _cli("regenerate", "--config", str(cfg))
    assert again.returncode == 0, again.stderr
    assert _stages(again.stdout) == {"cube": 0, "predict": 0, "publish": 0}
    assert "unchanged" in again.stdout

    # a new item inside chunk 0.0: that cube chunk and the map chunks reading it (1 px halo) are redone,
    # while a reader polling the published map only ever sees whole versions
    url2 = stac_api_factory(_new_item_in_chunk_00(world, tmp_path))
    first = versions.latest(str(run / "published"), STORAGE)
    seen, stop = [], threading.Event()
    reader = threading.Thread(target=_read_while, args=(run / "published", seen, stop))
    reader.start()
    try:
        summary = run_regenerate(config_from_dict(_config(run, url2, model)))
    finally:
        stop.set()
        reader.join()
    ran = {s.name: s.ran for s in summary.stages}
    assert (ran["cube"], ran["predict"], ran["publish"]) == (1, 4, 1), summary.stages
    assert summary.version != first.id
    assert seen and {v for v, ok in seen} <= {first.id, summary.version} and all(ok for _, ok in seen)
    cat = json.loads((run / "published" / "catalog.json").read_text())
    assert [link["title"] for link in cat["links"] if link["rel"] == "item"] == [first.id, summary.version]


def _read_while(root: Path, seen: list, stop: threading.Event) -> None:
    """Open the latest published map repeatedly; each read must match its version's manifest."""
    while not stop.is_set() or not seen:
        v, url = versions.latest_url(str(root), STORAGE)
        ds = xr.open_zarr(url, consolidated=None)
        values = ds["permafrost_probability"].values
        versions.verify(str(root), STORAGE, v)
        seen.append((v.id, values.shape == (64, 96)))
        time.sleep(0.05)


def _product(root: Path, value: int) -> Path:
    """A small map-shaped product whose every pixel is `value`."""
    ds = xr.Dataset({"permafrost_probability": (("y", "x"), np.full((64, 64), value, np.uint8))})
    ds.chunk({"y": 16, "x": 16}).to_zarr(root / "map.zarr", zarr_format=3, mode="w", consolidated=False)
    return root


def test_readers_see_whole_versions_while_publishing(tmp_path):
    products = [_product(tmp_path / "a", 11), _product(tmp_path / "b", 22)]
    root = str(tmp_path / "published")
    versions.publish(str(products[0]), root, STORAGE, "k0", keep=100, bbox=(-150, 64, -149, 65))
    stop, bad, reads = threading.Event(), [], []

    def read() -> None:
        while not stop.is_set():
            _, url = versions.latest_url(root, STORAGE)
            values = np.unique(xr.open_zarr(url, consolidated=False)["permafrost_probability"].values)
            reads.append(values.tolist())
            if values.tolist() not in ([11], [22]):
                bad.append(values.tolist())

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        i = 0
        while i < 60 and (len(reads) < 20 or {tuple(r) for r in reads} != {(11,), (22,)}):
            i += 1
            versions.publish(str(products[i % 2]), root, STORAGE, f"k{i}", keep=100, bbox=(-150, 64, -149, 65))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not bad and {tuple(r) for r in reads} == {(11,), (22,)}
    assert len(versions.list_versions(root, STORAGE)) == i + 1


def test_keep_last_n_and_identical_content_is_not_republished(tmp_path):
    products = [_product(tmp_path / "a", 1), _product(tmp_path / "b", 2)]
    root = str(tmp_path / "published")
    ids = []
    for i in range(4):
        v, new = versions.publish(str(products[i % 2]), root, STORAGE, f"k{i}", keep=2, bbox=(-150, 64, -149, 65))
        assert new
        ids.append(v.id)
    v, new = versions.publish(str(products[1]), root, STORAGE, "k4", keep=2, bbox=(-150, 64, -149, 65))
    assert not new and v.id == ids[-1]
    assert [v.id for v in versions.list_versions(root, STORAGE)] == ids[-2:]
    assert sorted(p.name for p in (tmp_path / "published" / "versions").iterdir()) == ids[-2:]


def test_dangling_pointer_is_refused_and_nothing_changes(world, stac_url, tmp_path):
    root = tmp_path / "published"
    versions.publish(str(_product(tmp_path / "a", 5)), str(root), STORAGE, "k", keep=2, bbox=(-150, 64, -149, 65))
    (root / "latest.json").write_text(json.dumps({"version": "v00009-000000000000"}))
    before = _tree(root)
    model = _model(tmp_path / "model.json", ["s2_summer_nir", "s2_summer_red"])
    res = _cli("regenerate", "--config", str(_write(tmp_path, _config(tmp_path, stac_url, model))))
    assert res.returncode == 2
    assert "v00009-000000000000" in res.stderr and "version.json is missing" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert _tree(root) == before and not (tmp_path / "work").exists()
    with pytest.raises(PublishError, match="missing"):
        versions.latest_url(str(root), STORAGE)


def test_checkpoint_for_other_bands_is_refused_before_work(stac_url, tmp_path):
    model = _model(tmp_path / "model.json", ["s2_summer_red", "s2_summer_rededge1"])
    with pytest.raises(RegenerateError, match=r"s2_summer_rededge1.*cube bands"):
        run_regenerate(config_from_dict(_config(tmp_path, stac_url, model)))
    assert not (tmp_path / "work").exists() and not (tmp_path / "published").exists()


def test_region_without_land_and_unknown_tile_are_clear_errors(tmp_path):
    sea = {"cube": cube_section("x", bounds=[-1_500_000.0, 0.0, -1_400_000.0, 100_000.0])}
    res = _cli("plan", "--config", str(_write(tmp_path, sea)))
    assert res.returncode == 2 and "no land in the region" in res.stderr
    bad_tile = {"cube": cube_section("x"), "plan": {"tiles": ["AK050H99V07"]}}
    res = _cli("plan", "--config", str(_write(tmp_path, bad_tile)))
    assert res.returncode == 2 and "unknown tile id 'AK050H99V07'" in res.stderr
    far_tile = {"cube": cube_section("x"), "plan": {"tiles": ["AK050H10V30"]}}
    res = _cli("plan", "--config", str(_write(tmp_path, far_tile)))
    assert res.returncode == 2 and "AK050H10V30" in res.stderr and "not land tiles" in res.stderr
