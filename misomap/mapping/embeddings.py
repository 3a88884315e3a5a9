"""The embedding cube: MISO's per-pixel embeddings (what its heads read) as a Zarr store on the
cube's grid, for analysts who train their own models on them.

Layout (docs/outputs-embeddings.md): `<output>/embeddings.zarr` holds `embedding` (band, y, x)
float16, NaN = nodata (where the map is nodata), chunks (all bands, C, C), band names `emb_000`…,
coordinates and grid mapping as the map's; `<output>/_progress/embeddings/` the completion records;
`<output>/stac/` one STAC item naming the source cube and model digests. The chunk task shares the
map's inputs (misomap.mapping.chunk.chunk_inputs) and the one region writer; the store claims the
identity of its cube (content digest), grid and model, and refuses another's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pystac
import xarray as xr
from pyproj import CRS

from misomap import __version__
from misomap.core.config_base import StorageConfig
from misomap.core.errors import IncompleteInputError, MisomapError
from misomap.core.storage import Target
from misomap.cube.grid import ChunkWindow, Grid
from misomap.cube.reader import cube_grid, open_cube_cached
from misomap.mapping.chunk import chunk_inputs, output_grid
from misomap.mapping.config import MapConfig
from misomap.mapping.export import (
    EXTENSIONS,
    ZARR_MEDIA_TYPE,
    _epsg_code,
    _lonlat_bbox,
    _model_description,
    _slug,
    copy_model_files,
    imagery_period,
    input_cube_record,
    link_href,
    model_files,
)
from misomap.runtime.records import COMPLETE_ATTR
from misomap.runtime.zarr_io import mark_complete, open_group, write_region, write_template

log = logging.getLogger(__name__)

ARRAY = "embedding"
IDENTITY_ATTR = "misomap_embedding"
DTYPE = "float16"
LAYER = "head_input"
"""The embedding stored: the input of MISO's task heads (the fused visual embedding; plus the location
embedding for a `location.role: input` model) — the last representation both tasks share."""


class EmbeddingStoreError(MisomapError):
    """An embedding store is not the one asked for (another cube, grid or model) or cannot be written."""


def store_url(output: str) -> str:
    return f"{output.rstrip('/')}/embeddings.zarr"


def progress_url(output: str) -> str:
    return f"{output.rstrip('/')}/_progress/embeddings"


def band_names(dim: int) -> list[str]:
    """`emb_000`, `emb_001`, … for an embedding of `dim` values."""
    return [f"emb_{i:03d}" for i in range(dim)]


def cube_digest(location: str, storage: StorageConfig) -> str:
    """Identity of a finished cube's content: sha256 over its lineage and its complete mark (the
    digest of its chunks' completion records), so a rebuilt or other cube has another digest."""
    attrs = dict(open_cube_cached(location, storage).attrs)
    ident = {"lineage": attrs.get("misomap"), "complete": attrs.get(COMPLETE_ATTR)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def grid_identity(grid: Grid) -> dict[str, Any]:
    return {"crs": grid.crs, "resolution": grid.resolution, "bounds": list(grid.bounds)}


@dataclass(frozen=True)
class EmbedSpec:
    """What every embedding chunk task needs: the map section (cube, model, chunking), the output
    folder and storage."""

    map: MapConfig
    output: str
    storage: StorageConfig


def embed_chunk(region: ChunkWindow, spec: EmbedSpec) -> dict[str, Any]:
    """Embed one output chunk and write it; a pure function of (region, spec). Returns the chunk's
    completion record (the layout of the map's: `layers`, `sha256` of the written values)."""
    predictor, sub, window = chunk_inputs(region, spec.map, spec.storage)
    embed = getattr(predictor, "embed", None)
    if embed is None:
        raise EmbeddingStoreError(f"model {spec.map.model!r} has no embeddings: `misomap embed` needs MISO")
    values = embed(window.values, window.x, window.y, sub.x_coords(), sub.y_coords()).astype(DTYPE)
    write_region(Target(store_url(spec.output), spec.storage), {ARRAY: values},
                 slice(region.row0, region.row0 + region.height), slice(region.col0, region.col0 + region.width))
    return {"key": region.key, "valid_pixels": int(np.isfinite(values[0]).sum()), "layers": [ARRAY],
            "sha256": hashlib.sha256(values.tobytes()).hexdigest()}


def identity(cfg: MapConfig, storage: StorageConfig, model_sha256: str, dim: int) -> dict[str, Any]:
    """What an embedding store is made from: cube (location and content digest), grid, model digest,
    layer, dtype and size; stored in the store's attributes and compared on every run and read."""
    return {"cube": cfg.cube, "cube_sha256": cube_digest(cfg.cube, storage),
            "grid": grid_identity(output_grid(cfg, storage)), "model": cfg.model,
            "model_sha256": model_sha256, "layer": LAYER, "dim": dim, "dtype": DTYPE,
            "chunk_px": cfg.chunk_px}


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    out = []
    for key, what in (("cube_sha256", "cube"), ("grid", "grid"), ("model_sha256", "model")):
        a, b = stored.get(key), wanted.get(key)
        if a != b:
            show = (lambda v: str(v)[:16]) if key != "grid" else (lambda v: json.dumps(v))
            out.append(f"{what} {show(a)} != {show(b)}")
    return out


def ensure_template(target: Target, grid: Grid, chunk_px: int, zarr_format: int,
                    ident: dict[str, Any]) -> bool:
    """Write the store's metadata unless a store of the same identity exists; True if written. A store
    of another cube, grid or model is refused, naming both digests; nothing is changed."""
    group = open_group(target)
    if group is not None and IDENTITY_ATTR in group.attrs:
        stored = dict(group.attrs[IDENTITY_ATTR])
        if stored == ident:
            return False
        diff = _differences(stored, ident) or ["settings differ"]
        raise EmbeddingStoreError(f"{target.url} holds embeddings of another input ({'; '.join(diff)}; stored "
                                  "!= this run): nothing was changed; pass --overwrite or pick another output")
    if group is not None and len(list(group.keys())):
        raise EmbeddingStoreError(f"{target.url} is a Zarr store not written by `misomap embed`: nothing was "
                                  "changed; pick another output")
    h, w = grid.shape
    dim = int(ident["dim"])
    crs_attr = {"_CRS": {"wkt": CRS.from_user_input(grid.crs).to_wkt()}}
    coords = {"band": ("band", np.array(band_names(dim), dtype=object)),  # vlen-utf8, as the cube's
              "y": ("y", grid.y_coords(), {"units": "m", "standard_name": "projection_y_coordinate", "axis": "Y"}),
              "x": ("x", grid.x_coords(), {"units": "m", "standard_name": "projection_x_coordinate", "axis": "X"}),
              "spatial_ref": ((), 0, grid.spatial_ref_attrs())}
    chunks = (dim, chunk_px, chunk_px)
    attrs = {"long_name": f"MISO embedding ({LAYER}: the input of the task heads)", "units": "1",
             "grid_mapping": "spatial_ref", **crs_attr}
    ds = xr.Dataset({ARRAY: (("band", "y", "x"), da.zeros((dim, h, w), chunks=chunks, dtype=DTYPE), attrs)},
                    coords=coords, attrs={"Conventions": "CF-1.10", "title": "misomap MISO embeddings",
                                          "misomap_status": "incomplete", IDENTITY_ATTR: ident})
    enc: dict[str, Any] = {ARRAY: {"dtype": DTYPE, "chunks": chunks, "_FillValue": np.float16(np.nan)}}
    if zarr_format == 3:
        enc[ARRAY]["fill_value"] = np.float16(np.nan)
    write_template(target, ds, enc, zarr_format, consolidated=True)
    log.info("wrote embedding template %s (%d bands, %d x %d px, chunks %d)", target.url, dim, h, w, chunk_px)
    return True


def mark_embeddings_complete(target: Target, records_digest: str) -> None:
    mark_complete(target, {"misomap_status": "complete", COMPLETE_ATTR: records_digest}, "embeddings",
                  "misomap embed")


def open_embeddings(url: str, storage: StorageConfig | None = None, cube: str | None = None,
                    model_sha256: str | None = None) -> xr.DataArray:
    """The finished embedding cube at `url` (a store or its output folder) as a lazy DataArray
    (band, y, x). With `cube` (a cube location) and/or `model_sha256`, refuse embeddings made from
    another cube, grid or model, naming both digests."""
    storage = storage or StorageConfig()
    url = url.rstrip("/")
    if not url.endswith(".zarr"):
        url = store_url(url)
    target = Target(url, storage)
    group = open_group(target)
    if group is None or IDENTITY_ATTR not in group.attrs:
        raise EmbeddingStoreError(f"no embedding store at {url}: run `misomap embed` first")
    if COMPLETE_ATTR not in group.attrs:
        raise IncompleteInputError(f"embeddings {url} are unfinished: rerun `misomap embed` with its config")
    stored = dict(group.attrs[IDENTITY_ATTR])
    wanted = dict(stored)
    if cube is not None:
        wanted |= {"cube_sha256": cube_digest(cube, storage),
                   "grid": grid_identity(cube_grid(open_cube_cached(cube, storage)))}
    if model_sha256 is not None:
        wanted["model_sha256"] = model_sha256
    diff = _differences(stored, wanted)
    if diff:
        raise EmbeddingStoreError(f"embeddings {url} were made from another input ({'; '.join(diff)}; "
                                  "stored != asked): re-embed with `misomap embed`")
    return xr.open_zarr(target.zarr_store(read_only=True))[ARRAY]


def write_embedding_stac(cfg: MapConfig, storage: StorageConfig, output: str, name: str) -> str:
    """One self-contained STAC item (relative hrefs) `<output>/stac/<id>.json` describing a finished
    embedding cube: the Zarr store, the model file(s) with checksums (MLM extension), the source
    cube as a `derived_from` link, and the cube and model digests; returns its URL."""
    group = open_group(Target(store_url(output), storage))
    if group is None or COMPLETE_ATTR not in group.attrs:
        raise IncompleteInputError(f"embeddings {store_url(output)} are unfinished: nothing to describe")
    ident = dict(group.attrs[IDENTITY_ATTR])
    grid = output_grid(cfg, storage)
    start, end = imagery_period(open_cube_cached(cfg.cube, storage), cfg.cube)
    bbox = _lonlat_bbox(grid)
    geometry = {"type": "Polygon", "coordinates": [[[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]],
                                                    [bbox[0], bbox[3]], [bbox[0], bbox[1]]]]}
    item_dir = f"{output.rstrip('/')}/stac"
    here = cfg.model_copy(update={"output": output})  # model files travel with the store, as a map's do
    with tempfile.TemporaryDirectory() as tmp:
        copy_model_files(here, storage, Path(tmp))
    models = {link_href(path, output, item_dir): path for path in model_files(here, storage)}
    mlm, model_assets = _model_description(cfg, storage, {h: p for h, p in models.items() if h is not None})
    dim = int(ident["dim"])
    if mlm:  # what the model gives here: the heads' input, not class probabilities
        mlm["mlm:tasks"] = ["embedding"]
        mlm["mlm:output"] = [{"name": ARRAY, "tasks": ["embedding"],
                              "result": {"shape": [-1, dim], "dim_order": ["batch", "embedding"],
                                         "data_type": DTYPE},
                              "description": f"{LAYER}: the input of the task heads, per pixel"}]
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    item_id = f"{_slug(name)}-miso-embeddings-{digest[:12]}"
    item = pystac.Item(id=item_id, geometry=geometry, bbox=bbox, datetime=None, properties={
        "start_datetime": start, "end_datetime": end, "title": f"{name}: MISO embeddings ({dim} bands)",
        "gsd": grid.resolution, "misomap:version": __version__, "misomap:model": cfg.model,
        "misomap:cube_sha256": ident["cube_sha256"], "misomap:model_sha256": ident["model_sha256"],
        "misomap:embedding": {"layer": LAYER, "dim": dim, "dtype": DTYPE, "nodata": "NaN"},
        "proj:code": _epsg_code(grid), "proj:shape": list(grid.shape), "proj:transform": list(grid.transform)[:6],
        "proj:bbox": list(grid.bounds), **mlm})
    item.stac_extensions = [EXTENSIONS[k] for k in ("proj", "raster", "eo", "file")]
    if mlm:
        item.stac_extensions.append(EXTENSIONS["mlm"])
    item.add_asset("zarr", pystac.Asset(
        href="../embeddings.zarr", media_type=ZARR_MEDIA_TYPE, roles=["data"],
        title=f"MISO embeddings (Zarr, `{ARRAY}` (band, y, x) {DTYPE}, NaN = nodata)",
        extra_fields={"eo:bands": [{"name": b} for b in band_names(dim)],
                      "raster:bands": [{"name": b, "data_type": DTYPE, "nodata": "nan"} for b in band_names(dim)]}))
    for key, asset in model_assets.items():
        item.add_asset(key, asset)
    cube_href = link_href(cfg.cube, output, item_dir)
    if cube_href is not None:
        item.add_link(pystac.Link("derived_from", cube_href, media_type=ZARR_MEDIA_TYPE,
                                  title=f"input cube (sha256 {ident['cube_sha256'][:16]})"))
    else:  # a local cube outside this folder: named by the digest above, never by a local path
        item.properties["misomap:input_cube"] = input_cube_record(cfg, storage)
    item.set_self_href(None)
    url = f"{item_dir}/{item_id}.json"
    Target(url, storage).write_bytes(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False),
                                                indent=1).encode())
    return url
