"""Exports of a finished map: a Cloud-Optimized GeoTIFF per layer, a STAC collection, a quicklook.

Everything is derived from the Zarr store chunk by chunk, so memory stays flat as maps grow, and
contains no timestamps of the run, so a rerun produces identical files. The STAC catalog is
self-contained with relative hrefs: the output folder can be copied anywhere (another disk, S3)
and every asset still resolves; the cube and model links are relative too when they live on the
same store as the output.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import fsspec
import numpy as np
import pystac
import rasterio
import xarray as xr
import zarr
from pyproj import CRS, Transformer
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from misomap import __version__
from misomap.core.classes import PERMAFROST_CLASSES, SOIL_ORDERS
from misomap.core.config_base import StorageConfig
from misomap.core.errors import MisomapError
from misomap.core.storage import Target, is_remote, staging_dir
from misomap.cube.grid import Grid
from misomap.cube.reader import open_cube_cached
from misomap.mapping.chunk import zarr_url
from misomap.mapping.config import MapConfig
from misomap.mapping.layers import (
    CLASS_DESCRIPTIONS,
    LAYERS,
    NODATA,
    NODATA_COLOUR,
    PERMAFROST_COLOURS,
    PROB_SCALE,
    SOIL_ORDER_COLOURS,
    Layer,
)
from misomap.mapping.predictors.api import get_predictor, model_paths

log = logging.getLogger(__name__)

PRODUCT = "soil-permafrost-map"
ZARR_MEDIA_TYPE = "application/vnd+zarr"
EXTENSIONS = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
    "mlm": "https://stac-extensions.github.io/mlm/v1.4.0/schema.json",
}
# how each built-in model is described by the MLM extension: architecture, framework, file format
MODEL_KINDS: dict[str, tuple[str, str, str]] = {
    "rf": ("Random Forest (one forest per target)", "scikit-learn", "skops"),
    "miso": ("MISO: Swin-V2 imagery and covariate encoders, LIIF queries, Space2Vec location encoder",
             "PyTorch", "safetensors"),
    "auto": ("per target the best of RF, MISO and their logistic stack by nested spatial validation",
             "", "file"),
}


class MapExportError(MisomapError):
    """The map cannot be described truthfully (e.g. the cube records no imagery dates)."""


def imagery_period(cube: xr.Dataset, url: str) -> tuple[str, str]:
    """The [start, end] of the imagery behind the cube, from its lineage attributes: the items'
    acquisition times, else (cubes built before those were recorded) the searched range."""
    lineage = cube.attrs.get("misomap") or {}
    if lineage.get("imagery_datetime"):
        start, end = lineage["imagery_datetime"]
        return start, end
    searched = (lineage.get("search") or {}).get("datetime")
    if searched:
        start, end = searched.split("/")
        return _iso(start, "T00:00:00Z"), _iso(end, "T23:59:59Z")
    raise MapExportError(f"cube {url} records no imagery dates (attribute misomap.imagery_datetime or "
                         "misomap.search.datetime): build it with `misomap cube build`, or add "
                         "misomap={'imagery_datetime': [start, end]} to its attributes")


def _iso(value: str, time_of_day: str) -> str:
    return value if "T" in value else value + time_of_day


def check_exportable(cfg: MapConfig, storage: StorageConfig) -> None:
    """Refuse before any work a cube whose map could not carry true dates."""
    imagery_period(open_cube_cached(cfg.cube, storage), cfg.cube)


def export_all(cfg: MapConfig, storage: StorageConfig, name: str, grid: Grid) -> dict[str, str]:
    """Write COGs (if configured), the quicklook and last the STAC collection of run `name`'s map;
    return their URLs."""
    group = zarr.open_group(Target(zarr_url(cfg), storage).zarr_store(read_only=True), mode="r")
    out = Target(cfg.output, storage)
    fs, root = out.fs, out.path
    written: dict[str, str] = {}
    with staging_dir("misomap-export") as tmp:
        if cfg.cogs:
            for layer in LAYERS:
                local = Path(tmp) / f"{layer.name}.tif"
                write_cog(group[layer.name], layer, grid, local, Path(tmp))
                written[layer.name] = out.join("cogs", local.name).atomic_put(local)
                if layer.classes:
                    aux = local.with_name(local.name + ".aux.xml")
                    written[f"{layer.name}_categories"] = out.join("cogs", aux.name).atomic_put(aux)
        written.update(copy_model_files(cfg, storage, Path(tmp)))
        png = Path(tmp) / "quicklook.png"
        write_quicklook(group, png, f"{name}: soil order and permafrost, model {cfg.model}")
        written["quicklook"] = out.join("quicklook.png").atomic_put(png)
        stac_dir = Path(tmp) / "stac"
        write_stac(cfg, storage, name, grid, str(group.attrs["misomap_run_hash"]), fs, root, stac_dir)
        for path in sorted(stac_dir.rglob("*.json"), key=lambda p: (p.name == "collection.json", p)):
            out.join("stac", str(path.relative_to(stac_dir))).atomic_put(path)
        written["stac"] = f"{cfg.output}/stac/collection.json"
    for part, url in written.items():
        log.info("map output %-28s %s", part, url)
    return written


def write_cog(arr: zarr.Array, layer: Layer, grid: Grid, dst: Path, tmp: Path) -> None:
    """One layer as a valid COG: tiled, deflate, overviews, nodata 255, band names; class layers
    carry a colour table and GDAL category names (in the `.aux.xml` beside the COG)."""
    count = len(layer.band_names)
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
        for i, name in enumerate(layer.band_names, start=1):
            dst_ds.set_band_description(i, name)
        if layer.is_probability:
            dst_ds.scales = (PROB_SCALE,) * count
            dst_ds.offsets = (0.0,) * count
        if layer.colours:
            # on the source, so the COG copies it (passing it to cog_translate warns "Palette")
            dst_ds.write_colormap(1, {i: (*rgb, 255) for i, rgb in enumerate(layer.colours)})
        dst_ds.update_tags(long_name=layer.attrs["long_name"], software=f"misomap {__version__}")
        for i, tags in enumerate(band_tags(layer), start=1):
            dst_ds.update_tags(i, **tags)
    cog_translate(staging, dst, cog_profiles.get("deflate"), nodata=NODATA, quiet=True,
                  overview_resampling="nearest" if not layer.is_probability else "average",
                  forward_band_tags=True, in_memory=False)
    staging.unlink()
    if layer.classes:
        dst.with_name(dst.name + ".aux.xml").write_text(category_names_xml(layer.classes))


def band_tags(layer: Layer) -> list[dict[str, str]]:
    """Per-band metadata kept inside the GeoTIFF (GDAL's GDAL_METADATA TIFF tag), so the `.tif` copied
    alone still names what its codes mean: `class_<code>` per class and the nodata code, or the unit
    and scale of a probability band. (GDAL category names and raster attribute tables of a GeoTIFF
    live only in the `.aux.xml` side file.)"""
    if layer.classes:
        return [{**{f"class_{i}": name for i, name in enumerate(layer.classes)},
                 f"class_{NODATA}": "nodata", "flag_meanings": " ".join(layer.classes)}]
    return [{"band_name": name, "units": "percent" if layer.is_probability else "1",
             "stored": f"uint8 percent: value = code * {PROB_SCALE}; {NODATA} = nodata"}
            for name in layer.band_names]


def category_names_xml(classes: tuple[str, ...]) -> str:
    """GDAL's persistent auxiliary metadata (PAM) naming band 1's classes: what GDAL itself writes
    for SetCategoryNames on a GeoTIFF, read by GDAL and QGIS from beside the file."""
    names = "".join(f"      <Category>{escape(n)}</Category>\n" for n in classes)
    return ('<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n'
            f"{names}    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n")


def _lonlat_bbox(grid: Grid) -> list[float]:
    tr = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return [round(v, 7) for v in tr.transform_bounds(*grid.bounds, densify_pts=21)]


def _file_info(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any]:
    """file:size and file:checksum (sha2-256 multihash) of a written file."""
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"file:size": fs.size(path), "file:checksum": "1220" + digest.hexdigest()}


def _absolute(location: str) -> str:
    return location if is_remote(location) else os.path.abspath(location.removeprefix("file://"))


def link_href(target: str, output: str, item_dir: str) -> str | None:
    """How the STAC item in `item_dir` may point at `target` so that the map folder `output`, copied
    alone anywhere, never dangles nor names a path of the machine that wrote it: relative when the
    target is inside the folder, its URL when it is remote (it resolves from anywhere), else None."""
    target, output, item_dir = _absolute(target), _absolute(output), _absolute(item_dir)
    if target == output or target.startswith(output.rstrip("/") + "/"):
        return posixpath.relpath(target.split("://", 1)[-1], item_dir.split("://", 1)[-1])
    return target if is_remote(target) else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def stac_ids(cfg: MapConfig, name: str, run_hash: str) -> tuple[str, str]:
    """(collection id, item id): one collection per run name, product and model; one item per run
    version (the run hash covers the map settings and the model file's digest)."""
    collection_id = f"{_slug(name)}-{PRODUCT}-{_slug(cfg.model)}"
    return collection_id, f"{collection_id}-{run_hash[:12]}"


def _hex(rgb: tuple[int, int, int]) -> str:
    return "".join(f"{v:02X}" for v in rgb)


def _classes(layer: Layer) -> list[dict[str, Any]]:
    """Classification-extension class objects: value, name, colour; and the nodata value."""
    objs = [{"value": i, "name": name, "title": name, "description": text, "color_hint": _hex(rgb)}
            for i, (name, rgb, text) in enumerate(zip(layer.classes, layer.colours,
                                                      CLASS_DESCRIPTIONS[layer.name], strict=True))]
    return objs + [{"value": NODATA, "name": "nodata", "title": "no data", "nodata": True,
                    "description": "no prediction (no input data)", "color_hint": _hex(NODATA_COLOUR)}]


def _layer_fields(layer: Layer) -> dict[str, Any]:
    """Extension fields of a layer's COG asset (also its item_assets definition)."""
    band = {"nodata": NODATA, "data_type": "uint8", "sampling": "area",
            **({"scale": PROB_SCALE, "offset": 0.0} if layer.is_probability else {})}
    fields: dict[str, Any] = {"raster:bands": [band] * len(layer.band_names)}
    if layer.per_class:
        fields["eo:bands"] = [{"name": n} for n in layer.band_names]
    if layer.classes:
        fields["classification:classes"] = _classes(layer)
    return fields


def _model_description(cfg: MapConfig, storage: StorageConfig, files: dict[str, str]
                       ) -> tuple[dict[str, Any], dict[str, pystac.Asset]]:
    """MLM properties of the model that made the map, and one asset per model file (`files`: the
    URL to describe each file by, keyed by its href); empty when the model has no file, e.g. a
    code-only custom predictor."""
    if not files:
        return {}, {}
    predictor = get_predictor(cfg, storage)
    architecture, framework, artifact = MODEL_KINDS.get(cfg.model, (cfg.model, "", "file"))
    bands = list(predictor.bands)
    tile = _input_px(predictor)
    spatial = ([tile, tile], ["height", "width"]) if tile else ([], [])
    classes = {"permafrost": ("permafrost_class", PERMAFROST_CLASSES, PERMAFROST_COLOURS),
               "soil_order": ("soil_order_class", SOIL_ORDERS, SOIL_ORDER_COLOURS)}
    props: dict[str, Any] = {
        "mlm:name": f"misomap-{_slug(cfg.model)}",
        "mlm:architecture": architecture,
        "mlm:tasks": ["classification", "semantic-segmentation"] if tile else ["classification"],
        "mlm:input": [{"name": "cube", "bands": bands,
                       "input": {"shape": [-1, len(bands), *spatial[0]],
                                 "dim_order": ["batch", "bands", *spatial[1]], "data_type": "float32"},
                       "description": "cube bands (float32, NaN = nodata)"
                                      + (f"; tiles of {tile} px" if tile else "; one pixel per sample")}],
        "mlm:output": [{"name": target, "tasks": ["classification"],
                        "result": {"shape": [-1, len(names), *spatial[0]],
                                   "dim_order": ["batch", "classes", *spatial[1]], "data_type": "float32"},
                        "classification:classes": [
                            {"value": i, "name": n, "description": text, "color_hint": _hex(rgb)}
                            for i, (n, rgb, text) in enumerate(zip(names, colours, CLASS_DESCRIPTIONS[layer],
                                                                   strict=True))]}
                       for target, (layer, names, colours) in classes.items()],
    }
    if framework:
        props["mlm:framework"] = framework
    props.update(getattr(predictor, "stac_properties", {}))  # e.g. auto's winner per target
    assets = {}
    for href, path in files.items():
        model_file = Target(path, storage)
        fs, fpath = model_file.fs, model_file.path
        name = posixpath.basename(fpath)
        assets["model_" + _slug(name.rsplit(".", 1)[0]).replace("-", "_")] = pystac.Asset(
            href=href, title=f"{cfg.model} model file {name}", roles=["mlm:model"],
            media_type="application/octet-stream",
            extra_fields={"mlm:artifact_type": artifact, "raster:bands": [{"name": b} for b in bands],
                          **_file_info(fs, fpath)})
    return props, assets


def _input_px(predictor: Any) -> int | None:
    """Side of the square input the predictor's model sees (MISO's tiles); None for per-pixel models."""
    grid = getattr(getattr(predictor, "dense", None), "grid", None)
    return int(grid.tile) if grid is not None else None


MODEL_DIR = "model"
"""Where a map folder keeps a copy of its local model file(s), so its STAC item can describe the
model (MLM) by a relative href that survives copying the folder alone."""


def model_files(cfg: MapConfig, storage: StorageConfig) -> list[str]:
    """The model file(s) the item describes: remote files where they are, local ones by their copy
    inside the map folder (made by `copy_model_files`)."""
    out = Target(cfg.output, storage)
    return [path if is_remote(path) else out.join(MODEL_DIR, posixpath.basename(path)).url
            for path in model_paths(cfg)]


def copy_model_files(cfg: MapConfig, storage: StorageConfig, tmp: Path) -> dict[str, str]:
    """Copy each local model file into `<output>/model/` (atomically); return their URLs by name."""
    written = {}
    for path in model_paths(cfg):
        if is_remote(path):
            continue
        name = posixpath.basename(path)
        local = tmp / f"model-{name}"
        src = Target(path, storage)
        src.fs.get_file(src.path, str(local))
        written[f"model {name}"] = Target(cfg.output, storage).join(MODEL_DIR, name).atomic_put(local)
        local.unlink()
    return written


def input_cube_record(cfg: MapConfig, storage: StorageConfig) -> dict[str, Any]:
    """The input cube named without a local path: its folder name and its build fingerprint."""
    lineage = open_cube_cached(cfg.cube, storage).attrs.get("misomap") or {}
    record = {"name": posixpath.basename(cfg.cube.rstrip("/")),
              "note": "a local cube outside this map folder: not linked, identified by its name and "
                      "misomap build fingerprint"}
    if lineage.get("fingerprint"):
        record["fingerprint"] = str(lineage["fingerprint"])
    return record


def write_stac(cfg: MapConfig, storage: StorageConfig, name: str, grid: Grid, run_hash: str,
               fs: fsspec.AbstractFileSystem, root: str, out: Path) -> None:
    """A self-contained STAC collection (relative hrefs) with one item per map run: the Zarr store,
    every COG (with band and class names), the quicklook and the model file(s) as assets."""
    collection_id, item_id = stac_ids(cfg, name, run_hash)
    start, end = imagery_period(open_cube_cached(cfg.cube, storage), cfg.cube)
    bbox = _lonlat_bbox(grid)
    geometry = {"type": "Polygon", "coordinates": [[[bbox[0], bbox[1]], [bbox[2], bbox[1]],
                                                    [bbox[2], bbox[3]], [bbox[0], bbox[3]],
                                                    [bbox[0], bbox[1]]]]}
    item_dir = f"{cfg.output.rstrip('/')}/stac/{item_id}"
    models = {link_href(path, cfg.output, item_dir): path for path in model_files(cfg, storage)}
    mlm, model_assets = _model_description(cfg, storage, {h: p for h, p in models.items() if h is not None})
    item = pystac.Item(id=item_id, geometry=geometry, bbox=bbox, datetime=None,
                       properties={"start_datetime": start, "end_datetime": end,
                                   "title": f"{name}: soil order and permafrost ({cfg.model})",
                                   "gsd": grid.resolution,
                                   "misomap:model": cfg.model, "misomap:version": __version__,
                                   "misomap:run_hash": run_hash,
                                   "proj:code": _epsg_code(grid), "proj:shape": list(grid.shape),
                                   "proj:transform": list(grid.transform)[:6],
                                   "proj:bbox": list(grid.bounds), **mlm})
    item.stac_extensions = [EXTENSIONS[k] for k in ("proj", "raster", "eo", "file", "classification")]
    if mlm:
        item.stac_extensions.append(EXTENSIONS["mlm"])
    up = "../.."  # from stac/<item>/ to the output folder
    item.add_asset("zarr", pystac.Asset(href=f"{up}/map.zarr", media_type=ZARR_MEDIA_TYPE, roles=["data"],
                                        title="all layers (Zarr, CF conventions)"))
    if cfg.cogs:
        for layer in LAYERS:
            item.add_asset(layer.name, pystac.Asset(
                href=f"{up}/cogs/{layer.name}.tif", roles=["data"], title=layer.attrs["long_name"],
                media_type=pystac.MediaType.COG,
                extra_fields={**_layer_fields(layer), **_file_info(fs, f"{root}/cogs/{layer.name}.tif")}))
            if layer.classes:
                aux = f"cogs/{layer.name}.tif.aux.xml"
                item.add_asset(f"{layer.name}_categories", pystac.Asset(
                    href=f"{up}/{aux}", roles=["metadata"], media_type=pystac.MediaType.XML,
                    title=f"GDAL class names of {layer.name}", extra_fields=_file_info(fs, f"{root}/{aux}")))
    item.add_asset("thumbnail", pystac.Asset(href=f"{up}/quicklook.png", roles=["thumbnail"],
                                             media_type=pystac.MediaType.PNG, title="quicklook",
                                             extra_fields=_file_info(fs, f"{root}/quicklook.png")))
    for key, asset in model_assets.items():
        item.add_asset(key, asset)
    cube_href = link_href(cfg.cube, cfg.output, item_dir)
    if cube_href is not None:
        item.add_link(pystac.Link("derived_from", cube_href, media_type=ZARR_MEDIA_TYPE, title="input cube"))
    else:  # a local cube outside the folder: named and fingerprinted, not linked (it would dangle)
        item.properties["misomap:input_cube"] = input_cube_record(cfg, storage)
    collection = _collection(cfg, name, collection_id, item, bbox, start, end)
    collection.add_item(item)
    collection.normalize_hrefs(str(out))
    collection.save(pystac.CatalogType.SELF_CONTAINED, dest_href=str(out))
    # pystac names the collection file collection.json and the item <id>/<id>.json


def _collection(cfg: MapConfig, name: str, collection_id: str, item: pystac.Item, bbox: list[float],
                start: str, end: str) -> pystac.Collection:
    """The collection describing the product: extent, providers, summaries, item_assets, thumbnail."""
    times = [pystac.utils.str_to_datetime(t) for t in (start, end)]
    collection = pystac.Collection(
        id=collection_id, title=f"misomap {PRODUCT} ({cfg.model}) — {name}",
        description=("Near-surface permafrost (within 1 m) and USDA soil-order maps of Alaska predicted by "
                     f"misomap with the {cfg.model!r} model: probabilities (percent, scale 0.01), classes, "
                     "and normalised entropies; uint8, 255 = nodata."),
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([times])),
        license="CC-BY-4.0", keywords=["soil", "permafrost", "soil order", "Alaska", "machine learning"],
        providers=[pystac.Provider(name="misomap", roles=[pystac.ProviderRole.PROCESSOR,
                                                           pystac.ProviderRole.PRODUCER],
                                   description=f"misomap {__version__} `predict`")],
        summaries=pystac.Summaries({"proj:code": [item.properties["proj:code"]],
                                    "gsd": [item.properties["gsd"]],
                                    "misomap:model": [cfg.model]}))
    collection.stac_extensions = [EXTENSIONS[k] for k in ("raster", "eo", "classification")]
    collection.item_assets = {
        key: pystac.ItemAssetDefinition.create(
            title=a.title, description=None, media_type=a.media_type, roles=a.roles,
            extra_fields={k: v for k, v in a.extra_fields.items() if not k.startswith("file:")})
        for key, a in item.assets.items() if "mlm:model" not in (a.roles or [])}
    collection.add_asset("thumbnail", pystac.Asset(href="../quicklook.png", roles=["thumbnail"],
                                                   media_type=pystac.MediaType.PNG, title="quicklook"))
    return collection


def _epsg_code(grid: Grid) -> str | None:
    epsg = CRS.from_user_input(grid.crs).to_epsg()
    return f"EPSG:{epsg}" if epsg else None


def write_quicklook(group: zarr.Group, dst: Path, title: str, max_px: int = 800) -> None:
    """Permafrost probability and soil order side by side under `title` (run and model), each panel
    named by its layer, with a colour bar, a class legend, and nodata in its own colour and legend
    entry (never a shade of the colour bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    nodata_rgb = np.array(NODATA_COLOUR) / 255.0
    nodata_patch = Patch(facecolor=nodata_rgb, edgecolor="0.3", label=f"no data ({NODATA})")
    pf = group["permafrost_probability"]
    step = max(1, int(np.ceil(max(pf.shape) / max_px)))
    raw_pf = np.asarray(pf[::step, ::step])
    raw_cls = np.asarray(group["soil_order_class"][::step, ::step])
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.8), constrained_layout=True)
    for ax, raw in zip(axes, (raw_pf, raw_cls), strict=True):
        ax.imshow(np.broadcast_to(nodata_rgb, (*raw.shape, 3)), interpolation="nearest")  # under the data
    prob = np.ma.masked_equal(raw_pf, NODATA).astype(np.float32) * PROB_SCALE
    im = axes[0].imshow(prob, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_title("permafrost_probability: P(near-surface permafrost)", fontsize=10)
    fig.colorbar(im, ax=axes[0], shrink=0.8)
    axes[0].legend(handles=[nodata_patch], loc="upper left", bbox_to_anchor=(0.0, -0.01), fontsize=8)
    colours = np.array(SOIL_ORDER_COLOURS) / 255.0
    axes[1].imshow(np.ma.masked_equal(raw_cls, NODATA), cmap=ListedColormap(colours), vmin=-0.5,
                   vmax=len(SOIL_ORDERS) - 0.5, interpolation="nearest")
    axes[1].set_title("soil_order_class: most probable soil order", fontsize=10)
    handles = [Patch(color=colours[i], label=n) for i, n in enumerate(SOIL_ORDERS)] + [nodata_patch]
    axes[1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=12)
    fig.savefig(dst, dpi=100, metadata={"Software": None})
    plt.close(fig)
