"""The tile plan: the 50 km grid and its ids, land tiles from the shipped mask, chunks on tiles,
the cost from the configured rates, `misomap plan` and the statewide dry-run graph."""

from __future__ import annotations

import subprocess
import sys

import pytest
import shapely
import yaml
from pyproj import Transformer
from shapely.geometry import box

from tests.support.cube_fixtures import cube_section
from misomap.config import config_from_dict
from misomap.cube.grid import Grid
from misomap.jobs.regenerate import dry_run, region_plan
from misomap.plan.config import RatesConfig
from misomap.plan.plan import estimate, make_plan
from misomap.plan.tiles import PlanError, Tile, land_mask, land_tiles, parse_tile

TO_3338 = Transformer.from_crs("EPSG:4326", "EPSG:3338", always_xy=True)


def _tile_at(lon: float, lat: float) -> Tile:
    x, y = TO_3338.transform(lon, lat)
    [tile] = [t for t in land_tiles((x, y, x + 1, y + 1)) if box(*t.bounds).contains(shapely.Point(x, y))] or [None]
    return tile


def test_tile_ids_round_trip_and_bad_ids_are_refused():
    t = Tile(48, 7)
    assert t.id == "AK050H48V07" and parse_tile(t.id) == t
    x0, y0, x1, y1 = t.bounds
    assert (x1 - x0, y1 - y0) == (50_000.0, 50_000.0)
    for bad in ("AK050H48V7", "AK100H48V07", "AK050H99V07", "ak050h48v07"):
        with pytest.raises(PlanError, match="unknown tile id"):
            parse_tile(bad)


def test_land_tiles_cover_the_mask_and_skip_the_sea():
    tiles = land_tiles()
    union = shapely.union_all([box(*t.bounds) for t in tiles])
    mask = land_mask()
    assert mask.difference(union).area == pytest.approx(0.0, abs=1.0)  # every bit of land is on a tile
    assert all(mask.intersects(box(*t.bounds)) for t in tiles)        # no tile without land
    assert _tile_at(-147.72, 64.84) is not None                        # Fairbanks
    assert _tile_at(-150.0, 55.0) is None                              # Gulf of Alaska


def test_chunks_follow_tiles_and_pixels_add_up():
    # a region straddling land (Kenai coast) and sea: only chunks on land tiles are planned
    x, y = TO_3338.transform(-151.5, 60.0)
    grid = Grid.aligned("EPSG:3338", 100.0, (x - 150_000, y - 150_000, x + 150_000, y + 150_000))
    plan = make_plan(grid, 256, 100.0, 256, 21, 12)
    assert 0 < len(plan.cube_chunks) <= -(-grid.height // 256) * -(-grid.width // 256)
    assert plan.cube_pixels == sum(c.height * c.width for c in plan.cube_chunks)
    assert plan.input_bytes == plan.cube_pixels * 21 * 4 and plan.output_bytes == plan.map_pixels * 12
    sea = [t for t in grid_tiles(grid) if t not in plan.tiles]
    assert sea, "the region should include sea tiles that the plan leaves out"


def grid_tiles(grid: Grid) -> list[Tile]:
    from misomap.plan.tiles import tiles_touching

    return tiles_touching(grid.bounds)


def test_cost_scales_with_rates_and_resolution():
    cfg = config_from_dict({"cube": cube_section("x", area="alaska", bounds=None, chunk=1024)})
    p30, p10 = region_plan(cfg, resolution=30.0), region_plan(cfg, resolution=10.0)
    assert p30.tiles == p10.tiles
    assert 8.5 < p10.map_pixels / p30.map_pixels < 9.5
    base = {c.stage: c for c in estimate(p30, RatesConfig())}
    fast = {c.stage: c for c in estimate(p30, RatesConfig(miso_px_per_s_core=2 * 7_784.0))}
    assert fast["predict miso"].core_hours == pytest.approx(base["predict miso"].core_hours / 2)
    assert base["predict miso"].gpu_hours is None
    gpu = {c.stage: c for c in estimate(p30, RatesConfig(miso_px_per_s_gpu=1e6))}
    assert gpu["predict miso"].gpu_hours == pytest.approx(p30.map_pixels / 1e6 / 3600)


def test_statewide_dry_run_graph_without_reading_anything():
    cfg = config_from_dict({"stac": {"url": "http://127.0.0.1:9/unreachable"},
                            "cube": cube_section("x", area="alaska", bounds=None, chunk=2048)})
    d = dry_run(cfg, resolution=30.0)
    n_cube, n_map = len(d.plan.cube_chunks), len(d.plan.map_chunks)
    assert len(d.graph) == 2 + n_cube + n_map
    predicts = [k for k in d.graph if k.startswith("predict-")]
    assert all(len(d.graph[k]) > 1 for k in predicts)  # every map chunk waits for its cube chunks
    assert set(d.graph["publish"][1:]) == set(predicts)
    assert {dep for k in predicts for dep in d.graph[k][1:]} <= {k for k in d.graph if k.startswith("cube-")}


def test_plan_command_prints_demo_region_and_statewide(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"cube": cube_section("x")}, sort_keys=False))
    run = [sys.executable, "-c", "from misomap.cli import run_cli; run_cli()", "plan", "--config", str(path)]
    out = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "1 land tiles" in out.stdout and "cube chunks  6 of 32 px, 6,144 px" in out.stdout
    path.write_text(yaml.safe_dump({"cube": cube_section("x", chunk=1024), "map": {
        "cube": "x", "output": "y", "chunk_px": 1024}}, sort_keys=False))
    out = subprocess.run(run + ["--statewide", "--resolution", "30", "--resolution", "10"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "alaska at 30 m" in out.stdout and "alaska at 10 m" in out.stdout
    assert out.stdout.count("predict miso") == 2 and "core-h" in out.stdout
