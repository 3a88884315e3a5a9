"""A user's area of interest for `misomap init`: a lon/lat bbox or a GeoJSON file, checked, and the
cube grid over it — EPSG:3338 snapped to the statewide tile plan's chunk lattice in Alaska, the
area's UTM zone elsewhere.

Snapping: the grid's edges fall on the chunk boundaries of `statewide_grid(resolution)`, so an area's
chunks are the statewide plan's chunks (same keys, same pixels) and a later statewide run reuses them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from pyproj import Transformer

from misomap.plan.plan import statewide_grid
from misomap.plan.tiles import CRS, PlanError, Tile, land_tiles

BBox = tuple[float, float, float, float]


class AreaError(PlanError):
    """The area of interest cannot be used: bad numbers, wrong order or CRS, crossing the antimeridian."""


@dataclass(frozen=True)
class AreaGrid:
    """The cube grid `misomap init` writes for an area."""

    bbox: BBox
    """lon/lat (west, south, east, north) as given (GeoJSON: its bounds)."""
    crs: str
    bounds: BBox
    """Grid bounds in `crs` metres, aligned to the resolution (and to the statewide chunks in Alaska)."""
    resolution: float
    chunk: int
    alaska: bool
    tiles: tuple[Tile, ...]
    """Land tiles of the statewide plan the grid touches (Alaska only)."""


def _antimeridian(west: float, south: float, east: float, north: float, where: str) -> AreaError:
    return AreaError(
        f"{where} crosses the antimeridian (180°; west {west:g} > east {east:g}), as the western Aleutians "
        f"do: run `misomap init` once for each side, --area {west:g},{south:g},180,{north:g} and --area "
        f"-180,{south:g},{east:g},{north:g} (one cube each)")


def check_bbox(bbox: BBox, where: str = "area") -> BBox:
    """A lon/lat bbox (west, south, east, north) checked for finiteness, range, order and the antimeridian."""
    west, south, east, north = bbox
    if not all(math.isfinite(v) for v in bbox):
        raise AreaError(f"{where} {list(bbox)} has a non-finite value")
    if any(abs(v) > 180 for v in bbox) or abs(south) > 90 or abs(north) > 90:
        if abs(west) <= 90 and abs(east) <= 90 and abs(south) <= 180 and abs(north) <= 180:
            raise AreaError(f"{where} {list(bbox)} looks like lat,lon: give lon/lat degrees in the order "
                            "west,south,east,north (e.g. -148.2,64.7,-147.4,65.0)")
        raise AreaError(f"{where} {list(bbox)} is not lon/lat degrees (projected metres?): give WGS84 lon/lat "
                        "as west,south,east,north (e.g. -148.2,64.7,-147.4,65.0)")
    if south >= north:
        raise AreaError(f"{where} {list(bbox)}: south {south:g} is not below north {north:g}; the order is "
                        "west,south,east,north (lon/lat)")
    if west > east and west > 0 > east:
        raise _antimeridian(west, south, east, north, where)
    if west >= east:
        raise AreaError(f"{where} {list(bbox)}: west {west:g} is not west of east {east:g}; the order is "
                        "west,south,east,north (lon/lat)")
    return bbox


def _coords(geometry: dict) -> list[tuple[float, float]]:
    """Every (lon, lat) position of a GeoJSON geometry."""
    if geometry.get("type") == "GeometryCollection":
        return [c for g in geometry.get("geometries", []) for c in _coords(g)]
    out: list[tuple[float, float]] = []

    def walk(node: object) -> None:
        if isinstance(node, (list, tuple)) and node and isinstance(node[0], (int, float)):
            out.append((float(node[0]), float(node[1])))
        elif isinstance(node, (list, tuple)):
            for n in node:
                walk(n)
    walk(geometry.get("coordinates", []))
    return out


def read_geojson_bbox(path: Path) -> BBox:
    """The lon/lat bounds of every geometry in a GeoJSON file (RFC 7946: WGS84 lon/lat)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AreaError(f"cannot read GeoJSON area {path}: {err}") from None
    crs = (doc.get("crs") or {}).get("properties", {}).get("name", "") if isinstance(doc, dict) else ""
    if crs and "CRS84" not in crs and not crs.endswith(":4326"):
        raise AreaError(f"{path} declares CRS {crs!r}; GeoJSON areas must be WGS84 lon/lat (RFC 7946): "
                        "reproject it (e.g. ogr2ogr -t_srs EPSG:4326)")
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "FeatureCollection":
        geoms = [f.get("geometry") or {} for f in doc.get("features", [])]
    elif kind == "Feature":
        geoms = [doc.get("geometry") or {}]
    else:
        geoms = [doc] if isinstance(doc, dict) else []
    pts = [c for g in geoms for c in _coords(g)]
    if not pts:
        raise AreaError(f"{path} holds no geometry coordinates (expected a GeoJSON Polygon, Feature or "
                        "FeatureCollection in lon/lat)")
    lons, lats = [p[0] for p in pts], [p[1] for p in pts]
    west, east = min(lons), max(lons)
    if east > 180 or east - west > 180:  # positions written past 180° or split on both sides of it
        shifted = [lon % 360 for lon in lons]
        raise _antimeridian(min(shifted), min(lats), max(shifted) - 360, max(lats), str(path))
    return check_bbox((west, min(lats), east, max(lats)), str(path))


def parse_area(area: str) -> BBox:
    """`west,south,east,north` (lon/lat) or a path to a GeoJSON file, as a checked lon/lat bbox."""
    path = Path(area)
    if area.lower().endswith((".geojson", ".json")):
        if not path.is_file():
            raise AreaError(f"GeoJSON area {area} does not exist")
        return read_geojson_bbox(path)
    parts = [p.strip() for p in area.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise AreaError(f"--area {area!r} is neither west,south,east,north (lon/lat degrees) nor a "
                        ".geojson file") from None
    if len(values) != 4:
        raise AreaError(f"--area {area!r} has {len(values)} numbers; give west,south,east,north (lon/lat)")
    return check_bbox(values)  # type: ignore[arg-type]


def _utm(bbox: BBox) -> str:
    """The WGS84 UTM zone of the bbox's centre (EPSG:326xx north, 327xx south)."""
    west, south, east, north = bbox
    zone = min(int(((west + east) / 2 + 180) // 6) + 1, 60)
    return f"EPSG:{(32600 if south + north >= 0 else 32700) + zone}"


def area_grid(bbox: BBox, resolution: float, chunk: int) -> AreaGrid:
    """The grid over a lon/lat bbox: EPSG:3338 on the statewide chunk lattice where it touches an Alaska
    land tile, else the bbox's UTM zone (aligned to the resolution)."""
    to_ak = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    xmin, ymin, xmax, ymax = to_ak.transform_bounds(*bbox, densify_pts=21)
    tiles = tuple(land_tiles((xmin, ymin, xmax, ymax))) if xmin < xmax else ()
    if tiles:
        state = statewide_grid(resolution)
        step = chunk * resolution
        snapped = (state.xmin + math.floor((xmin - state.xmin) / step) * step,
                   state.ymax - math.ceil((state.ymax - ymin) / step) * step,
                   state.xmin + math.ceil((xmax - state.xmin) / step) * step,
                   state.ymax - math.floor((state.ymax - ymax) / step) * step)
        return AreaGrid(bbox, CRS, snapped, resolution, chunk, True, tiles)
    crs = _utm(bbox)
    tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x0, y0, x1, y1 = tr.transform_bounds(*bbox, densify_pts=21)
    r = resolution
    bounds = (math.floor(x0 / r) * r, math.floor(y0 / r) * r, math.ceil(x1 / r) * r, math.ceil(y1 / r) * r)
    return AreaGrid(bbox, crs, bounds, resolution, chunk, False, ())
