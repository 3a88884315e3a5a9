"""The map's Zarr store: a template written once, then chunk regions written in place."""

from __future__ import annotations

import json
import logging
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from pyproj import CRS

from misomap.core.classes import SOIL_ORDERS
from misomap.cube.grid import ChunkWindow, Grid
from misomap.core.errors import IncompleteInputError, MisomapError, OwnershipError, StorageWriteError
from misomap.jobs.completion import COMPLETE_ATTR
from misomap.mapping.layers import LAYERS, NODATA, PROB_SCALE

log = logging.getLogger(__name__)


class MapStoreError(MisomapError):
    """The output store exists but was made by a different run configuration or model."""


def _template(grid: Grid, chunk_px: int, attrs: dict[str, Any],
              zarr_format: int) -> tuple[xr.Dataset, dict[str, Any]]:
    """The store's lazy skeleton. Every array's Zarr fill_value is NODATA (a missing chunk reads as
    nodata, never as class 0); classes are integer codes named by CF flags (no string arrays);
    the CRS is given both as a CF grid mapping and as GDAL's `_CRS` attribute."""
    h, w = grid.shape
    crs_attr = {"_CRS": {"wkt": CRS.from_user_input(grid.crs).to_wkt()}}
    coords = {"y": ("y", grid.y_coords(), {"units": "m", "standard_name": "projection_y_coordinate",
                                            "axis": "Y"}),
              "x": ("x", grid.x_coords(), {"units": "m", "standard_name": "projection_x_coordinate",
                                            "axis": "X"}),
              "soil_order": ("soil_order", np.arange(len(SOIL_ORDERS), dtype=np.uint8),
                             {"long_name": "soil order (USDA Soil Taxonomy)",
                              "flag_values": list(range(len(SOIL_ORDERS))),
                              "flag_meanings": " ".join(SOIL_ORDERS)}),
              "spatial_ref": ((), 0, grid.spatial_ref_attrs())}
    data_vars, encoding = {}, {}
    for layer in LAYERS:
        dims = ("soil_order", "y", "x") if layer.per_class else ("y", "x")
        shape = (len(SOIL_ORDERS), h, w) if layer.per_class else (h, w)
        chunks = (len(SOIL_ORDERS), chunk_px, chunk_px) if layer.per_class else (chunk_px, chunk_px)
        data_vars[layer.name] = (dims, da.zeros(shape, chunks=chunks, dtype="float32"),
                                 {**layer.attrs, "grid_mapping": "spatial_ref", **crs_attr})
        enc: dict[str, Any] = {"dtype": "uint8", "_FillValue": NODATA, "chunks": chunks}
        if zarr_format == 3:
            enc["fill_value"] = NODATA  # xarray sets v3's Zarr fill_value apart from the CF _FillValue
        if layer.is_probability:
            enc.update(scale_factor=PROB_SCALE, add_offset=0.0)
        encoding[layer.name] = enc
    ds = xr.Dataset(data_vars, coords=coords, attrs={"Conventions": "CF-1.10", **attrs})
    return ds, encoding


def ensure_template(url: str, storage_options: dict[str, Any], grid: Grid, chunk_px: int,
                    zarr_format: int, attrs: dict[str, Any], run_hash: str) -> bool:
    """Write the store's metadata unless a store from the same run exists; True if written.

    A store from a different configuration or model is refused rather than silently mixed.
    """
    existing = _read_run_hash(url, storage_options, zarr_format)
    if existing == run_hash:
        return False
    if existing is not None:
        raise MapStoreError(f"{url} holds a map from another configuration or model "
                            f"(run hash {existing[:12]} != {run_hash[:12]}); pass --overwrite or pick "
                            "another output")
    ds, encoding = _template(grid, chunk_px, {**attrs, "misomap_run_hash": run_hash}, zarr_format)
    ds.to_zarr(url, mode="w", compute=False, zarr_format=zarr_format, consolidated=True,
               encoding=encoding, storage_options=storage_options or None)
    log.info("wrote map template %s (%d x %d px, chunks %d)", url, *grid.shape, chunk_px)
    return True


def _read_run_hash(url: str, storage_options: dict[str, Any], zarr_format: int) -> str | None:
    try:
        group = zarr.open_group(url, mode="r", storage_options=storage_options or None,
                                zarr_format=zarr_format)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return None
    return group.attrs.get("misomap_run_hash")


def write_chunk(url: str, storage_options: dict[str, Any], region: ChunkWindow,
                layers: dict[str, np.ndarray]) -> None:
    """Write encoded uint8 layers into their chunk-aligned region of the store."""
    group = zarr.open_group(url, mode="r+", storage_options=storage_options or None)
    rows = slice(region.row0, region.row0 + region.height)
    cols = slice(region.col0, region.col0 + region.width)
    for name, values in layers.items():
        arr = group[name]
        if values.ndim == 3:
            arr[:, rows, cols] = values
        else:
            arr[rows, cols] = values


def store_summary(url: str, storage_options: dict[str, Any]) -> str:
    """A one-line JSON description of the store's variables (for logs and STAC)."""
    group = zarr.open_group(url, mode="r", storage_options=storage_options or None)
    return json.dumps({k: list(v.shape) for k, v in group.arrays()})


MAP_PARTS = frozenset({"map.zarr", "_progress", "cogs", "stac", "quicklook.png", "viewer"})
"""What a map output folder holds; anything else there means the folder is not (only) ours."""


def check_map_owned(output: str, storage_options: dict[str, Any]) -> None:
    """Refuse, before any write, a map output folder holding anything a map run did not write."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(output, **storage_options)
    if not fs.exists(path):
        return
    if fs.isfile(path):
        raise OwnershipError(f"map.output {output} is an existing file: nothing was changed; pick a folder")
    names = {str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)}
    foreign = sorted(names - MAP_PARTS)
    if not foreign and "map.zarr" in names:
        try:
            attrs = zarr.open_group(f"{output}/map.zarr", mode="r", storage_options=storage_options or None).attrs
            if "misomap_run_hash" not in attrs:
                foreign = ["map.zarr (no misomap run hash)"]
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
            foreign = ["map.zarr (not a Zarr group)"]
    if foreign:
        raise OwnershipError(f"map.output {output} holds {', '.join(foreign[:3])} not written by a misomap map "
                             "run: nothing was changed; pick a new or empty output folder")


def mark_map_complete(url: str, storage_options: dict[str, Any], records_digest: str) -> None:
    """Flip the store's status to complete (with the completion records' digest), consolidated."""
    try:
        group = zarr.open_group(url, mode="r+", storage_options=storage_options or None)
        group.attrs.update({"misomap_status": "complete", COMPLETE_ATTR: records_digest})
        zarr.consolidate_metadata(group.store)
    except OSError as err:
        raise StorageWriteError(f"cannot mark map {url} complete: {err.strerror or err}; it stays incomplete "
                                "(metadata writes are atomic): free space and rerun") from None


def require_map_complete(url: str, storage_options: dict[str, Any]) -> None:
    """Refuse a map store that is being written or whose run failed."""
    try:
        attrs = zarr.open_group(url, mode="r", storage_options=storage_options or None).attrs
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        raise MapStoreError(f"no map store at {url}: run `misomap predict` first") from None
    if COMPLETE_ATTR not in attrs:
        raise IncompleteInputError(f"map {url} is unfinished ({attrs.get('misomap_status', 'no status')}): "
                                   "rerun `misomap predict` with its config to finish it")
