"""The 50 km EPSG:3338 tile grid over Alaska and the shipped land mask that picks its land tiles.

Tile ids follow the AKVEG map grid's form, `AK050HxxVyy`: H counts 50 km columns east from the grid's
west edge, V counts rows south from its north edge. The origin (x -2,300,000, y 2,400,000) is chosen
so every column and row index of Alaska fits two digits; it is this project's grid, shaped like the
AKVEG one, not a copy of its published origin.

The land mask (`data/alaska_land.geojson`, ~1,100 vertices, 22 KB) is the US Census Bureau state
boundary of Alaska as simplified in the Leaflet choropleth example's `us-states.json` (public
domain); see the file's `source` property. It is coarse (a few km on the coast, 1.52 M km² against
the state's 1.48 M km² of land), which is fine for choosing 50 km tiles, not for masking pixels.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from misomap.core.errors import MisomapError

CRS = "EPSG:3338"
TILE_M = 50_000.0
ORIGIN_X, ORIGIN_Y = -2_300_000.0, 2_400_000.0
N_COLS, N_ROWS = 80, 45
"""The grid's extent: columns H00..H79 and rows V00..V44 cover Alaska with the Aleutians."""
_ID = re.compile(r"^AK050H(\d{2})V(\d{2})$")


class PlanError(MisomapError):
    """A tile plan cannot be made: unknown tile id, a region without land, a bad grid."""


@dataclass(frozen=True, order=True)
class Tile:
    """One 50 km tile: column h (west to east) and row v (north to south)."""

    h: int
    v: int

    @property
    def id(self) -> str:
        return f"AK050H{self.h:02d}V{self.v:02d}"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in EPSG:3338 metres."""
        x0 = ORIGIN_X + self.h * TILE_M
        y1 = ORIGIN_Y - self.v * TILE_M
        return (x0, y1 - TILE_M, x0 + TILE_M, y1)


def parse_tile(tile_id: str) -> Tile:
    """The tile of an id like `AK050H48V07`; PlanError naming the id and the valid range otherwise."""
    m = _ID.match(tile_id)
    if not m or int(m[1]) >= N_COLS or int(m[2]) >= N_ROWS:
        raise PlanError(f"unknown tile id {tile_id!r}: ids are AK050HxxVyy with H00..H{N_COLS - 1} and "
                        f"V00..V{N_ROWS - 1} (see `misomap plan` for the land tiles)")
    return Tile(int(m[1]), int(m[2]))


@lru_cache(maxsize=1)
def land_mask() -> BaseGeometry:
    """The shipped Alaska land outline in EPSG:3338 (made valid once per process)."""
    doc = json.loads(files("misomap.plan").joinpath("data/alaska_land.geojson").read_text())
    lonlat = shape(doc["features"][0]["geometry"])
    to_3338 = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    projected = shapely.transform(lonlat, lambda xy: np.column_stack(to_3338.transform(xy[:, 0], xy[:, 1])))
    return shapely.make_valid(projected)


def tiles_touching(bounds: tuple[float, float, float, float]) -> list[Tile]:
    """Tiles of the grid whose area overlaps `bounds` (EPSG:3338), in (h, v) order."""
    xmin, ymin, xmax, ymax = bounds
    h0 = max(math.floor((xmin - ORIGIN_X) / TILE_M), 0)
    h1 = min(math.ceil((xmax - ORIGIN_X) / TILE_M), N_COLS)
    v0 = max(math.floor((ORIGIN_Y - ymax) / TILE_M), 0)
    v1 = min(math.ceil((ORIGIN_Y - ymin) / TILE_M), N_ROWS)
    return [Tile(h, v) for h in range(h0, h1) for v in range(v0, v1)]


def land_tiles(bounds: tuple[float, float, float, float] | None = None) -> list[Tile]:
    """Tiles that touch land (within `bounds` if given), sorted by id."""
    land = land_mask()
    candidates = tiles_touching(bounds if bounds is not None else land.bounds)
    shapely.prepare(land)
    return sorted(t for t in candidates if land.intersects(box(*t.bounds)))
