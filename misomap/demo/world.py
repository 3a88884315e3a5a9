"""Generate a whole demo world (terrain → climate → truth → imagery → pedons) and publish it as
COGs, a STAC catalog, GeoParquet labels, truth rasters, a quicklook and a world.json manifest."""

from __future__ import annotations

import io
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
from shapely.geometry import box
from tqdm import tqdm

from misomap.core.config_base import StorageConfig, StrictModel
from misomap.cube.grid import Grid
from misomap.demo import stac
from misomap.demo.climate import Climate, make_climate
from misomap.demo.fields import rng_for
from misomap.demo.imagery import Sky, Surface, make_sky, make_surface, s2_scene
from misomap.demo.pedons import sample_pedons
from misomap.demo.polygons import class_polygons
from misomap.demo.publish import Sink, cog_bytes
from misomap.demo.quicklook import quicklook_png
from misomap.demo.scenes import Acquisition, s1_samplers, schedule, write_s1_item, write_s2_items
from misomap.demo.spec import SEASONS, YEARS, world_size
from misomap.demo.terrain import Terrain, make_terrain
from misomap.demo.tiles import Sampler, layout_tiles, reproject_geom
from misomap.demo.truth import NODATA_CLASS, REGIONS, SOIL_ORDERS, ZONES, Truth, make_truth

log = logging.getLogger(__name__)

COLLECTIONS = (stac.S2_COLLECTION, stac.S1_COLLECTION, stac.TERRAIN_COLLECTION,
               stac.CLIMATE_COLLECTION)


GENERATOR = 2
"""Version of what the generator writes; bumped when a world made before would differ (2: Sentinel-2
items before and after processing baseline 04.00, with Earth Search's offset flag)."""


class WorldManifest(StrictModel):
    """What world.json says: how the world was made, where everything is, and its class balance."""

    generator: int = GENERATOR
    seed: int
    size: str
    crs: str
    bbox: list[float]
    bbox_lonlat: list[float]
    grid: dict[str, Any]
    cube_resolution_m: float
    source_resolution_m: dict[str, float]
    years: list[int]
    seasons: dict[str, list[str]]
    collections: dict[str, int]
    """Items per collection."""
    paths: dict[str, str]
    """Relative paths of the catalog, API files, labels, truth and quicklook."""
    truth_classes: dict[str, list[str]]
    class_balance: dict[str, Any]
    truth_variance_shares: dict[str, float]
    notes: list[str]
    files: list[str]
    """Every file of the world except world.json, relative to its root."""


def _covariate_item(coll: str, layers: dict[str, np.ndarray], grid: Grid, sink: Sink,
                    when: datetime, period: tuple[str, str], blocksize: int) -> dict[str, Any]:
    """One item holding a static covariate set as float32 COGs on the suggested grid."""
    item_id = f"{coll}-demo"
    assets = {}
    for key, arr in layers.items():
        rel = f"cogs/{coll}/{item_id}/{key}.tif"
        sink.write_bytes(rel, cog_bytes(arr.astype(np.float32), grid.crs, grid.transform,
                                        float("nan"), blocksize))
        assets[key] = stac.raster_asset(sink.url(rel), key, ["data"], grid.shape, grid.transform,
                                        {"nodata": "nan", "data_type": "float32",
                                         "spatial_resolution": grid.resolution})
    footprint = reproject_geom(box(*grid.bounds).segmentize(grid.resolution * 64), grid.crs, 4326)
    return stac.item(coll, item_id, when, footprint, grid.crs, {}, assets, ["proj", "raster"],
                     {"start_datetime": period[0], "end_datetime": period[1]})


def _write_truth(truth: Truth, water: np.ndarray, grid: Grid, sink: Sink,
                 blocksize: int) -> dict[str, str]:
    """Truth rasters on the suggested grid (255 = water / no class), for evaluation only."""
    permafrost = np.where(water, 255, truth.permafrost).astype(np.uint8)
    layers = {"permafrost": (permafrost, 255), "soil_order": (truth.soil_order, NODATA_CLASS),
              "permafrost_zone": (truth.zone, 255), "region": (truth.region, 255),
              "ground_index": (truth.ground_index, None)}
    paths = {}
    for name, (arr, nodata) in layers.items():
        rel = f"truth/{name}.tif"
        sink.write_bytes(rel, cog_bytes(arr, grid.crs, grid.transform, nodata, blocksize,
                                        resampling="nearest" if arr.dtype == np.uint8 else "average"))
        paths[f"truth_{name}"] = rel
    return paths


def _parquet(gdf: gpd.GeoDataFrame) -> bytes:
    buf = io.BytesIO()
    gdf.to_parquet(buf, index=False, compression="zstd")
    return buf.getvalue()


def _class_balance(truth: Truth, terrain: Terrain) -> dict[str, Any]:
    land = ~terrain.water
    h = land.shape[0]
    bands = [slice(i * h // 3, (i + 1) * h // 3) for i in range(3)]
    return {
        "land_fraction": round(float(land.mean()), 4),
        "permafrost_fraction": round(float(truth.permafrost[land].mean()), 4),
        "permafrost_fraction_north_middle_south": [
            round(float(truth.permafrost[b][land[b]].mean()), 4) for b in bands],
        "soil_order": {o: round(float((truth.soil_order[land] == i).mean()), 4)
                       for i, o in enumerate(SOIL_ORDERS)},
    }


def _summer_rgbs(seed: int, surface: Surface, surface_grid: Grid,
                 acquisitions: list[Acquisition]) -> tuple[np.ndarray, np.ndarray, str]:
    """True colour of the clear-sky summer surface, and of the first summer scene as published
    (clouds, shadows, swath edge in black)."""
    acq = next(a for a in acquisitions if a.season == "summer")
    sky = make_sky(seed, "s2" + acq.tag, surface_grid.shape, surface_grid.resolution)
    clear = Sky(np.zeros_like(sky.cloud), np.zeros_like(sky.cirrus), np.zeros_like(sky.shadow),
                np.ones_like(sky.valid))
    noise = rng_for(seed, "s2-noise", acq.tag)
    surface_rgb = np.moveaxis(s2_scene(surface, clear, acq.when.date(), noise)[0][[2, 1, 0]], 0, -1)
    noise = rng_for(seed, "s2-noise", acq.tag)
    scene = np.moveaxis(s2_scene(surface, sky, acq.when.date(), noise)[0][[2, 1, 0]], 0, -1)
    scene[~sky.valid] = 0.0
    return surface_rgb, scene, acq.when.strftime("%Y-%m-%d")


def rustac_serve_files(world_root: str | Path) -> list[str]:
    """The collection and item files to hand to `rustac serve` for a local world."""
    api = Path(world_root) / "stac" / "api"
    return [str(api / f"{c}.{kind}.json") for c in COLLECTIONS for kind in ("collection", "items")]


def generate_world(out: str | Path, seed: int = 0, size: str = "demo",
                   storage: StorageConfig | None = None) -> WorldManifest:
    """Generate the world for (seed, size) and write it under `out` (folder or s3:// prefix).

    Same seed and size give identical bytes in every file written to the same place.
    """
    t0 = time.perf_counter()
    spec = world_size(size)
    grid = spec.grid()
    sink = Sink(str(out), storage)
    sink.prepare()
    res = grid.resolution
    log.info("demo world %s (seed %d): %d×%d px at %g m, EPSG:3338 bounds %s",
             size, seed, grid.width, grid.height, res, grid.bounds)

    terrain = make_terrain(seed, grid.shape, res)
    climate: Climate = make_climate(seed, terrain, res)
    truth = make_truth(seed, terrain, climate, res, (grid.x_coords(), grid.y_coords()))
    surface = make_surface(seed, terrain, truth)
    surface_grid = Grid(grid.crs, spec.base_m, *grid.bounds)
    log.info("terrain, climate, truth and surface ready in %.1f s", time.perf_counter() - t0)

    tiles = [(t, Sampler(t, spec.s2_fine_m, surface_grid), Sampler(t, spec.s2_coarse_m, surface_grid))
             for t in layout_tiles(grid, spec.tile_km, spec.overlap_km, spec.s2_coarse_m)]
    s1_grids = s1_samplers(grid, surface_grid, spec.s1_m)
    acquisitions = schedule(seed, spec)
    items: dict[str, list[dict[str, Any]]] = {c: [] for c in COLLECTIONS}
    for k, acq in enumerate(tqdm(acquisitions, desc="scenes", unit="date", leave=False)):
        items[stac.S2_COLLECTION] += write_s2_items(seed, acq, surface, surface_grid, tiles, spec, sink)
        items[stac.S1_COLLECTION].append(
            write_s1_item(seed, acq, k, surface, surface_grid, s1_grids, spec, sink))
    log.info("%d Sentinel-2 and %d Sentinel-1 items over %d tiles written in %.1f s",
             len(items[stac.S2_COLLECTION]), len(items[stac.S1_COLLECTION]), len(tiles),
             time.perf_counter() - t0)

    items[stac.TERRAIN_COLLECTION].append(_covariate_item(
        stac.TERRAIN_COLLECTION, terrain.covariates(), grid, sink, datetime(2012, 8, 1),
        ("2010-06-01T00:00:00Z", "2012-09-30T00:00:00Z"), spec.cog_blocksize))
    items[stac.CLIMATE_COLLECTION].append(_covariate_item(
        stac.CLIMATE_COLLECTION, climate.covariates(), grid, sink, datetime(2005, 12, 31),
        ("1991-01-01T00:00:00Z", "2020-12-31T23:59:59Z"), spec.cog_blocksize))
    paths = _write_truth(truth, terrain.water, grid, sink, spec.cog_blocksize)

    pedons = sample_pedons(seed, grid, terrain, truth, spec.n_pedons)
    labels = {"pedons": pedons,
              "regions": class_polygons(truth.region, REGIONS, "region", grid),
              "permafrost_zones": class_polygons(truth.zone, ZONES, "zone", grid)}
    for name, gdf in labels.items():
        sink.write_bytes(f"labels/{name}.parquet", _parquet(gdf))
        paths[name] = f"labels/{name}.parquet"

    summaries = {
        stac.S2_COLLECTION: {"platform": ["sentinel-2a", "sentinel-2b"], "constellation": ["sentinel-2"],
                             "gsd": [spec.s2_fine_m, spec.s2_coarse_m]},
        stac.S1_COLLECTION: {"platform": ["SENTINEL-1A"], "sar:polarizations": [["VV", "VH"]]},
        stac.TERRAIN_COLLECTION: {"gsd": [res]}, stac.CLIMATE_COLLECTION: {"gsd": [res]},
    }
    for coll in COLLECTIONS:
        coll_doc = stac.collection(coll, items[coll], summaries[coll])
        sink.write_json(f"stac/{coll}/collection.json", coll_doc)
        for it in items[coll]:
            sink.write_json(f"stac/{coll}/{it['id']}/{it['id']}.json", it)
        sink.write_json(f"stac/api/{coll}.collection.json", stac.api_collection(coll_doc))
        sink.write_json(f"stac/api/{coll}.items.json", stac.api_items(items[coll]))
    sink.write_json("stac/catalog.json", stac.catalog(list(COLLECTIONS)))
    paths["catalog"] = "stac/catalog.json"
    paths["stac_api"] = "stac/api"
    paths["quicklook"] = "quicklook.png"

    balance = _class_balance(truth, terrain)
    n_pf = int(pedons["permafrost"].notna().sum())
    n_so = int(pedons["soil_order"].notna().sum())
    balance["pedons"] = {"n": len(pedons), "with_permafrost": n_pf, "with_soil_order": n_so}
    sink.write_bytes("quicklook.png", quicklook_png(
        grid, terrain, climate, truth, _summer_rgbs(seed, surface, surface_grid, acquisitions),
        pedons, f"misomap demo world '{size}' seed {seed}: {grid.width}×{grid.height} px at "
        f"{res:g} m, permafrost {balance['permafrost_fraction']:.0%} of land"))

    ll = reproject_geom(box(*grid.bounds).segmentize(res * 64), grid.crs, 4326).bounds
    manifest = WorldManifest(
        seed=seed, size=size, crs=grid.crs, bbox=list(grid.bounds),
        bbox_lonlat=[round(v, 6) for v in ll], grid=grid.to_dict(), cube_resolution_m=res,
        source_resolution_m={"s2_10m_class": spec.s2_fine_m, "s2_20m_class": spec.s2_coarse_m,
                             "s1": spec.s1_m, "terrain": res, "climate": res},
        years=list(YEARS), seasons={k: list(v) for k, v in SEASONS.items()},
        collections={c: len(v) for c, v in items.items()}, paths=paths,
        truth_classes={"soil_order": list(SOIL_ORDERS), "permafrost_zone": list(ZONES),
                       "region": list(REGIONS)},
        class_balance=balance, truth_variance_shares=truth.variance_shares,
        notes=["Climate gradient compressed: the world spans the climate of ~68.3°N to 65.8°N.",
               "Source pixel sizes scaled: S2 10 m-class bands at 20 m, 20 m-class at 40 m, S1 at 20 m.",
               "Ice-wedge polygons drawn at ~75 m (real: 10-30 m) so a 30 m cube sees them.",
               "Truth rasters are for evaluation only; the pipeline reads STAC and labels/."],
        files=sorted(sink.written),
    )
    sink.flush()
    sink.write_json("world.json", json.loads(manifest.model_dump_json()))  # last: marks it complete
    sink.flush()
    log.info("demo world written to %s in %.1f s: %d files", sink.root_url,
             time.perf_counter() - t0, len(sink.written))
    return manifest
