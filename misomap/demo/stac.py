"""STAC documents for the demo world: collections and items whose asset keys, band names and
extension fields (proj, eo, raster, sat, sar) mirror Earth Search's `sentinel-2-l2a` and the
Planetary Computer's `sentinel-1-rtc`, so one pipeline config serves demo and real data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from affine import Affine
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

STAC_VERSION = "1.1.0"
EXT = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
}
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
S2_COLLECTION, S1_COLLECTION = "sentinel-2-l2a", "sentinel-1-rtc"
TERRAIN_COLLECTION, CLIMATE_COLLECTION = "ak-terrain", "ak-climate"
S2_SCALE, S2_OFFSET = 0.0001, -0.1
S1_NODATA = -32768.0

_COLLECTION_TEXT = {
    S2_COLLECTION: ("Sentinel-2 Level-2A (demo world)",
                    "Synthetic Sentinel-2 L2A-like surface reflectance on UTM tiles, asset keys as "
                    "Earth Search v1; 10 m-class bands at 20 m and 20 m-class bands at 40 m."),
    S1_COLLECTION: ("Sentinel-1 RTC (demo world)",
                    "Synthetic Sentinel-1 radiometrically terrain corrected VV/VH gamma0 (linear), "
                    "asset keys as the Planetary Computer's sentinel-1-rtc; 20 m pixels."),
    TERRAIN_COLLECTION: ("Alaska terrain covariates (demo world)",
                         "Synthetic IfSAR-like DEM and its derivatives on EPSG:3338 at 30 m."),
    CLIMATE_COLLECTION: ("Alaska climate normals (demo world)",
                         "Synthetic 1991-2020 climate normals on EPSG:3338 at 30 m."),
}


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _r(values: Any, nd: int = 7) -> Any:
    """Round floats (nested) so documents are short and stable."""
    if isinstance(values, float):
        return round(values, nd)
    if isinstance(values, (list, tuple)):
        return [_r(v, nd) for v in values]
    if isinstance(values, dict):
        return {k: _r(v, nd) for k, v in values.items()}
    return values


def raster_asset(href: str, title: str, roles: list[str], shape: tuple[int, int], transform: Affine,
                 band: dict[str, Any], eo_band: dict[str, Any] | None = None,
                 gsd: float | None = None) -> dict[str, Any]:
    """One COG asset with its own grid (proj:shape/transform) and raster:bands (and eo:bands)."""
    asset: dict[str, Any] = {"href": href, "type": COG_TYPE, "title": title, "roles": roles}
    if eo_band is not None:
        asset["eo:bands"] = [eo_band]
    if gsd is not None:
        asset["gsd"] = gsd
    asset["proj:shape"] = list(shape)
    asset["proj:transform"] = _r(list(transform)[:6], 6)
    asset["raster:bands"] = [band]
    return asset


def item(collection: str, item_id: str, when: datetime, footprint: BaseGeometry, proj_code: str,
         properties: dict[str, Any], assets: dict[str, dict[str, Any]], extensions: list[str],
         extra_times: dict[str, str] | None = None) -> dict[str, Any]:
    """A STAC item; links are relative so the static catalog is self-contained and relocatable."""
    props = {"datetime": iso(when), **(extra_times or {}), **properties, "proj:code": proj_code}
    return {
        "type": "Feature", "stac_version": STAC_VERSION,
        "stac_extensions": [EXT[e] for e in extensions],
        "id": item_id, "geometry": _r(mapping(footprint)), "bbox": _r(list(footprint.bounds)),
        "properties": props,
        "links": [{"rel": "root", "href": "../../catalog.json", "type": "application/json"},
                  {"rel": "parent", "href": "../collection.json", "type": "application/json"},
                  {"rel": "collection", "href": "../collection.json", "type": "application/json"}],
        "assets": assets, "collection": collection,
    }


def collection(coll_id: str, items: list[dict[str, Any]], summaries: dict[str, Any]) -> dict[str, Any]:
    """A collection whose extent covers its items; item links point into the static tree."""
    xs = [v for it in items for v in it["bbox"][0::2]]
    ys = [v for it in items for v in it["bbox"][1::2]]
    starts = sorted(it["properties"].get("start_datetime", it["properties"]["datetime"]) for it in items)
    ends = sorted(it["properties"].get("end_datetime", it["properties"]["datetime"]) for it in items)
    title, description = _COLLECTION_TEXT[coll_id]
    return {
        "type": "Collection", "stac_version": STAC_VERSION, "stac_extensions": [],
        "id": coll_id, "title": title, "description": description, "license": "CC0-1.0",
        "extent": {"spatial": {"bbox": [[min(xs), min(ys), max(xs), max(ys)]]},
                   "temporal": {"interval": [[starts[0], ends[-1]]]}},
        "summaries": summaries,
        "links": [{"rel": "root", "href": "../catalog.json", "type": "application/json"},
                  {"rel": "parent", "href": "../catalog.json", "type": "application/json"}]
        + [{"rel": "item", "href": f"./{it['id']}/{it['id']}.json", "type": "application/geo+json"}
           for it in items],
    }


def catalog(collection_ids: list[str]) -> dict[str, Any]:
    return {
        "type": "Catalog", "stac_version": STAC_VERSION, "id": "misomap-demo-world",
        "description": "A synthetic, physically plausible Alaska region for misomap's demo.",
        "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]
        + [{"rel": "child", "href": f"./{c}/collection.json", "type": "application/json"}
           for c in collection_ids],
    }


def api_collection(doc: dict[str, Any]) -> dict[str, Any]:
    """The collection as loaded into a STAC API (the server writes its own links)."""
    return {**doc, "links": []}


def api_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A FeatureCollection of items for `rustac serve` (links left to the server)."""
    return {"type": "FeatureCollection", "features": [{**it, "links": []} for it in items]}
