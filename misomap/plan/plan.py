"""A region's plan: its land tiles, the cube and map chunks on them, bytes, and cost per stage.

One code path for every region: the demo grid, a list of tiles, or all of Alaska at any resolution.
Chunks live on the region's global pixel grid (so statewide chunk keys are stable); only chunks that
touch a planned tile are kept, the rest of the grid stays nodata.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from misomap.cube.grid import ChunkWindow, Grid, plan_chunks
from misomap.plan.config import RatesConfig
from misomap.plan.tiles import CRS, ORIGIN_X, ORIGIN_Y, TILE_M, PlanError, Tile, land_tiles, parse_tile

CUBE_BYTES_PER_VALUE = 4
"""float32 cube values, before compression."""


@dataclass(frozen=True)
class RegionPlan:
    """Tiles, cube chunks and map chunks of one region."""

    grid: Grid
    tiles: tuple[Tile, ...]
    cube_chunk: int
    cube_chunks: tuple[ChunkWindow, ...]
    map_grid: Grid
    map_chunk: int
    map_chunks: tuple[ChunkWindow, ...]
    n_bands: int
    map_bytes_per_px: int

    @property
    def cube_pixels(self) -> int:
        return sum(c.height * c.width for c in self.cube_chunks)

    @property
    def map_pixels(self) -> int:
        return sum(c.height * c.width for c in self.map_chunks)

    @property
    def input_bytes(self) -> int:
        """Uncompressed cube bytes the map stage reads."""
        return self.cube_pixels * self.n_bands * CUBE_BYTES_PER_VALUE

    @property
    def output_bytes(self) -> int:
        """Uncompressed map bytes (uint8 layers) the publish stage copies."""
        return self.map_pixels * self.map_bytes_per_px


@dataclass(frozen=True)
class StageCost:
    """Estimated work of one stage: CPU core-hours and GPU hours (None where no rate is measured)."""

    stage: str
    core_hours: float | None
    gpu_hours: float | None
    note: str


MAX_CHUNKS = 5_000_000
"""More chunks than this in one plan is a mistyped resolution, not a job (listing them would hang)."""


def check_resolution(resolution: float, what: str = "resolution") -> float:
    """`resolution` in metres when finite and between 1 m and one 50 km tile; PlanError otherwise."""
    if not math.isfinite(resolution) or not 1.0 <= resolution <= TILE_M:
        raise PlanError(f"{what} must be a finite number of metres between 1 and {TILE_M:g}, got {resolution!r}")
    return resolution


def statewide_grid(resolution: float) -> Grid:
    """The grid over every land tile of Alaska at `resolution`, aligned to it."""
    tiles = land_tiles()
    bounds = (min(t.bounds[0] for t in tiles), min(t.bounds[1] for t in tiles),
              max(t.bounds[2] for t in tiles), max(t.bounds[3] for t in tiles))
    return Grid.aligned(CRS, resolution, bounds)


def _on_tiles(grid: Grid, chunk: int, keep: set[tuple[int, int]]) -> tuple[ChunkWindow, ...]:
    """Chunks of `grid` whose area overlaps a tile in `keep` ((h, v) pairs)."""
    r = grid.resolution
    out = []
    for w in plan_chunks(grid, chunk):
        x0, x1 = grid.xmin + w.col0 * r, grid.xmin + (w.col0 + w.width) * r
        y1, y0 = grid.ymax - w.row0 * r, grid.ymax - (w.row0 + w.height) * r
        hs = range(math.floor((x0 - ORIGIN_X) / TILE_M), math.ceil((x1 - ORIGIN_X) / TILE_M))
        vs = range(math.floor((ORIGIN_Y - y1) / TILE_M), math.ceil((ORIGIN_Y - y0) / TILE_M))
        if any((h, v) in keep for h in hs for v in vs):
            out.append(w)
    return tuple(out)


def make_plan(grid: Grid, cube_chunk: int, map_resolution: float, map_chunk: int, n_bands: int,
              map_bytes_per_px: int, tile_ids: tuple[str, ...] | None = None) -> RegionPlan:
    """The plan of `grid` (EPSG:3338): land tiles it touches (or the listed ones), and their chunks.

    PlanError when the grid is in another CRS, a tile id is unknown or off the grid, or no land
    tile is left."""
    check_resolution(grid.resolution)
    check_resolution(map_resolution, "the map resolution")
    if grid.crs.upper() != CRS:
        raise PlanError(f"tile plans are in {CRS}; the cube grid is in {grid.crs}")
    on_grid = land_tiles(grid.bounds)
    if tile_ids is not None:
        wanted = [parse_tile(t) for t in tile_ids]
        off = [t.id for t in wanted if t not in on_grid]
        if off:
            raise PlanError(f"tile(s) {off} are not land tiles of the cube's grid {grid.bounds} "
                            f"(land tiles there: {[t.id for t in on_grid][:8]}{' ...' if len(on_grid) > 8 else ''})")
        on_grid = sorted(set(wanted))
    if not on_grid:
        raise PlanError(f"no land in the region {grid.bounds} ({grid.crs}): the plan would map nothing; "
                        "check cube.bounds / cube.bbox")
    for g, c in ((grid, cube_chunk), (Grid.aligned(grid.crs, map_resolution, grid.bounds), map_chunk)):
        n = math.ceil(g.width / c) * math.ceil(g.height / c)
        if n > MAX_CHUNKS:
            raise PlanError(f"{g.resolution:g} m over {grid.bounds} makes {n:,} chunks of {c} px (more than "
                            f"{MAX_CHUNKS:,}): use a coarser resolution, larger chunks or fewer tiles")
    keep = {(t.h, t.v) for t in on_grid}
    map_grid = grid if map_resolution == grid.resolution else Grid.aligned(grid.crs, map_resolution, grid.bounds)
    return RegionPlan(grid, tuple(on_grid), cube_chunk, _on_tiles(grid, cube_chunk, keep), map_grid,
                      map_chunk, _on_tiles(map_grid, map_chunk, keep), n_bands, map_bytes_per_px)


def estimate(plan: RegionPlan, rates: RatesConfig) -> list[StageCost]:
    """Cost per stage from the measured per-core rates; GPU only where a GPU rate is configured."""
    px, bands = plan.map_pixels, plan.n_bands
    cube_h = plan.cube_pixels * bands / rates.cube_px_bands_per_s_core / 3600
    miso_gpu = px / rates.miso_px_per_s_gpu / 3600 if rates.miso_px_per_s_gpu else None
    return [
        StageCost("search", None, None, "STAC metadata only: one paged search per source"),
        StageCost("cube", cube_h, None, f"{plan.cube_pixels:,} px x {bands} bands"),
        StageCost("predict miso", px / rates.miso_px_per_s_core / 3600, miso_gpu, f"{px:,} px"),
        StageCost("predict rf", px / rates.rf_px_per_s_core / 3600, None, f"{px:,} px"),
        StageCost("publish", None, None, f"copy {_bytes(plan.output_bytes)} into a new version"),
    ]


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_plan(name: str, plan: RegionPlan, costs: list[StageCost], rates: RatesConfig) -> str:
    """The human summary `misomap plan` prints."""
    g = plan.grid
    lines = [
        f"plan {name}: {g.crs} {g.resolution:g} m, grid {g.width:,} x {g.height:,} px",
        f"  tiles        {len(plan.tiles):,} land tiles of 50 km ({plan.tiles[0].id} .. {plan.tiles[-1].id})",
        f"  cube chunks  {len(plan.cube_chunks):,} of {plan.cube_chunk} px, {plan.cube_pixels:,} px",
        f"  map chunks   {len(plan.map_chunks):,} of {plan.map_chunk} px, {plan.map_pixels:,} px",
        f"  input        {_bytes(plan.input_bytes)} (cube, {plan.n_bands} bands float32, uncompressed)",
        f"  output       {_bytes(plan.output_bytes)} (map layers, {plan.map_bytes_per_px} B/px uint8, uncompressed)",
        f"  rates (inputs): cube {rates.cube_px_bands_per_s_core:,.0f} px-bands/s/core, MISO "
        f"{rates.miso_px_per_s_core:,.0f} px/s/core, RF {rates.rf_px_per_s_core:,.0f} px/s/core, MISO GPU "
        + (f"{rates.miso_px_per_s_gpu:,.0f} px/s" if rates.miso_px_per_s_gpu else "not measured"),
    ]
    for c in costs:
        core = f"{c.core_hours:,.2f} core-h" if c.core_hours is not None else "-"
        gpu = f"{c.gpu_hours:,.2f} GPU-h" if c.gpu_hours is not None else "GPU n/a"
        lines.append(f"  {c.stage:<13}{core:>18}  {gpu:<12} {c.note}")
    return "\n".join(lines)
