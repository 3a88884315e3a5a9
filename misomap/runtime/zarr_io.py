"""One Zarr template writer and one chunk-aligned region writer for every chunked output (cube,
map, embeddings), and the store's identity claim: a store made by another run is refused, never
mixed into."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
import zarr

from misomap.core.errors import MisomapError, StorageWriteError, redact_obj
from misomap.core.storage import Target


def open_group(target: Target, mode: str = "r") -> zarr.Group | None:
    """The Zarr group at `target`, None when nothing (or no group) is there."""
    try:
        return zarr.open_group(target.zarr_store(read_only=mode == "r"), mode=mode)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return None


def _short(identity: Any) -> str:
    text = identity if isinstance(identity, str) else json.dumps(identity, sort_keys=True)
    return text[:16] if isinstance(identity, str) else hashlib.sha256(text.encode()).hexdigest()[:12]


def claim(target: Target, stored: Any, identity: Any, what: str, error: type[MisomapError]) -> bool:
    """Whether a fresh template is needed: True when no store of a run is there (`stored` is None),
    False when it is this run's own (same identity: resume; a killed run's half-written files are
    removed first). A store of another run raises `error` naming the store and both identities."""
    if stored is None:
        return True
    if stored == identity:
        _sweep_partials(target)
        return False
    raise error(f"{target.url} holds {what} made by another run - other inputs, another configuration or "
                f"model ({_short(stored)} != {_short(identity)}): nothing was changed; remove it (or pass "
                "--overwrite where offered) or pick another output location")


PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")
"""The temporary name zarr's local store writes a file under before renaming it into place."""


def _sweep_partials(target: Target) -> None:
    """Delete the temporary files a run killed mid-write left in its own local store: they are no
    chunk, yet they would stay beside the rewritten chunks (object stores write whole objects)."""
    if target.remote or not os.path.isdir(target.path):
        return
    for root, _, files in os.walk(target.path):
        for name in files:
            if PARTIAL.search(name):
                os.unlink(os.path.join(root, name))


def write_template(target: Target, ds: xr.Dataset, encoding: dict[str, Any], zarr_format: int,
                   consolidated: bool, group: str | None = None) -> None:
    """Write a store's (or one of its child `group`s') metadata and coordinates (overwriting a
    half-written template), no data chunks: every data variable of `ds` is lazy and never computed.
    Attributes are stored redacted (a `?token=` in a lineage URL never reaches the store)."""
    ds = ds.copy()
    ds.attrs = redact_obj(dict(ds.attrs))
    ds.to_zarr(target.zarr_store(), mode="w", compute=False, zarr_format=zarr_format,
               consolidated=consolidated, encoding=encoding, group=group)


def consolidate(target: Target) -> None:
    """Consolidate the metadata of the whole store (child groups included) at its root."""
    zarr.consolidate_metadata(target.zarr_store())


def _check_aligned(arr: zarr.Array, dim: int, part: slice, name: str) -> None:
    size, chunk = arr.shape[dim], arr.chunks[dim]
    if part.start % chunk or (part.stop % chunk and part.stop != size):
        raise ValueError(f"region {part.start}:{part.stop} of {name} (dim {dim}) is not aligned to its "
                         f"chunks of {chunk}: two tasks could write one chunk")


def write_region(target: Target, values: Mapping[str, np.ndarray], rows: slice, cols: slice | None = None,
                 ) -> None:
    """Write chunk-aligned regions of the named arrays: `rows` x `cols` of the last two dimensions
    (rasters), or `rows` of the first (tables) when `cols` is None. Chunks a task does not own are
    never touched, so concurrent tasks and reruns cannot tear each other's writes."""
    group = zarr.open_group(target.zarr_store(), mode="r+")
    for name, data in values.items():
        arr = group[name]
        try:
            if cols is None:
                _check_aligned(arr, 0, rows, name)
                arr[rows] = data
            else:
                _check_aligned(arr, arr.ndim - 2, rows, name)
                _check_aligned(arr, arr.ndim - 1, cols, name)
                arr[..., rows, cols] = data
        except OSError as err:  # disk full, read-only, refused: named, and the chunk stays unrecorded
            where = f"rows {rows.start}:{rows.stop}" + (f", cols {cols.start}:{cols.stop}" if cols is not None else "")
            raise StorageWriteError(f"cannot write {name} ({where}) to {target.url}: {err.strerror or err}; free "
                                    "space or fix permissions, then rerun (finished chunks are kept)") from None


def mark_complete(target: Target, attrs: dict[str, Any], what: str, rerun: str) -> None:
    """Write a finished store's complete mark (attributes) and consolidate: the last write of a run."""
    try:
        group = zarr.open_group(target.zarr_store(), mode="r+")
        group.attrs.update(redact_obj(attrs))
        zarr.consolidate_metadata(group.store)
    except OSError as err:
        raise StorageWriteError(f"cannot mark {what} {target.url} complete: {err.strerror or err}; it stays "
                                f"incomplete (metadata writes are atomic): free space and rerun `{rerun}`") from None


def unmark(target: Target, attr: str) -> None:
    """Remove a store's complete mark `attr` (and set its status incomplete) before any of its chunks
    is rewritten; consolidated."""
    group = zarr.open_group(target.zarr_store(), mode="r+")
    if attr in group.attrs:
        del group.attrs[attr]
        if "misomap_status" in group.attrs:
            group.attrs["misomap_status"] = "incomplete"
        zarr.consolidate_metadata(group.store)
