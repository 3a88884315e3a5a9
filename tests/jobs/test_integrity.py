"""Integrity on the tiny world: damage is caught where data is read (predict, training) or by
`misomap verify`, a map killed at its first write resumes, `verify` says "whole" for every good
store the project writes, and one publisher at a time holds a publish root."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import geopandas as gpd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from misomap.config import config_from_dict
from misomap.core.config_base import StorageConfig
from misomap.core.storage import Target
from misomap.cube.errors import CorruptChunkError, CubeStorageError
from misomap.cube.reader import open_cube, read_window
from misomap.jobs.build_cube import run_build_cube
from misomap.jobs.predict import run_predict
from misomap.jobs.regenerate import run_regenerate
from misomap.jobs.verify import verify
from misomap.labels.training_table import open_cube_data, sample_cube
from misomap.mapping import store as map_store
from misomap.publish import versions
from misomap.publish.lock import PublishLockError, publish_lock
from tests.support import ROOT
from tests.support.cube_fixtures import cube_section, write_source_world

STORAGE = StorageConfig()
PREDICTOR = "tests.support.fault_predictor:factory"


@pytest.fixture(autouse=True)
def _importable_test_predictor(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def stac_url(tmp_path_factory, stac_api_factory) -> str:
    return stac_api_factory(write_source_world(tmp_path_factory.mktemp("integrity-world")).stac_files)


@pytest.fixture(scope="module")
def cube(stac_url, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("integrity-cube") / "cube.zarr"
    run_build_cube(config_from_dict({"stac": {"url": stac_url}, "cube": cube_section(str(out), workers=1)}))
    return out


def _map_cfg(cube: Path, out: Path):
    return config_from_dict({"map": {"cube": str(cube), "output": str(out), "model": PREDICTOR, "chunk_px": 32,
                                     "workers": 1, "cogs": True}})


@pytest.fixture(scope="module")
def mapped(cube, tmp_path_factory, request) -> Path:
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(ROOT))
    mp.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path_factory.mktemp("integrity-map") / "map"
    run_predict(_map_cfg(cube, out))
    mp.undo()
    return out


def _copy_cube(cube: Path, to: Path) -> Path:
    shutil.copytree(cube, to)
    shutil.copytree(f"{cube}.progress", f"{to}.progress")
    shutil.copy(f"{cube}.chunks.json", f"{to}.chunks.json")
    return to


def _chunk_files(store: Path) -> list[Path]:
    return sorted(p for p in store.rglob("*") if p.is_file() and "/c/" in str(p.relative_to(store.parent)))


def test_swapped_cube_chunks_stop_predict_and_training_naming_the_chunk(cube, tmp_path):
    damaged = _copy_cube(cube, tmp_path / "cube.zarr")
    files = sorted(_chunk_files(damaged), key=lambda p: -p.stat().st_size)
    a, b = files[0], files[1]
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    key = ".".join(a.relative_to(damaged / "data" / "c").parts[1:])
    ds = open_cube(str(damaged), STORAGE)
    with pytest.raises(CorruptChunkError, match=rf"chunk {key} differs.*cube build --repair"):
        read_window(ds, ("elevation",), tuple(ds.attrs["misomap"]["grid"]["bounds"]))
    with pytest.raises(CorruptChunkError, match=key):  # training reads through the same check
        _sample_every_chunk(str(damaged))
    assert any(key in p for p in verify(str(damaged)).problems)


def _sample_every_chunk(cube: str) -> None:
    """The training table's sampling of one pedon in every cube chunk."""
    data = open_cube_data(cube, STORAGE)
    xs, ys = data["x"].values[5::32], data["y"].values[5::32]
    n = len(xs) * len(ys)
    points = gpd.GeoDataFrame({"pedon_id": [f"p{i}" for i in range(n)], "permafrost": [1] * n,
                               "soil_order": [None] * n},
                              geometry=[Point(x, y) for y in ys for x in xs], crs="EPSG:3338")
    sample_cube(data, points, 1)


def test_repair_rebuilds_only_the_damaged_chunk(stac_url, cube, tmp_path):
    damaged = _copy_cube(cube, tmp_path / "cube.zarr")
    a = next(p for p in _chunk_files(damaged) if "/data/" in str(p))
    raw = bytearray(a.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    a.write_bytes(bytes(raw))
    assert not verify(str(damaged)).whole
    result = run_build_cube(config_from_dict({"stac": {"url": stac_url},
                                              "cube": cube_section(str(damaged), workers=1)}), repair=True)
    assert result.chunks_built == 1
    assert verify(str(damaged)).whole
    assert (damaged / "data" / "c").exists() and a.read_bytes() == (cube / a.relative_to(damaged)).read_bytes()


def test_truncated_cog_and_every_file_are_covered_by_verify(mapped, tmp_path):
    out = tmp_path / "map"
    shutil.copytree(mapped, out)
    assert verify(str(out)).whole
    cog = out / "cogs" / "permafrost_probability.tif"
    cog.write_bytes(cog.read_bytes()[: cog.stat().st_size // 2])
    (out / "viewer").mkdir(exist_ok=True)
    (out / "viewer" / "extra.js").write_text("x")
    report = verify(str(out))
    assert not report.whole
    assert "corrupt file cogs/permafrost_probability.tif: sha256 differs from the file manifest" in report.problems
    assert "unexpected file viewer/extra.js: not in the file manifest" in report.problems


def test_garbage_metadata_is_a_finding_not_a_traceback(cube, mapped, tmp_path):
    c = _copy_cube(cube, tmp_path / "cube.zarr")
    (c / "zarr.json").write_bytes(b"\x00garbage{")
    report = verify(str(c))
    assert not report.whole and "unreadable metadata" in report.problems[0]
    m = tmp_path / "map"
    shutil.copytree(mapped, m)
    (m / "map.zarr" / "zarr.json").write_text("")
    report = verify(str(m))
    assert report.kind == "map" and not report.whole


def test_predict_killed_at_its_first_write_resumes(cube, mapped, tmp_path, monkeypatch):
    """The state a SIGKILL during the template write leaves (the claim, a group without attributes
    or arrays): the rerun takes it as its own and ends byte-identical to an uninterrupted run."""
    out = tmp_path / "map"
    real = map_store.write_template

    def killed(target, ds, encoding, zarr_format, consolidated, group=None):
        import zarr

        zarr.open_group(target.zarr_store(), mode="w", zarr_format=zarr_format)  # what to_zarr writes first
        raise KeyboardInterrupt  # the kill

    monkeypatch.setattr(map_store, "write_template", killed)
    with pytest.raises(KeyboardInterrupt):
        run_predict(_map_cfg(cube, out))
    monkeypatch.setattr(map_store, "write_template", real)
    run_predict(_map_cfg(cube, out))
    assert verify(str(out)).whole
    ref, got = map_store.product_files(Target(str(mapped))), map_store.product_files(Target(str(out)))
    differs = sorted(k for k in ref if ref[k] != got.get(k) and not k.startswith(("stac/", "viewer/")))
    assert set(ref) == set(got) and not differs, differs


def test_verify_says_whole_for_regenerate_stores_and_published_versions(stac_url, tmp_path):
    model = tmp_path / "model.json"
    model.write_text(json.dumps({"bands": ["s2_summer_nir", "s2_summer_red"]}))
    cfg = {"name": "integrity", "workdir": str(tmp_path / "work"), "stac": {"url": stac_url},
           "cube": cube_section(str(tmp_path / "ignored.zarr"), workers=1),
           "map": {"cube": "ignored-cube", "output": "ignored-output", "model": "tests.support.regen_predictor:factory",
                   "model_path": str(model), "chunk_px": 32, "workers": 1},
           "publish": {"root": str(tmp_path / "published"), "keep": 1}}
    summary = run_regenerate(config_from_dict(cfg))
    root = tmp_path / "published"
    for path in (root, root / "versions" / summary.version, tmp_path / "work" / "regen" / "map",
                 tmp_path / "work" / "regen" / "cube.zarr"):
        report = verify(str(path))
        assert report.whole, (path, report.problems)
    cog = next((root / "versions" / summary.version / "cogs").glob("*.tif"))
    cog.write_bytes(cog.read_bytes()[:100])
    report = verify(str(root))
    assert not report.whole and any("cogs/" in p for p in report.problems)


def test_local_publish_lock_one_holder_the_other_waits_or_refuses(tmp_path):
    root = str(tmp_path / "pub")
    order: list[str] = []
    with publish_lock(root, STORAGE):
        with pytest.raises(PublishLockError, match="another run is publishing"), \
                publish_lock(root, STORAGE, wait_s=0.3):
            pass

        def second() -> None:
            with publish_lock(root, STORAGE, wait_s=30):
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(1.5)
        order.append("first done")
    t.join()
    assert order == ["first done", "second"]
    versions.check_owned(root, STORAGE)  # the lock file is part of the root's layout


def test_s3_publish_lease_is_exclusive_and_expires(s3_server, s3_bucket, monkeypatch):
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    storage = StorageConfig(endpoint_url=s3_server.endpoint_url)
    root = f"s3://{s3_bucket}/pub"
    with publish_lock(root, storage) as lease:
        lease.check()
        with pytest.raises(PublishLockError, match="owner"), publish_lock(root, storage, wait_s=0.5):
            pass
    with publish_lock(root, storage, ttl_s=0.2):  # a holder killed without releasing: expires
        time.sleep(0.5)
        with publish_lock(root, storage, wait_s=5) as taken:
            taken.check()


FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FAST
@given(which=st.sampled_from(["cube", "map"]), index=st.integers(0, 10_000), offset=st.integers(0, 10**6),
       flip=st.integers(1, 255))
def test_any_single_byte_of_any_chunk_is_caught(cube, mapped, which, index, offset, flip):
    """Corrupting one byte of one chunk file of the cube or the map: the cube reader (predict,
    training) refuses it or `verify` reports it."""
    with tempfile.TemporaryDirectory() as tmp:
        if which == "cube":
            store = _copy_cube(cube, Path(tmp) / "cube.zarr")
        else:
            store = Path(tmp) / "map"
            shutil.copytree(mapped, store)
        files = _chunk_files(store)
        target = files[index % len(files)]
        raw = bytearray(target.read_bytes())
        raw[offset % len(raw)] ^= flip
        target.write_bytes(bytes(raw))
        assert not verify(str(store)).whole, target
        if which == "cube":
            with pytest.raises((CorruptChunkError, CubeStorageError)):
                ds = open_cube(str(store), STORAGE)
                read_window(ds, tuple(ds["band"].values.tolist()), tuple(ds.attrs["misomap"]["grid"]["bounds"]))


@pytest.mark.slow  # two regenerations on 2 shared cores, ~1.5 min
def test_two_regenerations_on_one_publish_root_publish_once(stac_url, tmp_path):
    """Two runs (own workdirs) on one root with keep=1: one publishes, the other waits for the lock
    and finds the same content published; exactly one whole version remains."""
    import subprocess
    import sys

    import yaml

    model = tmp_path / "model.json"
    model.write_text(json.dumps({"bands": ["s2_summer_nir", "s2_summer_red"]}))
    procs = []
    for i in range(2):
        cfg = {"name": "race", "workdir": str(tmp_path / f"work{i}"), "stac": {"url": stac_url},
               "cube": cube_section(str(tmp_path / "ignored.zarr"), workers=1),
               "map": {"cube": "ignored-cube", "output": "ignored-output",
                       "model": "tests.support.regen_predictor:factory", "model_path": str(model), "chunk_px": 32,
                       "workers": 1},
               "publish": {"root": str(tmp_path / "published"), "keep": 1}}
        (tmp_path / f"run{i}.yaml").write_text(yaml.safe_dump(cfg))
        procs.append(subprocess.Popen([sys.executable, "-c", "from misomap.cli import run_cli; run_cli()",
                                       "regenerate", "-c", str(tmp_path / f"run{i}.yaml")],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sorted("(new)" in out for out, _ in outs) == [False, True], outs
    kept = versions.list_versions(str(tmp_path / "published"), STORAGE)
    assert len(kept) == 1 and verify(str(tmp_path / "published")).whole
