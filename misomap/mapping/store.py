"""The map's Zarr store: a template written once, then chunk regions written in place."""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from pyproj import CRS

from misomap.core.classes import SOIL_ORDERS
from misomap.core.errors import IncompleteInputError, MisomapError, OwnershipError
from misomap.core.storage import Target, is_remote
from misomap.cube import geozarr
from misomap.cube.grid import ChunkWindow, Grid
from misomap.mapping.layers import LAYERS, NODATA, PROB_SCALE
from misomap.runtime.records import COMPLETE_ATTR
from misomap.runtime.zarr_io import (
    claim,
    consolidate,
    mark_complete,
    open_group,
    write_region,
    write_template,
)

log = logging.getLogger(__name__)


class MapStoreError(MisomapError):
    """The output store exists but was made by a different run configuration or model."""


OVERVIEWS = "overviews"
"""Child group of the map store holding its overview levels, `overviews/<factor>/<layer>`."""


def overview_factors(chunk_px: int) -> tuple[int, ...]:
    """Overview levels (decimation factors 2, 4, 8, 16) whose chunks stay aligned with the map's
    chunks and at least 8 px wide: each map chunk then writes exactly one chunk of every level."""
    return tuple(f for f in (2, 4, 8, 16) if chunk_px % f == 0 and chunk_px // f >= 8)


def _layers_dataset(grid: Grid, coords_yx: dict[str, Any], spatial_ref: dict[str, Any], chunk_px: int,
                    crs_wkt: str, zarr_format: int, shape: tuple[int, int], attrs: dict[str, Any]
                    ) -> tuple[xr.Dataset, dict[str, Any]]:
    """Every layer, lazily, on one grid (the map's or an overview level's)."""
    h, w = shape
    coords = {**coords_yx,
              "soil_order": ("soil_order", np.arange(len(SOIL_ORDERS), dtype=np.uint8),
                             {"long_name": "soil order (USDA Soil Taxonomy)",
                              "flag_values": list(range(len(SOIL_ORDERS))),
                              "flag_meanings": " ".join(SOIL_ORDERS)}),
              "spatial_ref": ((), 0, spatial_ref)}
    data_vars, encoding = {}, {}
    for layer in LAYERS:
        dims = ("soil_order", "y", "x") if layer.per_class else ("y", "x")
        shape_ = (len(SOIL_ORDERS), h, w) if layer.per_class else (h, w)
        chunks = (len(SOIL_ORDERS), chunk_px, chunk_px) if layer.per_class else (chunk_px, chunk_px)
        data_vars[layer.name] = (dims, da.zeros(shape_, chunks=chunks, dtype="float32"),
                                 {**layer.attrs, "grid_mapping": "spatial_ref", "_CRS": {"wkt": crs_wkt},
                                  **geozarr.array_attrs(grid)})
        enc: dict[str, Any] = {"dtype": "uint8", "_FillValue": NODATA, "chunks": chunks}
        if zarr_format == 3:
            enc["fill_value"] = NODATA  # xarray sets v3's Zarr fill_value apart from the CF _FillValue
        if layer.is_probability:
            enc.update(scale_factor=PROB_SCALE, add_offset=0.0)
        encoding[layer.name] = enc
    return xr.Dataset(data_vars, coords=coords, attrs=attrs), encoding


def _axes(y: np.ndarray, x: np.ndarray) -> dict[str, Any]:
    return {"y": ("y", y, {"units": "m", "standard_name": "projection_y_coordinate", "axis": "Y"}),
            "x": ("x", x, {"units": "m", "standard_name": "projection_x_coordinate", "axis": "X"})}


def _template(grid: Grid, chunk_px: int, attrs: dict[str, Any],
              zarr_format: int) -> list[tuple[str | None, xr.Dataset, dict[str, Any]]]:
    """The store's lazy skeleton: (group, dataset, encoding) of the map and of each overview level.

    Every array's Zarr fill_value is NODATA (a missing chunk reads as nodata, never as class 0);
    classes are integer codes named by CF flags (no string arrays); the CRS is given as a CF grid
    mapping, as GDAL's `_CRS` attribute and as GeoZarr `proj:`/`spatial:` attributes, and the
    overview levels are listed by the GeoZarr `multiscales` attribute."""
    wkt = CRS.from_user_input(grid.crs).to_wkt()
    factors = overview_factors(chunk_px)
    root_attrs = {"Conventions": "CF-1.10", **attrs,
                  **geozarr.group_attrs(grid, geozarr.layout(grid, factors, OVERVIEWS))}
    out = [(None, *_layers_dataset(grid, _axes(grid.y_coords(), grid.x_coords()), grid.spatial_ref_attrs(), chunk_px,
                                   wkt, zarr_format, grid.shape, root_attrs))]
    for f in factors:
        level = geozarr.Level(grid, f)
        level_attrs = {"Conventions": "CF-1.10", "title": f"overview: every {f}th row and column",
                       "zarr_conventions": [geozarr.PROJ, geozarr.SPATIAL], **geozarr.proj_fields(grid),
                       "spatial:dimensions": geozarr.DIMENSIONS, **level.spatial_fields(),
                       "spatial:registration": "pixel"}
        out.append((f"{OVERVIEWS}/{f}", *_layers_dataset(grid, _axes(level.y_coords(), level.x_coords()),
                                                         level.spatial_ref_attrs(), chunk_px // f, wkt,
                                                         zarr_format, level.shape, level_attrs)))
    return out


def portable_location(location: str) -> str:
    """A location as a product may record it: a remote URL as it is, a local path by its last part
    only, so no output names a folder of the machine that wrote it."""
    if not location or is_remote(location):
        return location
    return posixpath.basename(location.removeprefix("file://").rstrip("/"))


def _output(target: Target) -> Target:
    """The map output folder of the map.zarr store `target`."""
    return Target(target.url.rsplit("/", 1)[0], target.storage)


CLAIM = "_progress/claim.json"
"""Written before the first template write: a map.zarr there without a run hash (a run killed while
writing its template) is then this output's own unfinished store, not foreign data."""


def ensure_template(target: Target, grid: Grid, chunk_px: int, zarr_format: int, attrs: dict[str, Any],
                    run_hash: str) -> bool:
    """Write the store's metadata unless a store from the same run exists; True if written.

    A store from a different configuration or model is refused rather than silently mixed.
    """
    group = open_group(target)
    if group is None or "misomap_run_hash" not in group.attrs:
        _output(target).join(CLAIM).write_bytes(json.dumps({"misomap_run_hash": run_hash}).encode())
    if not claim(target, group.attrs.get("misomap_run_hash") if group is not None else None, run_hash,
                 "a map", MapStoreError):
        return False
    for group, ds, encoding in _template(grid, chunk_px, {**attrs, "misomap_run_hash": run_hash}, zarr_format):
        write_template(target, ds, encoding, zarr_format, consolidated=False, group=group)
    consolidate(target)
    log.info("wrote map template %s (%d x %d px, chunks %d)", target.url, *grid.shape, chunk_px)
    return True


def write_chunk(target: Target, region: ChunkWindow, layers: dict[str, np.ndarray]) -> None:
    """Write encoded uint8 layers into their chunk-aligned region of the store, and every `f`-th row
    and column of them into each overview level's matching chunk (the levels the store lists)."""
    write_region(target, layers, slice(region.row0, region.row0 + region.height),
                 slice(region.col0, region.col0 + region.width))
    for f in stored_factors(target):
        write_region(target, {f"{OVERVIEWS}/{f}/{k}": v[..., ::f, ::f] for k, v in layers.items()},
                     slice(region.row0 // f, -(-(region.row0 + region.height) // f)),
                     slice(region.col0 // f, -(-(region.col0 + region.width) // f)))


def stored_factors(target: Target) -> tuple[int, ...]:
    """The overview factors a map store lists in its `multiscales` attribute (none in older maps)."""
    group = open_group(target)
    levels = ((group.attrs.get("multiscales") or {}).get("layout") or []) if group is not None else []
    return tuple(int(level["transform"]["scale"][0]) for level in levels)


MAP_PARTS = frozenset({"map.zarr", "_progress", "cogs", "stac", "quicklook.png", "viewer", "model"})
"""What a map output folder holds; anything else there means the folder is not (only) ours."""


def check_map_owned(output: Target) -> None:
    """Refuse, before any write, a map output folder holding anything a map run did not write."""
    if not output.exists():
        return
    if output.is_file():
        raise OwnershipError(f"map.output {output.url} is an existing file: nothing was changed; "
                             "pick a folder")
    names = set(output.list())
    foreign = sorted(names - MAP_PARTS)
    if not foreign and "map.zarr" in names and not output.join(CLAIM).exists():
        group = open_group(output.join("map.zarr"))
        if group is None:
            foreign = ["map.zarr (not a Zarr group)"]
        elif "misomap_run_hash" not in group.attrs:
            foreign = ["map.zarr (no misomap run hash)"]
    if foreign:
        raise OwnershipError(f"map.output {output.url} holds {', '.join(foreign[:3])} not written by a "
                             "misomap map run: nothing was changed; pick a new or empty output folder")


CHUNKS, FILES = "_progress/chunks.json", "_progress/files.json"
"""The map's chunk manifest ({"layers", "chunks": {key: sha256}}, from its completion records,
vouched for by the complete mark) and its file manifest (sha256 of every product file, written
once the exports are)."""
MANIFEST_ATTR = "misomap_chunk_manifest_sha256"


def mark_map_complete(target: Target, records_digest: str, layers: list[str], chunk_sha256: dict[str, str]) -> None:
    """Write the chunk manifest, then flip the store's status to complete (with the completion
    records' and the manifest's digests), consolidated."""
    body = json.dumps({"layers": layers, "chunks": chunk_sha256}, sort_keys=True).encode()
    _output(target).join(CHUNKS).atomic_write_bytes(body)
    mark_complete(target, {"misomap_status": "complete", COMPLETE_ATTR: records_digest,
                           MANIFEST_ATTR: hashlib.sha256(body).hexdigest()}, "map", "misomap predict")


def product_files(output: Target) -> dict[str, str]:
    """Relative path -> sha256 of every file of the map product under `output` (all but `_progress`)."""
    fs, base = output.fs, output.path
    out = {}
    for path in sorted(fs.find(base)):
        rel = path[len(base):].lstrip("/")
        if rel.split("/", 1)[0] != "_progress" and not rel.endswith(".lock"):
            out[rel] = hashlib.sha256(fs.cat_file(path)).hexdigest()
    return out


def write_file_manifest(output: Target) -> None:
    """The product's file manifest, written last: what `misomap verify` checks every file against."""
    output.join(FILES).atomic_write_bytes(json.dumps(product_files(output), indent=0, sort_keys=True).encode())


def require_map_complete(target: Target) -> None:
    """Refuse a map store that is being written or whose run failed."""
    group = open_group(target)
    if group is None:
        raise MapStoreError(f"no map store at {target.url}: run `misomap predict` first")
    attrs = group.attrs
    if COMPLETE_ATTR not in attrs:
        status = attrs.get("misomap_status", "no status")
        raise IncompleteInputError(f"map {target.url} is unfinished ({status}): rerun `misomap predict` with "
                                   "its config to finish it")


def map_chunk_problems(group: zarr.Group, layers: list[str], expected: dict[str, str | None],
                       regions: list[ChunkWindow]) -> list[str]:
    """Every map chunk of `regions` whose `layers` differ from `expected` ({key: sha256 over the
    layers' bytes, as predict_chunk records it}; None: no record) or cannot be read, named."""
    problems = []
    for r in regions:
        if expected.get(r.key) is None:
            problems.append(f"missing chunk {r.key}: no completion record")
            continue
        h = hashlib.sha256()
        try:
            for name in layers:
                arr = group[name]
                h.update(np.asarray(arr[(slice(None),) * (arr.ndim - 2) + (slice(r.row0, r.row0 + r.height),
                                                                           slice(r.col0, r.col0 + r.width))]).tobytes())
        except Exception as err:  # noqa: BLE001 - codec/IO errors of many kinds mean "corrupt"
            problems.append(f"corrupt chunk {r.key}: unreadable ({type(err).__name__})")
            continue
        if h.hexdigest() != expected[r.key]:
            problems.append(f"corrupt chunk {r.key}: checksum differs from its completion record")
    return problems


def file_problems(output: Target, manifest: dict[str, str]) -> list[str]:
    """Every product file under `output` missing, changed or not in its file manifest, named."""
    found = product_files(output)
    problems = [f"missing file {rel}" for rel in sorted(set(manifest) - set(found))]
    problems += [f"corrupt file {rel}: sha256 differs from the file manifest" for rel in sorted(manifest)
                 if rel in found and found[rel] != manifest[rel]]
    return problems + [f"unexpected file {rel}: not in the file manifest" for rel in sorted(set(found) - set(manifest))]
