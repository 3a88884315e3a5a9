"""A tiny source world for cube tests: real COGs in their own CRSs (two UTM zones, EPSG:3338) with
STAC items shaped like Earth Search / Planetary Computer, and the truth they were drawn from.

Layout on the output grid (10 m, 96 x 64 px, chunks of 32): Sentinel-2 tile A (EPSG:32605) covers
the west, tile B (EPSG:32606) the east, both overlap in chunk column 1; S1 and the static
covariates cover columns 0-1 (up to COVER_X); column 2 has no data at all (the all-nodata chunks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

RES = 10.0
WIDTH, HEIGHT, CHUNK = 96, 64, 32
X0, Y1 = 200_000.0, 1_640_000.0          # EPSG:3338 grid origin (top-left), multiples of RES
COVER_X = 580.0                           # data covers x0 .. x0 + COVER_X (< 640: column 2 stays empty)
S2_BANDS = {"blue": 10, "red": 10, "nir": 10, "swir16": 20}
SCL_CLOUD, SCL_SHADOW, SCL_SNOW, SCL_VEG = 9, 3, 11, 4


def bounds() -> tuple[float, float, float, float]:
    return (X0, Y1 - HEIGHT * RES, X0 + WIDTH * RES, Y1)


def reflectance(band: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True surface reflectance of a band at EPSG:3338 coordinates (smooth, band-specific)."""
    k = list(S2_BANDS).index(band)
    return 0.08 + 0.06 * k + 0.05 * np.sin((x - X0) / 210.0) * np.cos((y - Y1) / 330.0)


def vv_db(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean S1 VV backscatter in dB the two summer scenes average to."""
    return -11.0 + 2.0 * np.sin((x - X0) / 170.0)


def elevation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 150.0 + 0.2 * (x - X0) - 0.1 * (Y1 - y)


def in_cloud(x: np.ndarray, y: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """The cloud of the first S2 date (SCL marks `margin` metres more than the bright core)."""
    return np.hypot(x - (X0 + 470.0), y - (Y1 - 300.0)) < 110.0 + margin


def in_snow(x: np.ndarray, y: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """A snow patch on the second S2 date."""
    return np.hypot(x - (X0 + 150.0), y - (Y1 - 420.0)) < 90.0 + margin


@dataclass(frozen=True)
class SourceWorld:
    """Paths of the STAC files to serve, and the COGs by (collection, item, asset)."""

    root: Path
    stac_files: list[Path]
    cogs: dict[tuple[str, str, str], Path]


def _to_3338(epsg: int) -> Transformer:
    return Transformer.from_crs(f"EPSG:{epsg}", "EPSG:3338", always_xy=True)


def _native_grid(epsg: int, area: tuple[float, float, float, float], res: float):
    """A grid in `epsg` covering a 3338 area, origin on multiples of `res`."""
    tr = Transformer.from_crs("EPSG:3338", f"EPSG:{epsg}", always_xy=True)
    xmin, ymin, xmax, ymax = tr.transform_bounds(*area, densify_pts=21)
    xmin, ymax = np.floor(xmin / res) * res, np.ceil(ymax / res) * res
    w, h = int(np.ceil((xmax - xmin) / res)), int(np.ceil((ymax - ymin) / res))
    return from_origin(xmin, ymax, res, res), (h, w)


def _outside(x: np.ndarray, y: np.ndarray, area: tuple[float, float, float, float]) -> np.ndarray:
    """Pixels of a native grid whose centre falls outside the scene's footprint (nodata there)."""
    return (x < area[0]) | (x > area[2]) | (y < area[1]) | (y > area[3])


def _centres_3338(epsg: int, transform, shape) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    xs, ys = transform @ (cols + 0.5, rows + 0.5)
    return _to_3338(epsg).transform(xs, ys)


def write_cog(path: Path, data: np.ndarray, epsg: int, transform, nodata: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="COG", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs=f"EPSG:{epsg}", transform=transform, nodata=nodata,
                       blocksize=256, compress="deflate") as dst:
        dst.write(data, 1)


def _footprint(epsg: int, transform, shape) -> tuple[dict[str, Any], list[float]]:
    h, w = shape
    xmin, ymax = transform @ (0, 0)
    xmax, ymin = transform @ (w, h)
    tr = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    bbox = list(tr.transform_bounds(xmin, ymin, xmax, ymax, densify_pts=21))
    w_, s_, e_, n_ = bbox
    geom = {"type": "Polygon", "coordinates": [[[w_, s_], [e_, s_], [e_, n_], [w_, n_], [w_, s_]]]}
    return geom, bbox


def _asset(path: Path, epsg: int | None, transform, shape, dtype: str, nodata: float,
           scale: float = 1.0, offset: float = 0.0) -> dict[str, Any]:
    asset: dict[str, Any] = {"href": path.resolve().as_uri(),
                             "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                             "roles": ["data"],
                             "raster:bands": [{"data_type": dtype, "nodata": nodata, "scale": scale,
                                               "offset": offset}]}
    if epsg is not None:
        asset.update({"proj:code": f"EPSG:{epsg}", "proj:shape": list(shape),
                      "proj:transform": list(transform)[:6]})
    return asset


def _item(item_id: str, collection: str, when: str, geom, bbox, assets, props=None) -> dict[str, Any]:
    return {"type": "Feature", "stac_version": "1.1.0", "id": item_id, "collection": collection,
            "geometry": geom, "bbox": bbox, "links": [],
            "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                                "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
            "properties": {"datetime": when, **(props or {})}, "assets": assets}


def _collection(cid: str) -> dict[str, Any]:
    return {"type": "Collection", "stac_version": "1.1.0", "id": cid, "description": f"test {cid}",
            "license": "CC-BY-4.0", "links": [],
            "extent": {"spatial": {"bbox": [[-152.0, 63.0, -148.0, 66.0]]},
                       "temporal": {"interval": [["2020-01-01T00:00:00Z", "2022-12-31T00:00:00Z"]]}}}


def _s2_items(root: Path, cogs: dict, drop_proj: bool) -> list[dict[str, Any]]:
    y0 = Y1 - HEIGHT * RES
    tiles = {"A": (32605, (X0, y0, X0 + 500.0, Y1)), "B": (32606, (X0 + 430.0, y0, X0 + COVER_X, Y1))}
    dates = [("2021-07-01T21:00:00Z", "d1"), ("2021-07-20T21:00:00Z", "d2"), ("2021-05-10T21:00:00Z", "d0")]
    items = []
    for tile, (epsg, area) in tiles.items():
        for when, tag in dates:
            if tag == "d0" and tile == "B":
                continue
            item_id = f"S2_{tile}_{tag}"
            assets: dict[str, Any] = {}
            for band, res in {**S2_BANDS, "scl": 20}.items():
                transform, shape = _native_grid(epsg, area, res)
                x, y = _centres_3338(epsg, transform, shape)
                if band == "scl":
                    scl = np.full(shape, SCL_VEG, np.uint16)
                    if tag == "d1":
                        scl[in_cloud(x, y, margin=40.0)] = SCL_CLOUD
                        scl[np.hypot(x - (X0 + 330.0), y - (Y1 - 150.0)) < 60.0] = SCL_SHADOW
                    if tag == "d2":
                        scl[in_snow(x, y, margin=40.0)] = SCL_SNOW
                    scl[:, :1] = 0
                    scl[_outside(x, y, area)] = 0
                    data, scale, offset = scl, 1.0, 0.0
                else:
                    refl = reflectance(band, x, y) + (0.2 if tag == "d0" else 0.0)
                    if tag == "d1":
                        refl = np.where(in_cloud(x, y), 0.85, refl)
                        refl = np.where(np.hypot(x - (X0 + 330.0), y - (Y1 - 150.0)) < 30.0, 0.01, refl)
                    if tag == "d2":
                        refl = np.where(in_snow(x, y), 0.75, refl)
                    data = np.round((refl + 0.1) / 1e-4).astype(np.uint16)
                    data[:, :1] = 0  # a nodata edge, as real scenes have
                    data[_outside(x, y, area)] = 0
                    scale, offset = 1e-4, -0.1
                path = root / "cogs" / "sentinel-2-l2a" / item_id / f"{band}.tif"
                write_cog(path, data, epsg, transform, 0)
                cogs[("sentinel-2-l2a", item_id, band)] = path
                assets[band] = _asset(path, None if drop_proj else epsg, transform, shape, "uint16", 0,
                                      scale, offset)
            transform, shape = _native_grid(epsg, area, 10)
            geom, bbox = _footprint(epsg, transform, shape)
            props = {"eo:cloud_cover": 30.0 if tag == "d1" else 5.0}
            if not drop_proj:
                props["proj:code"] = f"EPSG:{epsg}"
            items.append(_item(item_id, "sentinel-2-l2a", when, geom, bbox, assets, props))
    return items


def _s1_items(root: Path, cogs: dict) -> list[dict[str, Any]]:
    epsg, area = 32606, (X0, Y1 - HEIGHT * RES, X0 + COVER_X, Y1)
    transform, shape = _native_grid(epsg, area, 10)
    x, y = _centres_3338(epsg, transform, shape)
    items = []
    for when, tag, delta in (("2021-07-05T03:00:00Z", "d1", -1.0), ("2021-07-17T03:00:00Z", "d2", 1.0)):
        item_id = f"S1_{tag}"
        assets = {}
        for band, extra in (("vv", 0.0), ("vh", -7.0)):
            data = (10 ** ((vv_db(x, y) + delta + extra) / 10)).astype(np.float32)
            if tag == "d2":
                data[y > Y1 - 160.0] = -32768.0  # this scene misses the north strip
            data[_outside(x, y, area)] = -32768.0
            path = root / "cogs" / "sentinel-1-rtc" / item_id / f"{band}.tif"
            write_cog(path, data, epsg, transform, -32768.0)
            cogs[("sentinel-1-rtc", item_id, band)] = path
            assets[band] = _asset(path, epsg, transform, shape, "float32", -32768.0)
        geom, bbox = _footprint(epsg, transform, shape)
        items.append(_item(item_id, "sentinel-1-rtc", when, geom, bbox, assets, {"proj:code": f"EPSG:{epsg}"}))
    return items


def _static_items(root: Path, cogs: dict) -> dict[str, list[dict[str, Any]]]:
    area = (X0, Y1 - HEIGHT * RES, X0 + COVER_X, Y1)
    out = {}
    for cid, res, bands in (("ak-terrain", 30.0, ("elevation", "slope")),
                            ("ak-climate", 100.0, ("precip_annual", "jan_min_temp"))):
        transform, shape = _native_grid(3338, area, res)
        x, y = _centres_3338(3338, transform, shape)
        assets = {}
        for band in bands:
            data = {"elevation": elevation(x, y), "slope": 3.0 + 0 * x, "precip_annual": 300.0 + 0.1 * (x - X0),
                    "jan_min_temp": -30.0 + 0 * x}[band].astype(np.float32)
            data[_outside(x, y, area)] = -9999.0
            path = root / "cogs" / cid / f"{cid}-1" / f"{band}.tif"
            write_cog(path, data, 3338, transform, -9999.0)
            cogs[(cid, f"{cid}-1", band)] = path
            assets[band] = _asset(path, 3338, transform, shape, "float32", -9999.0)
        geom, bbox = _footprint(3338, transform, shape)
        out[cid] = [_item(f"{cid}-1", cid, "2020-01-01T00:00:00Z", geom, bbox, assets,
                          {"proj:code": "EPSG:3338"})]
    return out


def write_source_world(root: Path, drop_proj: bool = False) -> SourceWorld:
    """Write the COGs and STAC JSON under `root`; `drop_proj` leaves the S2 items without proj info."""
    cogs: dict[tuple[str, str, str], Path] = {}
    by_collection = {"sentinel-2-l2a": _s2_items(root, cogs, drop_proj),
                     "sentinel-1-rtc": _s1_items(root, cogs), **_static_items(root, cogs)}
    files = []
    for cid, items in by_collection.items():
        cpath, ipath = root / "stac" / f"{cid}.collection.json", root / "stac" / f"{cid}.items.json"
        cpath.parent.mkdir(parents=True, exist_ok=True)
        cpath.write_text(json.dumps(_collection(cid)))
        ipath.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        files += [cpath, ipath]
    return SourceWorld(root, files, cogs)


def cube_section(out: str, **overrides: Any) -> dict[str, Any]:
    """The `cube:` section of a run config for this world."""
    section: dict[str, Any] = {
        "out": out, "bounds": list(bounds()), "resolution": RES, "chunk": CHUNK,
        "datetime": "2021-01-01/2021-12-31", "seasons": {"summer": {"start": "06-15", "end": "08-15"}},
        "sources": [
            {"collection": "sentinel-2-l2a", "kind": "optical", "prefix": "s2",
             "bands": {b: b for b in S2_BANDS}, "mask_asset": "scl"},
            {"collection": "sentinel-1-rtc", "kind": "radar", "prefix": "s1", "bands": {"vv": "vv", "vh": "vh"}},
            {"collection": "ak-terrain", "kind": "static", "bands": {"elevation": "elevation", "slope": "slope"}},
            {"collection": "ak-climate", "kind": "static",
             "bands": {"precip_annual": "precip_annual", "jan_min_temp": "jan_min_temp"}},
        ],
        "quicklook_bands": ["s2_summer_nir", "s2_summer_red", "s2_summer_blue"],
    }
    section.update(overrides)
    return section


def fake_sign(item):
    """A stand-in for `planetary_computer.sign`: turns unreadable blob hrefs into readable ones."""
    for asset in item.assets.values():
        asset.href = asset.href.replace("https://blob.invalid/", "file:///")
    return item
