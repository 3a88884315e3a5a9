"""Pedons: labelled points sampled with the real database's bias (dense along the road, the main
river and near villages, sparse in remote country), and some points missing one of the two labels."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy import ndimage

from misomap.cube.grid import Grid
from misomap.demo.fields import rng_for
from misomap.demo.terrain import Terrain
from misomap.demo.truth import NODATA_CLASS, SOIL_ORDERS, Truth

LABEL_MIX = {"both": 0.27, "soil_order_only": 0.59, "permafrost_only": 0.14}
"""Share of pedons by labels carried (the reference: ~37k points, ~15k permafrost, ~32k order)."""
LABEL_NOISE = 0.03
"""Share of labels recorded wrong (field and description errors)."""


def access_layers(terrain: Terrain, res: float, rng: np.random.Generator,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A road along the main valley and 2–3 villages on the river (boolean masks on the grid)."""
    h, w = terrain.elevation.shape
    road = np.zeros((h, w), bool)
    side = 1 if rng.random() < 0.5 else -1
    cols = np.clip(np.round(terrain.valley_x + side * 500.0 / res), 0, w - 1).astype(int)
    road[np.arange(h), cols] = True
    road = ndimage.binary_dilation(road, iterations=1)
    villages = np.zeros((h, w), bool)
    for frac in sorted(rng.uniform(0.15, 0.9, size=int(rng.integers(2, 4)))):
        r = int(frac * (h - 1))
        villages[r, int(terrain.valley_x[r])] = True
    return road, villages


def sample_pedons(seed: int, grid: Grid, terrain: Terrain, truth: Truth, n: int) -> gpd.GeoDataFrame:
    """Biased, labelled points in EPSG:3338 (never on water)."""
    rng = rng_for(seed, "pedons")
    res = grid.resolution
    road, villages = access_layers(terrain, res, rng)
    d_road = ndimage.distance_transform_edt(~road) * res
    d_vil = ndimage.distance_transform_edt(~villages) * res
    d_riv = ndimage.distance_transform_edt(~terrain.river) * res
    weight = (0.04 + 1.0 * np.exp(-d_road / 700.0) + 1.5 * np.exp(-d_vil / 1500.0)
              + 0.4 * np.exp(-d_riv / 300.0))
    weight[terrain.water] = 0.0
    p = (weight / weight.sum()).ravel()
    cells = rng.choice(p.size, size=n, replace=True, p=p)
    rows, cols = np.divmod(cells, grid.width)
    x = grid.x_coords()[cols] + rng.uniform(-res / 2, res / 2, n)
    y = grid.y_coords()[rows] + rng.uniform(-res / 2, res / 2, n)

    perm = truth.permafrost[rows, cols].astype(np.int8)
    flip = rng.random(n) < LABEL_NOISE
    perm[flip] = 1 - perm[flip]
    order = truth.soil_order[rows, cols].astype(np.int64)
    wrong = rng.random(n) < LABEL_NOISE
    order[wrong] = rng.integers(0, len(SOIL_ORDERS), wrong.sum())
    kind = rng.choice(list(LABEL_MIX), size=n, p=list(LABEL_MIX.values()))
    perm_col = pd.array(np.where(kind == "soil_order_only", 0, perm), dtype="Int8")
    perm_col[kind == "soil_order_only"] = pd.NA
    names = np.array(SOIL_ORDERS, dtype=object)[np.clip(order, 0, len(SOIL_ORDERS) - 1)]
    names[(kind == "permafrost_only") | (order == NODATA_CLASS)] = None
    return gpd.GeoDataFrame(
        {"pedon_id": [f"P{i:06d}" for i in range(n)], "permafrost": perm_col,
         "soil_order": pd.array(names, dtype="string")},
        geometry=gpd.points_from_xy(x, y), crs=grid.crs)
