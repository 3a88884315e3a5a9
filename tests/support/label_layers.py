"""Region and permafrost-zone layers for small test worlds: two halves of the grid each, in the
layout `misomap demo-world` writes under `labels/` (GeoParquet, EPSG:3338)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
from shapely.geometry import box

from misomap.cube.grid import Grid


def write_regions_and_zones(labels: Path, grid: Grid) -> None:
    """`regions.parquet` (west / east halves) and `permafrost_zones.parquet` (north half
    continuous, south half discontinuous), reaching 10 km past the grid."""
    xm, ym = (grid.xmin + grid.xmax) / 2, (grid.ymin + grid.ymax) / 2
    gpd.GeoDataFrame({"region": ["west", "east"]}, crs="EPSG:3338", geometry=[
        box(grid.xmin - 1e4, grid.ymin - 1e4, xm, grid.ymax + 1e4),
        box(xm, grid.ymin - 1e4, grid.xmax + 1e4, grid.ymax + 1e4)]).to_parquet(labels / "regions.parquet")
    gpd.GeoDataFrame({"zone": ["continuous", "discontinuous"]}, crs="EPSG:3338", geometry=[
        box(grid.xmin - 1e4, ym, grid.xmax + 1e4, grid.ymax + 1e4),
        box(grid.xmin - 1e4, grid.ymin - 1e4, grid.xmax + 1e4, ym)]).to_parquet(labels / "permafrost_zones.parquet")
