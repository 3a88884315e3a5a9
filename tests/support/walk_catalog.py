"""A Planetary Computer-layout catalog over a small Alaska area, for the own-area walk.

Items are the real item JSON of tests/data/catalogs (keys, proj/raster metadata, scaling
conventions as published), with assets pointed at local COGs written on each asset's own declared
grid (tests/cube/test_catalogs.py `serve`). The Sentinel-2 item (T06VVN, 2019-06-29, baseline 02.12)
lies over the area as published; the Sentinel-1 RTC and Copernicus DEM items are moved onto it (their
footprint, proj:epsg/transform and, for S1, the date: the only published copies are elsewhere).

The pixels carry a pattern the walk's maps must find: elevation rises to the east (permafrost there in
the pedon fixtures), S2 reflectance rises to the north (Spodosols north, Inceptisols south).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
from pyproj import Transformer

from misomap.demo.stac import api_items
from tests.cube.test_catalogs import load, serve

AREA = (-147.9, 60.8, -147.8, 60.85)
"""lon/lat of the walk area (inside the S2 item's footprint)."""
WEST, EAST = -147.9, -147.8
SOUTH, NORTH = 60.8, 60.85
MARGIN_DEG = 0.03


def _lonlat(epsg: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True).transform(x, y)


def reflectance(k: int, lat: np.ndarray) -> np.ndarray:
    """Band k's reflectance: 0.05 + 0.03 k, plus up to 0.1 to the north of the area."""
    return 0.05 + 0.03 * k + 0.1 * np.clip((lat - SOUTH) / (NORTH - SOUTH), 0, 1)


def elevation(lon: np.ndarray) -> np.ndarray:
    """Metres: 100 at the west edge of the area, 600 at the east."""
    return 100.0 + 500.0 * np.clip((lon - WEST) / (EAST - WEST), 0, 1)


def _window(epsg: int, res: float, origin: tuple[float, float]) -> tuple[int, int, int]:
    """(row0, col0, n): the finest-grid window of a grid at `origin` (x0, y0) covering the area."""
    tr = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    x0, y0, x1, y1 = tr.transform_bounds(WEST - MARGIN_DEG, SOUTH - MARGIN_DEG, EAST + MARGIN_DEG,
                                         NORTH + MARGIN_DEG, densify_pts=21)
    col0, row0 = math.floor((x0 - origin[0]) / res), math.floor((origin[1] - y1) / res)
    n = math.ceil(max(x1 - x0, y1 - y0) / res)
    return row0 - row0 % 2, col0 - col0 % 2, n + n % 2


def _footprint(item: dict, epsg: int, key: str) -> None:
    """bbox/geometry of the item = the lon/lat bounds of its served asset."""
    fields = {**item["properties"], **item["assets"][key]}
    t, (h, w) = fields["proj:transform"], fields["proj:shape"]
    xs, ys = [t[2], t[2] + w * t[0]], [t[5], t[5] + h * t[4]]
    tr = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    west, south, east, north = tr.transform_bounds(min(xs), min(ys), max(xs), max(ys), densify_pts=21)
    item["bbox"] = [west, south, east, north]
    item["geometry"] = {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                            [west, north], [west, south]]]}


def s2_item(tmp: Path) -> dict:
    doc = load("sentinel-2-l2a-pc-baseline-02.12.json")  # DN = 10000 ρ (baseline < 04.00)
    keys = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"]
    row0, col0, n = _window(32606, 10.0, (399960.0, 6800040.0))

    def band(k: int):
        return lambda x, y: np.round(reflectance(k, _lonlat(32606, x, y)[1]) * 1e4)
    assets = {key: ("uint16", 0, band(k)) for k, key in enumerate(keys)}
    assets["SCL"] = ("uint8", 0, lambda x, y: np.full(x.shape, 4))  # vegetation: nothing masked
    return serve(doc, tmp, assets, row0, col0, n).to_dict(transform_hrefs=False)


def s1_item(tmp: Path) -> dict:
    doc = copy.deepcopy(load("sentinel-1-rtc-pc.json"))
    p = doc["properties"]
    p.pop("proj:bbox", None)
    p["proj:epsg"] = 32606
    p["datetime"] = "2019-07-10T04:59:10.436706Z"
    p["start_datetime"], p["end_datetime"] = "2019-07-10T04:59:04.220006Z", "2019-07-10T04:59:16.653405Z"
    row0, col0, n = _window(32606, 10.0, (399960.0, 6800040.0))
    p["proj:transform"] = [10.0, 0.0, 399960.0, 0.0, -10.0, 6800040.0]

    def vv(x, y):
        return 10 ** ((-14.0 + 4.0 * (elevation(_lonlat(32606, x, y)[0]) - 100) / 500) / 10)
    item = serve(doc, tmp, {"vv": ("float32", None, vv), "vh": ("float32", None, lambda x, y: vv(x, y) / 6)},
                 row0, col0, n).to_dict(transform_hrefs=False)
    _footprint(item, 32606, "vv")
    return item


def dem_item(tmp: Path) -> dict:
    doc = copy.deepcopy(load("cop-dem-glo-30-pc.json"))
    doc["id"] = "Copernicus_DSM_COG_10_N60_00_W148_00_DEM"
    # GLO-30 between 60° and 70° N: 1 arcsec in latitude, 2 in longitude
    origin = (-148.0, 61.0)
    doc["properties"]["proj:transform"] = [1 / 1800, 0.0, origin[0], 0.0, -1 / 3600, origin[1]]
    for a in doc["assets"].values():
        a.pop("proj:transform", None)
        a.pop("proj:shape", None)
    col0 = math.floor((WEST - MARGIN_DEG - origin[0]) * 1800)
    row0 = math.floor((origin[1] - NORTH - MARGIN_DEG) * 3600)
    n = math.ceil((EAST - WEST + 2 * MARGIN_DEG) * 1800)
    n = max(n, math.ceil((NORTH - SOUTH + 2 * MARGIN_DEG) * 3600))
    item = serve(doc, tmp, {"data": ("float32", -32767.0, lambda lon, lat: elevation(lon))}, row0, col0, n).to_dict(transform_hrefs=False)
    _footprint(item, 4326, "data")
    return item


def collection_doc(coll_id: str, items: list[dict]) -> dict:
    xs = [v for it in items for v in it["bbox"][0::2]]
    ys = [v for it in items for v in it["bbox"][1::2]]
    return {"type": "Collection", "stac_version": "1.0.0", "id": coll_id, "description": f"{coll_id} (test copy)",
            "license": "proprietary", "links": [],
            "extent": {"spatial": {"bbox": [[min(xs), min(ys), max(xs), max(ys)]]},
                       "temporal": {"interval": [[None, None]]}}}


def write_catalog(tmp: Path, items: dict[str, list[dict]]) -> list[str]:
    """Collection + FeatureCollection files for `rustac serve`; their paths."""
    files = []
    tmp.mkdir(parents=True, exist_ok=True)
    for coll, its in items.items():
        for it in its:
            it["collection"] = coll
            it["links"] = []
        c, f = tmp / f"{coll}.collection.json", tmp / f"{coll}.items.json"
        c.write_text(json.dumps(collection_doc(coll, its)))
        f.write_text(json.dumps(api_items(its)))
        files += [str(c), str(f)]
    return files


def walk_catalog(tmp: Path) -> list[str]:
    """The three collections the planetary-computer init configures, served from local COGs."""
    cogs = tmp / "cogs"
    return write_catalog(tmp, {"sentinel-2-l2a": [s2_item(cogs)], "sentinel-1-rtc": [s1_item(cogs)],
                               "cop-dem-glo-30": [dem_item(cogs)]})


def published_catalog(tmp: Path) -> list[str]:
    """The fixture items exactly as published (asset hrefs remote, never read): for searches only."""
    return write_catalog(tmp, {"sentinel-2-l2a": [load("sentinel-2-l2a-pc-baseline-02.12.json")],
                               "sentinel-1-rtc": [load("sentinel-1-rtc-pc.json")],
                               "cop-dem-glo-30": [load("cop-dem-glo-30-pc.json")]})
