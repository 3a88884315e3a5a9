"""What a demo world is made of: its sizes, region, seasons and the config section that picks one.

The region sits on the Dalton Highway corridor (Brooks Range foothills, ~67.5°N, 150°W, EPSG:3338)
and straddles the UTM zone 5/6 boundary, so source scenes come in two CRSs. Its climate gradient is
*compressed*: a few to a few tens of kilometres of ground carry the climate of ~68.3°N→65.8°N, so
permafrost zones from continuous to sporadic fit inside one small world.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from misomap.core.config_base import Location, StrictModel
from misomap.cube.grid import Grid
from misomap.core.errors import MisomapError

SizeName = Literal["tiny", "demo", "bench"]

CUBE_CRS = "EPSG:3338"
CUBE_RESOLUTION = 30.0
"""The suggested cube grid is 30 m (the reference works at 10 m; 30 m keeps the demo small)."""
REGION_CENTRE = (174_000.0, 1_950_000.0)
"""EPSG:3338 centre of the world, near Wiseman on the Dalton Highway (~67.45°N, 150.0°W)."""
VIRTUAL_LATITUDE = (68.3, 65.8)
"""Latitude the climate model uses at the north and the south edge (the compressed gradient)."""
YEARS = (2021, 2022)
SEASONS: dict[str, tuple[str, str]] = {"spring": ("04-25", "06-05"), "summer": ("06-20", "08-25")}
"""Season windows (MM-DD, inclusive) the scenes are dated in; spring scenes carry snow."""
VOLCANO_LONLAT = (-153.0, 66.0)
"""Ash source direction (south-west), giving a north-east-thinning ash-fall gradient."""


class DemoWorldError(MisomapError):
    """The demo world cannot be generated or written; the message names the size, file or asset."""


@dataclass(frozen=True)
class WorldSize:
    """Pixel counts and sampling densities for one named world size."""

    name: str
    grid_px: int
    """Cube grid width and height at 30 m."""
    dates_per_season: int
    n_pedons: int
    tile_km: float
    """Side of a Sentinel-2-like tile (real: 109.8 km; scaled to the world)."""
    overlap_km: float
    s2_fine_m: float = 20.0
    """'10 m-class' band resolution, scaled to 20 m to keep files small."""
    s2_coarse_m: float = 40.0
    """'20 m-class' band resolution, scaled to 40 m."""
    s1_m: float = 20.0
    """Sentinel-1 RTC pixel (real: 10 m), scaled to 20 m."""
    cog_blocksize: int = 256

    @property
    def base_m(self) -> float:
        """Resolution of the internal surface the imagery is sampled from (half the cube's)."""
        return CUBE_RESOLUTION / 2

    def grid(self) -> Grid:
        """The suggested cube grid: `grid_px` square at 30 m around REGION_CENTRE."""
        half = self.grid_px * CUBE_RESOLUTION / 2
        cx, cy = REGION_CENTRE
        return Grid.aligned(CUBE_CRS, CUBE_RESOLUTION, (cx - half, cy - half, cx + half, cy + half))


SIZES: dict[str, WorldSize] = {
    "tiny": WorldSize("tiny", grid_px=160, dates_per_season=2, n_pedons=400, tile_km=5.2,
                      overlap_km=0.6, cog_blocksize=128),
    "demo": WorldSize("demo", grid_px=640, dates_per_season=3, n_pedons=3000, tile_km=20.0,
                      overlap_km=2.0),
    "bench": WorldSize("bench", grid_px=1536, dates_per_season=4, n_pedons=10000, tile_km=36.0,
                       overlap_km=3.0),
}


def world_size(name: str) -> WorldSize:
    """The WorldSize called `name`, or a DemoWorldError listing the valid names."""
    try:
        return SIZES[name]
    except KeyError:
        raise DemoWorldError(f"unknown demo world size {name!r}; choose one of {sorted(SIZES)}") from None


class DemoWorldConfig(StrictModel):
    """Run-config section `demo_world`: where the demo world is written and which one."""

    out: Location = "demo-out/world"
    seed: int = 0
    size: SizeName = "demo"
