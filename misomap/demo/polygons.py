"""Class rasters to polygon layers (permafrost zones, MLRA-like regions) as GeoDataFrames."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
from rasterio import features
from shapely.geometry import shape
from shapely.ops import unary_union

from misomap.cube.grid import Grid


def class_polygons(classes: np.ndarray, names: tuple[str, ...], column: str, grid: Grid,
                   ) -> gpd.GeoDataFrame:
    """One (multi)polygon per class present, in the grid's CRS, in class order."""
    rows = []
    for geom, value in features.shapes(classes.astype(np.uint8), transform=grid.transform):
        rows.append((int(value), shape(geom)))
    out = []
    for k, name in enumerate(names):
        parts = [g for v, g in rows if v == k]
        if parts:
            out.append({column: name, "geometry": unary_union(parts)})
    return gpd.GeoDataFrame(out, geometry="geometry", crs=grid.crs)
