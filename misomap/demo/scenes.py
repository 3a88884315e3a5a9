"""Source scenes: the acquisition schedule, and Sentinel-2 / Sentinel-1 items with their COGs,
cut from the world's 15 m surface onto UTM tiles and scene grids."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from shapely.geometry import box

from misomap.cube.grid import Grid
from misomap.demo import stac
from misomap.demo.fields import rng_for
from misomap.demo.imagery import (S2_BANDS, SCL_CIRRUS, SCL_CLOUD_HIGH, SCL_CLOUD_MED, SCL_NODATA,
                                  Surface, make_sky, s1_scene_db, s2_scene)
from misomap.demo.publish import Sink, cog_bytes
from misomap.demo.spec import SEASONS, YEARS, WorldSize
from misomap.demo.tiles import Sampler, TileSpec, average_to, reproject_geom, utm_epsg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Acquisition:
    """One overpass: its season, time, platform letter and relative orbit."""

    season: str
    when: datetime
    platform: str
    orbit: int

    @property
    def tag(self) -> str:
        return self.when.strftime("%Y%m%d")


def schedule(seed: int, size: WorldSize) -> list[Acquisition]:
    """`dates_per_season` overpasses in every season window of every year, jittered by seed."""
    rng = rng_for(seed, "schedule")
    out = []
    for year in YEARS:
        for season, (start, end) in SEASONS.items():
            d0 = date.fromisoformat(f"{year}-{start}")
            span = (date.fromisoformat(f"{year}-{end}") - d0).days
            for k in range(size.dates_per_season):
                day = d0 + timedelta(days=int((k + 0.5) * span / size.dates_per_season
                                              + rng.integers(-3, 4)))
                when = datetime(day.year, day.month, day.day, 21, int(rng.integers(0, 60)), 0)
                out.append(Acquisition(season, when, "ab"[int(rng.integers(0, 2))],
                                       int(rng.choice([29, 72, 115]))))
    return out


BASELINE_04_START = date(2022, 1, 25)
"""ESA processing baseline 04.00: from this date L2A pixels carry a +1000 DN offset."""


def processing(acq: Acquisition) -> tuple[str, bool | None]:
    """The item's `s2:processing_baseline` and `earthsearch:boa_offset_applied`, as Earth Search v1
    publishes them: 03.01 before 2022-01-25 (flag false: there is no offset), 04.00 after, where
    Element 84 removed the offset from some scenes (flag true) and not from others (alternating by
    date here, so the demo exercises both)."""
    if acq.when.date() < BASELINE_04_START:
        return "03.01", False
    return "04.00", acq.when.toordinal() % 2 == 0


def _dn(refl: np.ndarray, carries_offset: bool) -> np.ndarray:
    """Reflectance to L2A digital numbers, scale 1e-4, +1000 when the pixels carry the baseline-04.00
    offset; 0 is kept for nodata. Without the offset, DN = (that with it) - 1000 exactly."""
    dn = np.clip(np.round((refl - stac.S2_OFFSET) / stac.S2_SCALE), 1, 65535)
    return (dn if carries_offset else np.maximum(dn - 1000, 1)).astype(np.uint16)


def write_s2_items(seed: int, acq: Acquisition, surface: Surface, surface_grid: Grid,
                   tiles: list[tuple[TileSpec, Sampler, Sampler]], size: WorldSize,
                   sink: Sink) -> list[dict[str, Any]]:
    """Write one date's Sentinel-2 tiles (COGs) and return their STAC items (empty tiles skipped)."""
    sky = make_sky(seed, "s2" + acq.tag, surface_grid.shape, surface_grid.resolution)
    refl, scl = s2_scene(surface, sky, acq.when.date(), rng_for(seed, "s2-noise", acq.tag))
    res_of = {"fine": size.s2_fine_m, "coarse": size.s2_coarse_m}
    bands = [average_to(refl[b], surface_grid.resolution, res_of[cls])
             for b, (*_, cls) in enumerate(S2_BANDS)]
    baseline, applied = processing(acq)
    carries = baseline >= "04.00" and not applied
    items = []
    for tile, fine, coarse in tiles:
        samplers = {"fine": fine, "coarse": coarse}
        scl_t = coarse.values(scl, order=0)
        valid_c = coarse.inside & (scl_t != SCL_NODATA)
        if valid_c.mean() < 0.02:
            continue
        scl_t[~valid_c] = SCL_NODATA
        valid = {"coarse": valid_c, "fine": fine.inside & (fine.values(scl, order=0) != SCL_NODATA)}
        item_id = f"S2{acq.platform.upper()}_{tile.tile_id}_{acq.tag}_0_L2A"
        rel_dir = f"cogs/{stac.S2_COLLECTION}/{item_id}"
        assets = {}
        for b, (key, esa, wl, fwhm, cls) in enumerate(S2_BANDS):
            s = samplers[cls]
            dn = np.where(valid[cls], _dn(s.values(bands[b]), carries), 0).astype(np.uint16)
            sink.write_bytes(f"{rel_dir}/{key}.tif", cog_bytes(
                dn, f"EPSG:{tile.epsg}", tile.transform(s.res), 0, size.cog_blocksize,
                stac.S2_SCALE, stac.S2_OFFSET if carries else 0.0))
            assets[key] = stac.raster_asset(
                sink.url(f"{rel_dir}/{key}.tif"), f"{key} ({esa}) - {s.res:g}m",
                ["data", "reflectance"], tile.shape(s.res), tile.transform(s.res),
                {"nodata": 0, "data_type": "uint16", "bits_per_sample": 15,
                 "spatial_resolution": s.res, "scale": stac.S2_SCALE, "offset": stac.S2_OFFSET},
                {"name": esa, "common_name": "rededge" if key.startswith("rededge") else key,
                 "center_wavelength": wl, "full_width_half_max": fwhm}, gsd=s.res)
        sink.write_bytes(f"{rel_dir}/scl.tif", cog_bytes(
            scl_t.astype(np.uint8), f"EPSG:{tile.epsg}", tile.transform(coarse.res), 0,
            size.cog_blocksize, resampling="nearest"))
        assets["scl"] = stac.raster_asset(
            sink.url(f"{rel_dir}/scl.tif"), "Scene classification map (SCL)", ["data"],
            tile.shape(coarse.res), tile.transform(coarse.res),
            {"nodata": 0, "data_type": "uint8", "spatial_resolution": coarse.res})
        cloudy = np.isin(scl_t[valid_c], [SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS]).mean()
        props = {"platform": f"sentinel-2{acq.platform}", "constellation": "sentinel-2",
                 "instruments": ["msi"], "eo:cloud_cover": round(100 * float(cloudy), 3),
                 "sat:orbit_state": "descending", "sat:relative_orbit": acq.orbit,
                 "gsd": size.s2_fine_m, "s2:processing_baseline": baseline,
                 "earthsearch:boa_offset_applied": applied}
        items.append(stac.item(stac.S2_COLLECTION, item_id, acq.when, tile.footprint_lonlat(),
                               f"EPSG:{tile.epsg}", props, assets, ["eo", "proj", "raster", "sat"]))
    return items


def s1_scene_tile(grid: Grid, zone: int, res: float) -> TileSpec:
    """A scene grid in UTM `zone` covering the world plus ~1 km, on a `res`-aligned origin."""
    x0, y0, x1, y1 = reproject_geom(box(*grid.bounds).segmentize(500.0), grid.crs, utm_epsg(zone)).bounds
    side = max(x1 - x0, y1 - y0) + 2000.0
    xmin = np.floor((x0 - 1000.0) / res) * res
    ymax = np.ceil((y1 + 1000.0) / res) * res
    return TileSpec(f"{zone:02d}", zone, float(xmin), float(ymax), float(np.ceil(side / res) * res))


def s1_samplers(grid: Grid, surface_grid: Grid, res: float) -> dict[bool, Sampler]:
    """Scene grids by orbit direction: ascending passes on UTM 6, descending on UTM 5."""
    return {asc: Sampler(s1_scene_tile(grid, 6 if asc else 5, res), res, surface_grid)
            for asc in (True, False)}


def write_s1_item(seed: int, acq: Acquisition, k: int, surface: Surface, surface_grid: Grid,
                  samplers: dict[bool, Sampler], size: WorldSize, sink: Sink) -> dict[str, Any]:
    """One Sentinel-1 RTC scene (VV, VH linear gamma0 with speckle) two days after `acq`."""
    ascending = k % 2 == 0
    sampler = samplers[ascending]
    scene = sampler.tile
    when = acq.when + timedelta(days=2, hours=-5 if ascending else -17)
    tag = when.strftime("%Y%m%dT%H%M%S")
    swath = make_sky(seed, "s1" + tag, surface_grid.shape, surface_grid.resolution).valid
    valid = sampler.inside & (sampler.values(swath.astype(np.uint8), order=0) > 0)
    rng = rng_for(seed, "s1-speckle", tag)
    vv_db, vh_db = s1_scene_db(surface, when.date())
    item_id = f"S1A_IW_GRDH_1SDV_{tag}_{'ASC' if ascending else 'DSC'}_rtc"
    rel_dir = f"cogs/{stac.S1_COLLECTION}/{item_id}"
    assets = {}
    for key, db in (("vv", vv_db), ("vh", vh_db)):
        mean_db = sampler.values(average_to(db, surface_grid.resolution, size.s1_m))
        lin = 10 ** (mean_db / 10) * rng.gamma(4.0, 0.25, valid.shape)  # 4-look speckle
        data = np.where(valid, lin, stac.S1_NODATA).astype(np.float32)
        sink.write_bytes(f"{rel_dir}/{key}.tif", cog_bytes(
            data, f"EPSG:{scene.epsg}", scene.transform(size.s1_m), stac.S1_NODATA, size.cog_blocksize))
        assets[key] = stac.raster_asset(
            sink.url(f"{rel_dir}/{key}.tif"), f"{key.upper()}: vertical transmit, "
            f"{'vertical' if key == 'vv' else 'horizontal'} receive", ["data"],
            scene.shape(size.s1_m), scene.transform(size.s1_m),
            {"nodata": stac.S1_NODATA, "data_type": "float32", "spatial_resolution": size.s1_m})
    props = {"platform": "SENTINEL-1A", "constellation": "Sentinel-1", "instruments": ["c-sar"],
             "sar:instrument_mode": "IW", "sar:frequency_band": "C", "sar:polarizations": ["VV", "VH"],
             "sar:product_type": "GRD", "sat:orbit_state": "ascending" if ascending else "descending",
             "sat:relative_orbit": 94 if ascending else 131}
    footprint = box(*scene.footprint_lonlat().bounds)
    return stac.item(stac.S1_COLLECTION, item_id, when, footprint, f"EPSG:{scene.epsg}", props,
                     assets, ["proj", "raster", "sat", "sar"])
