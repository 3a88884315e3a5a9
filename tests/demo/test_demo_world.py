"""Demo world: determinism, physical sanity, valid COGs and STAC, API search, S3 output."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pystac_client
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from misomap.core.config_base import StorageConfig
from misomap.cube.grid import Grid
from misomap.demo.climate import make_climate
from misomap.demo.imagery import S2_KEYS
from misomap.demo.spec import DemoWorldError, world_size
from misomap.demo.terrain import make_terrain
from misomap.demo.truth import SOIL_ORDERS, make_truth
from misomap.demo.world import WorldManifest, generate_world
from tests.support.stac_schemas import stac_errors

CLASS_RANGES = {  # share of land per soil order, stated for every seed and size
    "Gelisols": (0.30, 0.65), "Inceptisols": (0.15, 0.50), "Entisols": (0.02, 0.25),
    "Histosols": (0.003, 0.12), "Spodosols": (0.003, 0.10), "Andisols": (0.002, 0.08),
    "Mollisols": (0.0005, 0.04),
}


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _world_in_memory(seed: int, size: str = "tiny"):
    grid = world_size(size).grid()
    terrain = make_terrain(seed, grid.shape, grid.resolution)
    climate = make_climate(seed, terrain, grid.resolution)
    truth = make_truth(seed, terrain, climate, grid.resolution, (grid.x_coords(), grid.y_coords()))
    return grid, terrain, climate, truth


def test_same_seed_gives_identical_bytes(demo_world: Path) -> None:
    before = _hashes(demo_world)
    assert len(before) > 100
    generate_world(demo_world, seed=0, size="tiny")  # the same place, so absolute hrefs match too
    assert _hashes(demo_world) == before


def test_other_seed_gives_another_world() -> None:
    a = make_terrain(0, (96, 96), 30.0).elevation
    b = make_terrain(1, (96, 96), 30.0).elevation
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, make_terrain(0, (96, 96), 30.0).elevation)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permafrost_rises_as_climate_gets_colder(seed: int) -> None:
    _, terrain, climate, truth = _world_in_memory(seed)
    land = ~terrain.water
    cold_index = -climate.jan_min_temp[land] * 95 - climate.summer_warmth[land] * 105
    pf = truth.permafrost[land]
    q = np.quantile(cold_index, [1 / 3, 2 / 3])
    warm, mid, cold = (pf[cold_index < q[0]].mean(), pf[(cold_index >= q[0]) & (cold_index < q[1])].mean(),
                       pf[cold_index >= q[1]].mean())
    assert warm < mid < cold
    assert cold - warm > 0.15


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_north_facing_slopes_hold_more_permafrost(seed: int) -> None:
    _, terrain, _, truth = _world_in_memory(seed)
    sloped = (terrain.slope > 5) & ~terrain.water
    north = sloped & ((terrain.aspect < 45) | (terrain.aspect > 315))
    south = sloped & (np.abs(terrain.aspect - 180) < 45)
    assert north.sum() > 50 and south.sum() > 50
    assert truth.permafrost[north].mean() > truth.permafrost[south].mean() + 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soil_order_frequencies_in_stated_ranges(seed: int) -> None:
    _, terrain, _, truth = _world_in_memory(seed)
    land = ~terrain.water
    for k, name in enumerate(SOIL_ORDERS):
        share = float((truth.soil_order[land] == k).mean())
        lo, hi = CLASS_RANGES[name]
        assert lo <= share <= hi, f"{name}: {share:.4f} not in [{lo}, {hi}]"
    assert np.all(truth.soil_order[terrain.water] == 255)
    assert np.all(truth.soil_order[truth.permafrost == 1] == SOIL_ORDERS.index("Gelisols"))


def test_context_matters_taliks_and_fires() -> None:
    _, terrain, _, truth = _world_in_memory(0, "tiny")
    from scipy import ndimage

    land = ~terrain.water
    d = ndimage.distance_transform_edt(~terrain.water) * 30.0
    near, far = land & (d <= 60), land & (d > 300)
    assert truth.permafrost[near].mean() < truth.permafrost[far].mean()
    burnt = land & (truth.fire > 0.5)
    assert truth.permafrost[burnt].mean() < truth.permafrost[land & (truth.fire == 0)].mean()
    assert truth.variance_shares["contextual"] > 0.2


def test_manifest_describes_the_world(demo_world: Path) -> None:
    m = WorldManifest.model_validate_json((demo_world / "world.json").read_text())
    grid = world_size("tiny").grid()
    assert m.grid == grid.to_dict() and m.crs == "EPSG:3338"
    assert Grid(m.grid["crs"], m.grid["resolution"], *m.grid["bounds"]).shape == (160, 160)
    lon0, lat0, lon1, lat1 = m.bbox_lonlat
    assert -160 < lon0 < lon1 < -140 and 64 < lat0 < lat1 < 70  # inside Alaska
    assert set(m.collections) == {"sentinel-2-l2a", "sentinel-1-rtc", "ak-terrain", "ak-climate"}
    for rel in m.paths.values():
        assert (demo_world / rel).exists(), rel
    on_disk = {str(p.relative_to(demo_world)) for p in demo_world.rglob("*") if p.is_file()}
    assert set(m.files) == on_disk - {"world.json"}
    assert (demo_world / "quicklook.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(m.years) >= 2 and set(m.seasons) == {"spring", "summer"}


def test_every_cog_is_valid_and_typed(demo_world: Path) -> None:
    tifs = sorted((demo_world / "cogs").rglob("*.tif")) + sorted((demo_world / "truth").glob("*.tif"))
    assert len(tifs) > 100
    for tif in tifs:
        valid, errors, _ = cog_validate(str(tif))
        assert valid, f"{tif}: {errors}"
    s2 = sorted((demo_world / "cogs" / "sentinel-2-l2a").iterdir())
    crss = set()
    for item_dir in s2:
        with rasterio.open(item_dir / "red.tif") as red, rasterio.open(item_dir / "swir16.tif") as sw:
            assert red.dtypes[0] == "uint16" and red.nodata == 0
            props = json.loads((demo_world / "stac" / "sentinel-2-l2a" / item_dir.name
                                / f"{item_dir.name}.json").read_text())["properties"]
            carries = (props["s2:processing_baseline"] >= "04.00"
                       and not props["earthsearch:boa_offset_applied"])
            # the file's own tags say what its pixels hold (the item's raster:bands says -0.1, as
            # Earth Search's do, docs/contracts.md §1)
            assert red.scales[0] == pytest.approx(1e-4)
            assert red.offsets[0] == pytest.approx(-0.1 if carries else 0.0)
            assert sw.res[0] == 2 * red.res[0]  # 10 m-class vs 20 m-class bands
            crss.add(red.crs.to_epsg())
    assert crss == {32605, 32606}  # tiles in two UTM zones
    with rasterio.open(next((demo_world / "cogs" / "sentinel-1-rtc").iterdir()) / "vv.tif") as vv:
        a = vv.read(1)
        assert vv.dtypes[0] == "float32" and vv.nodata == -32768 and vv.crs.to_epsg() in (32605, 32606)
        assert 0 < np.median(a[a != -32768]) < 1  # linear gamma0


def test_scl_matches_the_pixels(demo_world: Path) -> None:
    seen = set()
    for item_dir in sorted((demo_world / "cogs" / "sentinel-2-l2a").iterdir()):
        with rasterio.open(item_dir / "scl.tif") as s, rasterio.open(item_dir / "nir08.tif") as n:
            scl, nir = s.read(1), n.read(1)
        seen |= set(np.unique(scl).tolist())
        assert np.array_equal(scl == 0, nir == 0)  # nodata agrees
        refl = nir * 1e-4 - 0.1
        if (scl == 9).sum() > 20 and (scl == 4).sum() > 20:
            assert refl[scl == 9].mean() > refl[scl == 4].mean()  # thick cloud brighter than plants
    assert {0, 3, 4, 6, 8, 9, 11} <= seen


def test_stac_documents_valid_offline(demo_world: Path) -> None:
    docs = [p for p in (demo_world / "stac").rglob("*.json") if p.parent.name != "api"]
    assert len(docs) > 50
    for p in docs:
        assert stac_errors(json.loads(p.read_text())) == [], p
    item = json.loads(next((demo_world / "stac" / "sentinel-2-l2a").glob("*/*.json")).read_text())
    assert set(item["assets"]) == set(S2_KEYS) | {"scl"}
    assert item["assets"]["red"]["href"].startswith("file:///")
    item["properties"]["eo:cloud_cover"] = 140
    item["assets"]["red"]["raster:bands"][0]["data_type"] = "uint17"
    errors = stac_errors(item)
    assert any("eo:cloud_cover" in e for e in errors) and any("data_type" in e for e in errors)
    assert stac_errors({"type": "Thing"})


def test_catalog_searchable_through_stac_api(demo_stac_api: str, demo_world: Path) -> None:
    client = pystac_client.Client.open(demo_stac_api)
    assert {c.id for c in client.get_collections()} == {
        "sentinel-2-l2a", "sentinel-1-rtc", "ak-terrain", "ak-climate"}
    m = WorldManifest.model_validate_json((demo_world / "world.json").read_text())
    summer = client.search(collections=["sentinel-2-l2a"], bbox=m.bbox_lonlat,
                           datetime="2021-06-20/2021-08-25").item_collection()
    assert len(summer) > 0
    assert {it.properties["proj:code"] for it in summer} == {"EPSG:32605", "EPSG:32606"}
    for it in summer:
        assert it.datetime.month in (6, 7, 8) and set(it.assets) == set(S2_KEYS) | {"scl"}
    s1 = client.search(collections=["sentinel-1-rtc"], bbox=m.bbox_lonlat).item_collection()
    assert len(s1) == m.collections["sentinel-1-rtc"] and set(s1[0].assets) == {"vv", "vh"}
    terrain = client.search(collections=["ak-terrain"]).item_collection()
    assert set(terrain[0].assets) == {"elevation", "aspect", "slope", "max_curvature", "spi", "twi", "tpi"}


def test_pedons_follow_the_contract_and_the_bias(demo_world: Path) -> None:
    p = gpd.read_parquet(demo_world / "labels" / "pedons.parquet")
    assert list(p.columns) == ["pedon_id", "permafrost", "soil_order", "geometry"]
    assert p.crs.to_epsg() == 3338 and p["pedon_id"].is_unique
    assert str(p["permafrost"].dtype) == "Int8" and set(p["permafrost"].dropna()) <= {0, 1}
    assert set(p["soil_order"].dropna()) <= set(SOIL_ORDERS)
    only_pf = p["soil_order"].isna() & p["permafrost"].notna()
    only_so = p["permafrost"].isna() & p["soil_order"].notna()
    assert only_pf.sum() > 0 and only_so.sum() > 0
    assert not (p["permafrost"].isna() & p["soil_order"].isna()).any()
    grid = world_size("tiny").grid()
    with rasterio.open(demo_world / "truth" / "soil_order.tif") as src:
        order = src.read(1)
    with rasterio.open(demo_world / "truth" / "permafrost.tif") as src:
        assert src.crs.to_epsg() == 3338 and src.shape == grid.shape
        assert np.array_equal(src.read(1) == 255, order == 255)  # water is no-class in both
    r, c = grid.rowcol(p.geometry.x.to_numpy(), p.geometry.y.to_numpy())
    assert np.all(order[r, c] != 255)  # never on water
    counts = np.bincount(r * grid.width + c, minlength=grid.width * grid.height).reshape(grid.shape)
    density = counts.reshape(16, 10, 16, 10).sum(axis=(1, 3))
    assert density.max() > 4 * max(np.median(density), 1)  # clustered, not uniform
    zones = gpd.read_parquet(demo_world / "labels" / "permafrost_zones.parquet")
    assert set(zones["zone"]) <= {"continuous", "discontinuous", "sporadic", "isolated"}
    assert "region" in gpd.read_parquet(demo_world / "labels" / "regions.parquet").columns


def test_world_written_to_s3(s3_server, s3fs_filesystem, s3_bucket: str, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    root = f"s3://{s3_bucket}/worlds/tiny"
    m = generate_world(root, seed=3, size="tiny", storage=StorageConfig(endpoint_url=s3_server.endpoint_url))
    fs = s3fs_filesystem
    fs.invalidate_cache()
    assert json.loads(fs.cat(f"{root}/world.json"))["seed"] == m.seed == 3
    item = json.loads(fs.cat(next(iter(fs.glob(f"{root}/stac/sentinel-2-l2a/*/*.json")))))
    href = item["assets"]["nir"]["href"]
    assert href.startswith(f"{root}/cogs/sentinel-2-l2a/")
    local = tmp_path / "nir.tif"
    local.write_bytes(fs.cat(href))
    assert cog_validate(str(local))[0]
    assert fs.exists(f"{root}/labels/pedons.parquet") and fs.exists(f"{root}/truth/permafrost.tif")


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DemoWorldError, match="unknown demo world size 'huge'"):
        generate_world(tmp_path / "w", seed=0, size="huge")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DemoWorldError, match="not empty and holds no world.json"):
        generate_world(tmp_path / "busy", seed=0, size="tiny")
    assert (tmp_path / "busy" / "notes.txt").exists()
    with pytest.raises(DemoWorldError, match="use a folder or s3://"):
        generate_world("http://example.invalid/world", seed=0, size="tiny")


def test_cli_demo_world_reports_bad_size(tmp_path: Path) -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "misomap"
    out = subprocess.run([str(exe), "demo-world", "--out", str(tmp_path / "w"), "--size", "huge"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unknown demo world size" in out.stderr


@pytest.mark.slow
def test_neighbourhood_beats_pixel_on_held_out_blocks() -> None:
    from misomap.demo.context import context_score

    _, terrain, climate, truth = _world_in_memory(0)
    score = context_score(0, terrain, climate, truth)
    assert score.n_test > 1000
    assert score.gain > 0.0, score


def test_demo_world_config_section() -> None:
    from misomap.config import config_from_dict
    from misomap.core.errors import ConfigError

    cfg = config_from_dict({"demo_world": {"out": "s3://bucket/world", "seed": 7, "size": "tiny"}})
    assert (cfg.demo_world.out, cfg.demo_world.seed, cfg.demo_world.size) == ("s3://bucket/world", 7, "tiny")
    with pytest.raises(ConfigError, match="demo_world.size"):
        config_from_dict({"demo_world": {"size": "huge"}})
    with pytest.raises(ConfigError, match="demo_world.colour"):
        config_from_dict({"demo_world": {"colour": "blue"}})
