"""`misomap init`: what it writes passes config-check and plan; bad input is one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from misomap.config import load_config
from misomap.jobs.regenerate import plan_report
from misomap.plan.template import Machine, size_for
from tests.support.walk_catalog import published_catalog
from tests.test_bad_inputs import run_in_process

FAIRBANKS = "-148.2,64.7,-147.4,65.0"


def _init(tmp_path: Path, capsys, *extra: str) -> tuple[int, str, Path]:
    out = tmp_path / "run.yaml"
    code, text = run_in_process(["init", "--area", FAIRBANKS, "--out", str(out), *extra], capsys)
    return code, text, out


@pytest.mark.parametrize("catalog", ["earth-search", "planetary-computer"])
def test_init_writes_a_valid_commented_config(tmp_path, capsys, catalog):
    code, text, out = _init(tmp_path, capsys, "--catalog", catalog, "--years", "2020-2023")
    assert code == 0, text
    body = out.read_text()
    assert body.count("#") > 20  # explained, not just values
    cfg = load_config(out)  # what config-check does
    cube = cfg.cube
    assert cube is not None and cube.crs == "EPSG:3338" and cube.resolution == 10
    assert cube.datetime == "2020-01-01/2023-12-31" and cube.seasons["summer"].start == "06-15"
    by = {s.collection: s for s in cube.sources}
    s2 = by["sentinel-2-l2a"]
    assert s2.kind == "optical" and s2.mask_classes == (0, 1, 3, 8, 9, 10, 11)
    assert by["cop-dem-glo-30"].bands == {"elevation": "data"}
    if catalog == "earth-search":
        assert cfg.stac.url == "https://earth-search.aws.element84.com/v1"
        assert s2.scaling == "earth-search-v1" and s2.mask_asset == "scl" and s2.bands["red"] == "red"
        assert "sentinel-1-rtc" not in by and cube.sign is None
    else:
        assert cfg.stac.url == "https://planetarycomputer.microsoft.com/api/stac/v1"
        assert s2.scaling == "planetary-computer-s2" and s2.mask_asset == "SCL" and s2.bands["red"] == "B04"
        assert by["sentinel-1-rtc"].kind == "radar" and cube.sign == "planetary_computer:sign"
    assert cfg.labels.pedons and cfg.labels.pedons.endswith("labels/pedons.parquet")
    assert cfg.map is not None and cfg.map.model == "rf"
    assert cfg.miso is not None and cfg.miso.covariates is not None
    bands = cube.band_names()  # every band MISO reads is one the cube will have
    assert set(cfg.miso.imagery.bands + cfg.miso.covariates.bands) <= set(bands)
    assert ("s1_summer_vv_db" in cfg.miso.imagery.bands) == (catalog == "planetary-computer")
    [(_name, plan)] = plan_report(cfg, False, [])
    assert {t.id for t in plan.tiles} == {"AK050H51V14", "AK050H51V15", "AK050H52V14", "AK050H52V15"}
    assert plan.grid.bounds == cube.bounds
    code, text = run_in_process(["config-check", "-c", str(out)], capsys)
    assert code == 0 and '"crs": "EPSG:3338"' in text


def test_init_s3_workdir_and_outside_alaska(tmp_path, capsys):
    out = tmp_path / "run.yaml"
    code, text = run_in_process(["init", "--area", "10,50,10.5,50.5", "--catalog", "earth-search", "--resolution",
                                 "30", "--workdir", "s3://bucket/runs/x", "--out", str(out)], capsys)
    assert code == 0, text
    cfg = load_config(out)
    assert cfg.cube is not None and cfg.cube.crs == "EPSG:32632" and cfg.cube.out == "s3://bucket/runs/x/cube.zarr"
    assert cfg.storage.region == "us-west-2"
    assert "Outside Alaska" in out.read_text()


def test_sizing_follows_the_machine():
    small = size_for(Machine(cores=2, memory=4 * 2**30), years=6)
    big = size_for(Machine(cores=32, memory=256 * 2**30), years=6)
    assert small.chunk == 512 and big.chunk == 1024  # 1024 px would need 3.5 GiB per worker
    assert 1 <= small.workers <= 2 and 1 < big.workers <= 32
    assert small.workers * small.worker_bytes <= 2 * 2**30  # half the memory at most
    assert big.workers * big.worker_bytes <= 128 * 2**30


@pytest.mark.parametrize("args, culprit", [
    (["--area", "-147.4,64.7,-148.2,65.0"], "west -147.4 is not west of east -148.2"),
    (["--area", "64.7,-148.2,65.0,-147.4"], "looks like lat,lon"),
    (["--area", "270000,1640000,320000,1690000"], "not lon/lat degrees"),
    (["--area", "172.5,51.5,-178,53"], "crosses the antimeridian"),
    (["--area", FAIRBANKS, "--years", "2012-2014"], "Sentinel-2 summers run from 2015"),
    (["--area", FAIRBANKS, "--years", "2024-2019"], "2024 is after 2019"),
    (["--area", FAIRBANKS, "--resolution", "20"], "--resolution 20"),
    (["--area", FAIRBANKS, "--catalog", "usgs"], "--catalog 'usgs'"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, culprit):
    out = tmp_path / "run.yaml"
    full = ["init", "--catalog", "earth-search", "--out", str(out), *args]
    code, text = run_in_process(full, capsys)
    errors = [ln for ln in text.splitlines() if "ERROR" in ln]
    assert code == 2 and len(errors) == 1 and culprit in errors[0], text
    assert "Traceback" not in text and not out.exists()


def test_existing_output_refused(tmp_path, capsys):
    out = tmp_path / "run.yaml"
    out.write_text("mine: true\n")
    code, text = run_in_process(["init", "--area", FAIRBANKS, "--catalog", "earth-search", "--out", str(out)], capsys)
    assert code == 2 and "exists" in text and out.read_text() == "mine: true\n"


def test_check_names_the_collection_and_dates_searched(tmp_path, capsys, stac_api_factory):
    """The published items lie elsewhere (T06VVN is south of Fairbanks): the search finds none."""
    url = stac_api_factory(published_catalog(tmp_path / "catalog"))
    code, text, out = _init(tmp_path, capsys, "--catalog", "planetary-computer", "--years", "2019",
                            "--stac-url", url, "--check")
    errors = [ln for ln in text.splitlines() if "ERROR" in ln]
    assert code == 2 and len(errors) == 1, text
    assert "no items of collection 'sentinel-2-l2a'" in errors[0] and "'2019-01-01/2019-12-31'" in errors[0]
    assert not out.exists()
    # without --check, init stays offline and the same search happens at `cube build`
    code, text, out = _init(tmp_path, capsys, "--catalog", "planetary-computer", "--stac-url", url)
    assert code == 0 and "sign" not in yaml.safe_load(out.read_text())["cube"]
