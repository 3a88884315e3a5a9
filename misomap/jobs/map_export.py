"""Exports of a finished map: a Cloud-Optimized GeoTIFF per layer, a STAC collection, a quicklook.

Everything is derived from the Zarr store chunk by chunk, so memory stays flat as maps grow, and
contains no timestamps, so a rerun produces identical files.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pystac
import rasterio
import zarr
from pyproj import Transformer
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from misomap import __version__
from misomap.classes import SOIL_ORDERS
from misomap.config import RunConfig
from misomap.cube.grid import Grid
from misomap.jobs.map_layers import CLASS_COLOURS, LAYERS, NODATA, PROB_SCALE, Layer
from misomap.storage import atomic_put, staging_dir

log = logging.getLogger(__name__)


def export_all(config: RunConfig, grid: Grid) -> dict[str, str]:
    """Write COGs (if configured), the STAC collection and the quicklook; return their URLs."""
    from misomap.jobs.predict import map_config, zarr_url

    cfg = map_config(config)
    options = config.storage.options_for(cfg.output)
    group = zarr.open_group(zarr_url(cfg), mode="r", storage_options=options or None)
    fs, root = fsspec.core.url_to_fs(cfg.output, **options)
    written: dict[str, str] = {}
    with staging_dir("misomap-export") as tmp:
        if cfg.cogs:
            for layer in LAYERS:
                local = Path(tmp) / f"{layer.name}.tif"
                write_cog(group[layer.name], layer, grid, local, Path(tmp))
                written[layer.name] = _upload(fs, local, f"{root}/cogs/{layer.name}.tif")
        png = Path(tmp) / "quicklook.png"
        write_quicklook(group, png)
        written["quicklook"] = _upload(fs, png, f"{root}/quicklook.png")
        stac_dir = Path(tmp) / "stac"
        write_stac(config, grid, fs, root, stac_dir)
        for path in sorted(stac_dir.rglob("*.json"), key=lambda p: (p.name == "collection.json", p)):
            _upload(fs, path, f"{root}/stac/{path.relative_to(stac_dir)}")
        written["stac"] = f"{cfg.output}/stac/collection.json"
    for name, url in written.items():
        log.info("map output %-24s %s", name, url)
    return written


def _upload(fs: fsspec.AbstractFileSystem, local: Path, remote: str) -> str:
    return atomic_put(fs, local, remote)


def write_cog(arr: zarr.Array, layer: Layer, grid: Grid, dst: Path, tmp: Path) -> None:
    """One layer as a valid COG: tiled, deflate, overviews, nodata 255, colour table for classes."""
    count = arr.shape[0] if layer.per_class else 1
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": count,
               "dtype": "uint8", "crs": grid.crs, "transform": grid.transform, "nodata": NODATA,
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
    staging = tmp / f"{layer.name}.staging.tif"
    step = arr.chunks[-1]
    with rasterio.open(staging, "w", **profile) as dst_ds:
        for r in range(0, grid.height, step):
            for c in range(0, grid.width, step):
                h, w = min(step, grid.height - r), min(step, grid.width - c)
                block = np.asarray(arr[..., r:r + h, c:c + w])
                dst_ds.write(block if block.ndim == 3 else block[None], window=Window(c, r, w, h))
        names = SOIL_ORDERS if layer.per_class else (layer.name,)
        for i, name in enumerate(names, start=1):
            dst_ds.set_band_description(i, name)
        if layer.is_probability:
            dst_ds.scales = (PROB_SCALE,) * count
            dst_ds.offsets = (0.0,) * count
        dst_ds.update_tags(long_name=layer.attrs["long_name"], software=f"misomap {__version__}")
    colormap = None
    if layer.name in CLASS_COLOURS:
        colormap = {i: (*rgb, 255) for i, rgb in enumerate(CLASS_COLOURS[layer.name])}
    cog_translate(staging, dst, cog_profiles.get("deflate"), nodata=NODATA, quiet=True,
                  overview_resampling="nearest" if not layer.is_probability else "average",
                  colormap=colormap, forward_band_tags=True, in_memory=False)
    staging.unlink()


def _lonlat_bbox(grid: Grid) -> list[float]:
    tr = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return [round(v, 7) for v in tr.transform_bounds(*grid.bounds, densify_pts=21)]


def _file_info(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any]:
    with fs.open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    return {"file:size": fs.size(path), "file:checksum": "1220" + digest}


def write_stac(config: RunConfig, grid: Grid, fs: fsspec.AbstractFileSystem, root: str, out: Path) -> None:
    """A self-contained STAC collection with one item: the Zarr store and every COG as assets."""
    from misomap.jobs.predict import map_config

    cfg = map_config(config)
    bbox = _lonlat_bbox(grid)
    geometry = {"type": "Polygon", "coordinates": [[[bbox[0], bbox[1]], [bbox[2], bbox[1]],
                                                    [bbox[2], bbox[3]], [bbox[0], bbox[3]],
                                                    [bbox[0], bbox[1]]]]}
    item = pystac.Item(id=f"{config.name}-soil-map", geometry=geometry, bbox=bbox, datetime=None,
                       properties={"start_datetime": "1970-01-01T00:00:00Z",
                                   "end_datetime": "1970-01-01T00:00:00Z",
                                   "misomap:model": cfg.model, "misomap:version": __version__,
                                   "proj:code": _epsg_code(grid), "proj:shape": list(grid.shape),
                                   "proj:transform": list(grid.transform)[:6],
                                   "proj:bbox": list(grid.bounds)})
    item.stac_extensions = [
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
        "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    ]
    item.add_asset("zarr", pystac.Asset(href=f"{cfg.output}/map.zarr", media_type="application/vnd+zarr",
                                        roles=["data"], title="all layers (Zarr)"))
    if cfg.cogs:
        for layer in LAYERS:
            path = f"{root}/cogs/{layer.name}.tif"
            bands = [{"nodata": NODATA, "data_type": "uint8",
                      **({"scale": PROB_SCALE, "offset": 0.0} if layer.is_probability else {})}]
            item.add_asset(layer.name, pystac.Asset(
                href=f"{cfg.output}/cogs/{layer.name}.tif", roles=["data"], title=layer.attrs["long_name"],
                media_type=pystac.MediaType.COG,
                extra_fields={"raster:bands": bands * (len(SOIL_ORDERS) if layer.per_class else 1),
                              **_file_info(fs, path)}))
    item.add_asset("quicklook", pystac.Asset(href=f"{cfg.output}/quicklook.png", roles=["overview"],
                                             media_type=pystac.MediaType.PNG))
    item.add_link(pystac.Link("derived_from", cfg.cube, media_type="application/vnd+zarr",
                              title="input cube"))
    if cfg.model_path:
        item.add_link(pystac.Link("via", cfg.model_path, title=f"{cfg.model} model file"))
    collection = pystac.Collection(
        id=f"{config.name}-soil-maps", description="misomap soil-order and permafrost maps",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[None, None]])),
        license="CC-BY-4.0")
    collection.add_item(item)
    collection.normalize_hrefs(str(out))
    collection.make_all_asset_hrefs_absolute()
    collection.save(pystac.CatalogType.SELF_CONTAINED, dest_href=str(out))
    # pystac names the collection file collection.json and the item <id>/<id>.json


def _epsg_code(grid: Grid) -> str | None:
    from pyproj import CRS

    epsg = CRS.from_user_input(grid.crs).to_epsg()
    return f"EPSG:{epsg}" if epsg else None


def write_quicklook(group: zarr.Group, dst: Path, max_px: int = 800) -> None:
    """Permafrost probability and soil order side by side, with a colour bar and a class legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    pf = group["permafrost_probability"]
    step = max(1, int(np.ceil(max(pf.shape) / max_px)))
    prob = np.asarray(pf[::step, ::step]).astype(np.float32)
    prob[prob == NODATA] = np.nan
    cls = np.asarray(group["soil_order_class"][::step, ::step]).astype(np.float32)
    cls[cls == NODATA] = np.nan
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), constrained_layout=True)
    im = axes[0].imshow(prob * PROB_SCALE, cmap="Blues", vmin=0, vmax=1)
    axes[0].set_title("P(near-surface permafrost)")
    fig.colorbar(im, ax=axes[0], shrink=0.8)
    colours = np.array(CLASS_COLOURS["soil_order_class"]) / 255.0
    axes[1].imshow(cls, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(SOIL_ORDERS) - 0.5,
                   interpolation="nearest")
    axes[1].set_title("Soil order")
    axes[1].legend(handles=[Patch(color=colours[i], label=n) for i, n in enumerate(SOIL_ORDERS)],
                   loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(dst, dpi=100, metadata={"Software": None})
    plt.close(fig)
