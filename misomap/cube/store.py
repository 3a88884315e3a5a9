"""The cube on disk or S3 (docs/contracts.md §2): template, chunk-region writes, completion records,
and consolidation (readers open cubes through cube/reader.py).

Completion records live beside the cube (`<out>.progress/`), one small JSON per finished chunk,
because chunk files cannot tell "done" (all-NaN chunks are never written).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import dask.array as da
import numcodecs
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import ZstdCodec

from misomap.core.config_base import StorageConfig
from misomap.core.storage import Target
from misomap.cube.errors import CubeStorageError
from misomap.cube.grid import Grid
from misomap.core.errors import IncompleteInputError, OwnershipError, StorageWriteError

log = logging.getLogger(__name__)

LINEAGE_KEY = "misomap"
COMPLETE_KEY = "misomap_complete"
"""Group attribute written last, once every chunk is recorded: the completion records' digest."""


def check_writable(location: str, storage: StorageConfig) -> None:
    """Fail early, naming the bucket, when the target bucket is missing or refuses access."""
    target = Target(location, storage)
    if not target.remote:
        return
    fs, path = target.filesystem(fresh=True), target.path
    bucket = path.split("/", 1)[0]
    endpoint = storage.endpoint_url or "the default AWS endpoint"
    try:
        fs.ls(bucket, refresh=True)
        probe = f"{path}.progress/.write-probe"
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except FileNotFoundError:
        raise CubeStorageError(f"bucket {bucket!r} does not exist at {endpoint}: create it or fix "
                               f"cube.out={location!r}") from None
    except PermissionError as err:
        raise CubeStorageError(f"access to bucket {bucket!r} at {endpoint} refused ({err}): check "
                               "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS profile") from None


def template(grid: Grid, bands: list[str], chunk: int, lineage: dict[str, Any]) -> xr.Dataset:
    """The cube's lazy skeleton: coordinates, grid mapping and lineage; `data` never computed."""
    data = da.zeros((len(bands), *grid.shape), dtype=np.float32,
                    chunks=(len(bands), min(chunk, grid.height), min(chunk, grid.width)))
    spatial_ref = xr.DataArray(np.int32(0), attrs=grid.spatial_ref_attrs())
    ds = xr.Dataset(
        {"data": (("band", "y", "x"), data, {"grid_mapping": "spatial_ref"})},
        coords={"band": np.array(bands, dtype=object), "y": grid.y_coords(), "x": grid.x_coords(),
                "spatial_ref": spatial_ref},
        attrs={LINEAGE_KEY: lineage})
    ds.x.attrs.update(standard_name="projection_x_coordinate", units="m", axis="X")
    ds.y.attrs.update(standard_name="projection_y_coordinate", units="m", axis="Y")
    return ds


def write_template(ds: xr.Dataset, location: str, storage: StorageConfig, zarr_format: int,
                   zstd_level: int) -> None:
    """Write metadata and coordinates (overwriting a half-written template); no data chunks."""
    comp = ZstdCodec(level=zstd_level) if zarr_format == 3 else numcodecs.Zstd(level=zstd_level)
    chunks = tuple(c[0] for c in ds.data.chunks)
    ds.to_zarr(Target(location, storage).zarr_store(), mode="w", compute=False, zarr_format=zarr_format,
               consolidated=False,
               encoding={"data": {"compressors": (comp,), "chunks": chunks, "_FillValue": np.float32(np.nan)}})


def write_region(location: str, storage: StorageConfig, values: np.ndarray, row0: int, col0: int) -> None:
    """Write one chunk-aligned (band, y, x) region; all-NaN chunks are left unwritten (fill)."""
    arr = zarr.open_array(Target(location, storage).zarr_store(), path="data", mode="r+")
    arr[:, row0:row0 + values.shape[1], col0:col0 + values.shape[2]] = values


def consolidate(location: str, storage: StorageConfig) -> None:
    """Consolidate metadata once every chunk is written."""
    zarr.consolidate_metadata(Target(location, storage).zarr_store())


def stored_lineage(location: str, storage: StorageConfig) -> dict[str, Any] | None:
    """The lineage attributes of an existing cube, or None when no template is there."""
    try:
        group = zarr.open_group(Target(location, storage).zarr_store(read_only=True), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return None
    return dict(group.attrs).get(LINEAGE_KEY)


def values_sha256(values: np.ndarray) -> str:
    """Digest of a chunk's float32 values, NaNs made canonical (unwritten chunks read back as fill)."""
    v = np.ascontiguousarray(values, dtype=np.float32)
    return hashlib.sha256(np.where(np.isnan(v), np.float32(np.nan), v).tobytes()).hexdigest()


def check_owned(location: str, storage: StorageConfig) -> None:
    """Refuse, before any write, a location that holds something `misomap cube build` did not make.

    Absent or empty is fine; a Zarr group carrying misomap lineage is ours (another build's inputs are
    refused later by fingerprint); anything else - a file, a folder of other data, another product's
    store - is refused with its path and left exactly as it was.
    """
    target = Target(location, storage)
    fs, path = target.filesystem(fresh=True), target.path
    try:
        if not fs.exists(path):
            return
        is_file = fs.isfile(path)
        entries = [] if is_file else fs.ls(path, detail=False)
    except OSError as err:
        raise CubeStorageError(f"cannot inspect cube.out {location}: {err}") from None
    if is_file:
        raise OwnershipError(f"cube.out {location} is an existing file, not a cube: it is left untouched; "
                             "set cube.out to a new or empty location")
    if not entries:
        return
    if stored_lineage(location, storage) is not None:
        return
    names = sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)
    raise OwnershipError(f"cube.out {location} already holds {len(names)} entries not written by "
                         f"`misomap cube build` (e.g. {', '.join(names[:3])}): nothing was changed; set "
                         "cube.out to a new or empty location")


def mark_complete(location: str, storage: StorageConfig, records_digest: str, chunks: int) -> None:
    """Write the complete mark (group attribute) and consolidate: the last write of a build."""
    try:
        group = zarr.open_group(Target(location, storage).zarr_store(), mode="r+")
        group.attrs[COMPLETE_KEY] = {"records_sha256": records_digest, "chunks": chunks}
        consolidate(location, storage)
    except OSError as err:
        raise StorageWriteError(f"cannot mark cube {location} complete: {err.strerror or err}; it stays "
                                "incomplete: free space and rerun `misomap cube build`") from None


def require_complete(location: str, storage: StorageConfig) -> None:
    """Refuse a cube whose build never finished; a cube made outside misomap (no lineage) passes
    with a warning, since nothing records how it was made."""
    try:
        group = zarr.open_group(Target(location, storage).zarr_store(read_only=True), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        raise CubeStorageError(f"no cube at {location}: run `misomap cube build` first") from None
    attrs = dict(group.attrs)
    if LINEAGE_KEY not in attrs:
        log.warning("cube %s carries no misomap lineage: its completeness cannot be checked", location)
        return
    if COMPLETE_KEY not in attrs:
        raise IncompleteInputError(f"cube {location} is unfinished (its build failed or was stopped): rerun "
                                   "`misomap cube build` with the same config to finish it, then retry")


class CompletionRecords:
    """One JSON per finished chunk (and one for the template) under `<out>.progress/`, each tagged
    with the build's fingerprint so records of another configuration never count."""

    def __init__(self, location: str, storage: StorageConfig, fingerprint: str) -> None:
        target = Target(location + ".progress", storage)
        self.fs, base = target.fs, target.path
        self.base = base
        self.fingerprint = fingerprint

    def _path(self, name: str) -> str:
        return f"{self.base}/{name}.json"

    def mark(self, name: str, **info: Any) -> None:
        """Record `name` (a chunk key or `template`) as finished."""
        body = json.dumps({"name": name, "fingerprint": self.fingerprint, **info}, sort_keys=True)
        self.fs.pipe_file(self._path(name), body.encode())

    def clear(self) -> None:
        """Forget every record (before a fresh template is written); only record files are removed."""
        try:
            paths = self.fs.ls(self.base, detail=False, refresh=True)
        except FileNotFoundError:
            return
        records = [p for p in paths if str(p).endswith(".json")]
        if records:
            self.fs.rm(records)

    def digest(self) -> str:
        """sha256 over this build's records (sorted by name): what the complete mark vouches for."""
        h = hashlib.sha256()
        for name in sorted(self.done()):
            h.update(self.fs.cat_file(self._path(name)))
        return h.hexdigest()

    def record(self, name: str) -> dict[str, Any] | None:
        """One record's content, None when absent, unreadable or of another build."""
        try:
            rec = json.loads(self.fs.cat_file(self._path(name)))
        except (json.JSONDecodeError, FileNotFoundError):
            return None
        return rec if rec.get("fingerprint") == self.fingerprint else None

    def done(self) -> set[str]:
        """Names recorded as finished by a build with this fingerprint."""
        try:
            paths = self.fs.ls(self.base, detail=False, refresh=True)
        except FileNotFoundError:
            return set()
        names = set()
        for p in paths:
            if not p.endswith(".json"):
                continue
            try:
                rec = json.loads(self.fs.cat_file(p))
            except (json.JSONDecodeError, FileNotFoundError):
                continue  # a record cut short by a kill: that chunk is simply redone
            if rec.get("fingerprint") == self.fingerprint:
                names.add(rec["name"])
        return names
