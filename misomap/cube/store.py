"""The cube on disk or S3 (docs/contracts.md §2): ownership and bucket checks, template, lineage,
chunk checksums, consolidation and the complete mark. Chunks are written and recorded by the chunk
engine (misomap/runtime/); readers open cubes through cube/reader.py.

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
from misomap.core.errors import IncompleteInputError, MissingObjectError, OwnershipError
from misomap.core.storage import Target
from misomap.cube import geozarr
from misomap.cube.errors import CorruptChunkError, CubeStorageError
from misomap.cube.grid import Grid
from misomap.runtime import zarr_io
from misomap.runtime.records import COMPLETE_ATTR

log = logging.getLogger(__name__)

LINEAGE_KEY = "misomap"
COMPLETE_KEY = COMPLETE_ATTR
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
    """The cube's lazy skeleton: coordinates, CF grid mapping, GeoZarr `proj:`/`spatial:` attributes
    and lineage; `data` never computed."""
    data = da.zeros((len(bands), *grid.shape), dtype=np.float32,
                    chunks=(len(bands), min(chunk, grid.height), min(chunk, grid.width)))
    spatial_ref = xr.DataArray(np.int32(0), attrs=grid.spatial_ref_attrs())
    ds = xr.Dataset(
        {"data": (("band", "y", "x"), data, {"grid_mapping": "spatial_ref", **geozarr.array_attrs(grid)})},
        coords={"band": np.array(bands, dtype=object), "y": grid.y_coords(), "x": grid.x_coords(),
                "spatial_ref": spatial_ref},
        attrs={LINEAGE_KEY: lineage, **geozarr.group_attrs(grid)})  # GeoZarr proj:/spatial: beside CF
    ds.x.attrs.update(standard_name="projection_x_coordinate", units="m", axis="X")
    ds.y.attrs.update(standard_name="projection_y_coordinate", units="m", axis="Y")
    return ds


def write_template(ds: xr.Dataset, location: str, storage: StorageConfig, zarr_format: int,
                   zstd_level: int) -> None:
    """Write metadata and coordinates (overwriting a half-written template); no data chunks."""
    comp = ZstdCodec(level=zstd_level) if zarr_format == 3 else numcodecs.Zstd(level=zstd_level)
    chunks = tuple(c[0] for c in ds.data.chunks)
    zarr_io.write_template(Target(location, storage), ds, {"data": {"compressors": (comp,), "chunks": chunks,
                                                                    "_FillValue": np.float32(np.nan)}},
                           zarr_format, consolidated=False)


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


CHUNKS_SUFFIX = ".chunks.json"
"""The cube's chunk manifest `<cube>.chunks.json`: {"chunks": {chunk key: values_sha256} from the
completion records, "files": {path: sha256} of the coordinate files (band names, x, y)}, written
with the complete mark (which holds its sha256) and read back by every cube reader."""
METADATA = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")


def coordinate_files(location: str, storage: StorageConfig) -> dict[str, str]:
    """sha256 of every file of the cube but its `data` chunks and its metadata (which the complete
    mark itself changes): the band names and the x/y coordinates, written once with the template."""
    target = Target(location, storage)
    fs, base = target.fs, target.path
    return {rel: hashlib.sha256(fs.cat_file(p)).hexdigest() for p in sorted(fs.find(base))
            if not (rel := p[len(base):].lstrip("/")).startswith("data/") and rel.rsplit("/", 1)[-1] not in METADATA}


def mark_complete(location: str, storage: StorageConfig, records_digest: str, chunk_sha256: dict[str, str]) -> None:
    """Write the chunk manifest, then the complete mark (group attribute, vouching for both the
    records and the manifest) and consolidate: the last writes of a build."""
    body = json.dumps({"chunks": chunk_sha256, "files": coordinate_files(location, storage)}, sort_keys=True).encode()
    Target(location + CHUNKS_SUFFIX, storage).atomic_write_bytes(body)
    zarr_io.mark_complete(Target(location, storage),
                          {COMPLETE_KEY: {"records_sha256": records_digest, "chunks": len(chunk_sha256),
                                          "chunk_manifest_sha256": hashlib.sha256(body).hexdigest()}},
                          "cube", "misomap cube build")


def chunk_manifest(location: str, storage: StorageConfig, mark: dict[str, Any]) -> dict[str, str] | None:
    """{chunk key: sha256} the complete mark `mark` vouches for, once the cube's coordinate files
    are checked against it; None for a cube marked without one. CorruptChunkError when the manifest
    is missing or differs from the mark, or a coordinate file from the manifest."""
    want = mark.get("chunk_manifest_sha256") if isinstance(mark, dict) else None
    if want is None:
        return None
    url = location + CHUNKS_SUFFIX
    try:
        body = Target(url, storage).read_bytes()
    except MissingObjectError:
        raise CorruptChunkError(f"the chunk manifest {url} of cube {location} is missing: rerun `misomap cube "
                                "build --repair` with its config") from None
    if hashlib.sha256(body).hexdigest() != want:
        raise CorruptChunkError(f"the chunk manifest {url} differs from the complete mark of cube {location}: "
                                "rerun `misomap cube build --repair` with its config")
    manifest = json.loads(body)
    found = coordinate_files(location, storage)
    bad = sorted(rel for rel, sha in manifest["files"].items() if found.get(rel) != sha)
    if bad:
        raise CorruptChunkError(f"cube {location}: coordinate file(s) {', '.join(bad[:3])} differ from the chunk "
                                "manifest (band names or x/y coordinates damaged): rebuild the cube with `misomap "
                                "cube build` into a new location")
    return manifest["chunks"]


def check_chunk(location: str, key: str, values: np.ndarray, manifest: dict[str, str]) -> None:
    """CorruptChunkError naming `key` unless the chunk's values (all bands) match the manifest."""
    if key in manifest and values_sha256(values) != manifest[key]:
        raise CorruptChunkError(f"cube {location} chunk {key} differs from its completion record (sha256): "
                                "the cube is damaged; rebuild that chunk with `misomap cube build --repair` "
                                "(same config), then retry")


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


def chunk_problems(location: str, storage: StorageConfig, expected: dict[str, str | None],
                   windows: list[Any]) -> dict[str, str]:
    """Every chunk of `windows` (ChunkWindows of the cube at `location`) whose values differ from
    `expected` ({key: sha256}; None: no record) or cannot be read: {key: one line naming it}."""
    data = zarr.open_group(Target(location, storage).zarr_store(read_only=True), mode="r")["data"]
    problems: dict[str, str] = {}
    for w in windows:
        want = expected.get(w.key)
        if want is None:
            problems[w.key] = f"missing chunk {w.key}: no completion record"
            continue
        try:
            values = np.asarray(data[:, w.row0:w.row0 + w.height, w.col0:w.col0 + w.width])
        except Exception as err:  # noqa: BLE001 - codec/IO errors of many kinds mean "corrupt"
            problems[w.key] = f"corrupt chunk {w.key}: unreadable ({type(err).__name__})"
            continue
        if values_sha256(values) != want:
            problems[w.key] = f"corrupt chunk {w.key}: checksum differs from its completion record"
    return problems


def unmark(location: str, storage: StorageConfig) -> None:
    """Remove the cube's complete mark (before a chunk of it is rebuilt)."""
    zarr_io.unmark(Target(location, storage), COMPLETE_KEY)
