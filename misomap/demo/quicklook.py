"""A one-page picture of the world: terrain, climate, truth, an RGB scene and the pedons."""

from __future__ import annotations

import io

import geopandas as gpd
import matplotlib
import numpy as np

from misomap.cube.grid import Grid
from misomap.demo.climate import Climate
from misomap.demo.terrain import Terrain
from misomap.demo.truth import NODATA_CLASS, SOIL_ORDERS, Truth

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LightSource, ListedColormap  # noqa: E402

_ORDER_COLOURS = ["#d95f02", "#e6ab02", "#7570b3", "#1b9e77", "#a6761d", "#e7298a", "#66a61e"]


def quicklook_png(grid: Grid, terrain: Terrain, climate: Climate, truth: Truth,
                  rgbs: tuple[np.ndarray, np.ndarray, str], pedons: gpd.GeoDataFrame,
                  title: str) -> bytes:
    """Eight panels as PNG bytes (no timestamps in the metadata, so the bytes are reproducible).

    `rgbs`: clear-sky summer surface, the same date's scene as published, and that date.
    """
    ext = (grid.xmin / 1000, grid.xmax / 1000, grid.ymin / 1000, grid.ymax / 1000)
    fig, axes = plt.subplots(2, 4, figsize=(20, 10), constrained_layout=True)
    shade = LightSource(azdeg=315, altdeg=45).shade(terrain.elevation, cmap=plt.cm.terrain,
                                                     vert_exag=3, blend_mode="soft")
    ax = axes[0, 0]
    ax.imshow(shade, extent=ext)
    ax.imshow(np.ma.masked_where(~terrain.water, terrain.water), cmap=ListedColormap(["#2b6cb0"]),
              extent=ext)
    ax.set_title("DEM (hillshade), lakes and rivers")
    im = axes[0, 1].imshow(climate.jan_min_temp, cmap="coolwarm", extent=ext)
    fig.colorbar(im, ax=axes[0, 1], shrink=0.7, label="°C")
    axes[0, 1].set_title("January minimum temperature")
    pf = np.ma.masked_where(terrain.water, truth.permafrost)
    axes[0, 2].imshow(pf, cmap=ListedColormap(["#f6e8c3", "#5ab4ac"]), extent=ext)
    axes[0, 2].contour(truth.fire > 0.3, levels=[0.5], colors="red", linewidths=0.6,
                       extent=(ext[0], ext[1], ext[3], ext[2]))
    axes[0, 2].set_title("Truth: permafrost within 1 m (teal), fire scars (red)")
    so = np.ma.masked_where(truth.soil_order == NODATA_CLASS, truth.soil_order)
    axes[1, 0].imshow(so, cmap=ListedColormap(_ORDER_COLOURS), vmin=-0.5, vmax=6.5,
                      interpolation="nearest", extent=ext)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in _ORDER_COLOURS]
    axes[1, 0].legend(handles, SOIL_ORDERS, fontsize=7, loc="lower left")
    axes[1, 0].set_title("Truth: soil order")
    surface_rgb, scene_rgb, day = rgbs
    lo, hi = 0.0, np.percentile(surface_rgb, 99.5, axis=(0, 1))
    axes[1, 1].imshow(np.clip((surface_rgb - lo) / (hi - lo), 0, 1), extent=ext)
    axes[1, 1].set_title(f"Summer surface, clear sky ({day}, 15 m)")
    axes[1, 3].imshow(np.clip((scene_rgb - lo) / (hi - lo), 0, 1), extent=ext)
    axes[1, 3].set_title(f"Sentinel-2-like scene as published ({day})")
    im = axes[0, 3].imshow(truth.snow_drift, cmap="Blues", extent=ext)
    fig.colorbar(im, ax=axes[0, 3], shrink=0.7)
    axes[0, 3].set_title("Context: snow drifted into lee slopes")
    axes[1, 2].imshow(shade, extent=ext, alpha=0.5)
    has_pf = pedons["permafrost"].notna().to_numpy()
    pts = pedons.geometry
    axes[1, 2].scatter(pts.x[~has_pf] / 1000, pts.y[~has_pf] / 1000, s=3, c="grey", label="order only")
    axes[1, 2].scatter(pts.x[has_pf] / 1000, pts.y[has_pf] / 1000, s=4,
                       c=np.where(pedons["permafrost"][has_pf].to_numpy(dtype=float) > 0, "#01665e",
                                  "#8c510a"), label="permafrost label (teal yes, brown no)")
    axes[1, 2].legend(fontsize=7, loc="lower left")
    axes[1, 2].set_title(f"Pedons (n={len(pedons)}): road, river and village bias")
    for ax in axes.ravel():
        ax.set_xlabel("x (km, EPSG:3338)")
        ax.set_ylabel("y (km)")
    fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=70, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
