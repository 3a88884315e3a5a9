"""`misomap verify PATH`: check a cube, map or embedding store against its completion records and
checksums, chunk by chunk, and list every chunk that is missing or corrupt."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from misomap.core.config_base import StorageConfig
from misomap.cube.grid import Grid, plan_chunks
from misomap.core.errors import MisomapError, one_line
from misomap.core.storage import Target
from misomap.runtime.records import COMPLETE_ATTR, CompletionRecords
from misomap.runtime.zarr_io import open_group

log = logging.getLogger(__name__)


class VerifyError(MisomapError):
    """PATH is not a store misomap can verify."""


@dataclass
class VerifyReport:
    """What was checked and what is wrong; `whole` when nothing is."""

    path: str
    kind: str
    chunks: int
    complete_mark: bool
    problems: list[str] = field(default_factory=list)

    @property
    def whole(self) -> bool:
        return self.complete_mark and not self.problems


def _open(url: str, storage: StorageConfig) -> zarr.Group | None:
    return open_group(Target(url, storage))


def verify(path: str, storage: StorageConfig | None = None) -> VerifyReport:
    """Verify the store at `path` (a cube, a map output folder or its map.zarr, an embedding store)."""
    storage = storage or StorageConfig()
    path = path.rstrip("/")
    if path.endswith("/map.zarr"):
        path = path[: -len("/map.zarr")]
    if path.endswith("/embeddings.zarr"):
        path = path[: -len("/embeddings.zarr")]
    if (group := _open(f"{path}/map.zarr", storage)) is not None:
        return _verify_map(path, group, storage)
    if (group := _open(f"{path}/embeddings.zarr", storage)) is not None:
        return _verify_map(path, group, storage, "embedding", "embeddings", "embedding cube")
    group = _open(path, storage)
    if group is None:
        raise VerifyError(f"{path} is not a Zarr store (cube, map or embeddings): nothing to verify")
    attrs = dict(group.attrs)
    if "misomap" in attrs:
        return _verify_cube(path, group, attrs, storage)
    if "misomap_spectral_embedding" in attrs:
        return _verify_embeddings(path, group, storage)
    raise VerifyError(f"{path} is a Zarr store without misomap lineage: it has no completion records to "
                      "check against")


def _read(arr: zarr.Array, index: tuple[slice, ...], what: str, problems: list[str]) -> np.ndarray | None:
    try:
        return np.asarray(arr[index])
    except Exception as err:  # noqa: BLE001 - codec/IO errors of many kinds mean "corrupt"
        problems.append(f"corrupt {what}: unreadable ({type(err).__name__}: {one_line(err)})")
        return None


def _verify_cube(path: str, group: zarr.Group, attrs: dict[str, Any], storage: StorageConfig) -> VerifyReport:
    from misomap.cube.store import COMPLETE_KEY, values_sha256

    lineage = attrs["misomap"]
    g = lineage["grid"]
    grid = Grid(g["crs"], g["resolution"], *g["bounds"])
    records = CompletionRecords(Target(f"{path}.progress", storage), lineage["fingerprint"])
    windows = plan_chunks(grid, lineage["chunk"])
    report = VerifyReport(path, "cube", len(windows), COMPLETE_KEY in attrs)
    data = group["data"]
    for w in windows:
        rec = records.record(w.key)
        if rec is None:
            report.problems.append(f"missing chunk {w.key}: no completion record")
            continue
        values = _read(data, (slice(None), slice(w.row0, w.row0 + w.height), slice(w.col0, w.col0 + w.width)),
                       f"chunk {w.key}", report.problems)
        if values is not None and "sha256" in rec and values_sha256(values) != rec["sha256"]:
            report.problems.append(f"corrupt chunk {w.key}: checksum differs from its completion record")
    if report.complete_mark and not report.problems and attrs[COMPLETE_KEY].get("records_sha256") != records.digest():
        report.problems.append("completion records changed since the cube was marked complete")
    return report


def _verify_map(path: str, group: zarr.Group, storage: StorageConfig, first_array: str = "permafrost_probability",
                progress_name: str = "map", kind: str = "map") -> VerifyReport:
    """A map, or another product written by the map's chunk engine (the embedding cube): every chunk
    against its completion record (the named arrays' values hashed in order)."""
    first = group[first_array]
    h, w = first.shape[-2:]
    chunk = first.chunks[-1]
    regions = plan_chunks(Grid("EPSG:3338", 1.0, 0.0, 0.0, float(w), float(h)), chunk)
    progress = CompletionRecords(Target(f"{path}/_progress/{progress_name}", storage))
    attrs = dict(group.attrs)
    report = VerifyReport(path, kind, len(regions), COMPLETE_ATTR in attrs)
    for r in regions:
        rec = progress.record(r.key)
        if rec is None:
            report.problems.append(f"missing chunk {r.key}: no completion record")
            continue
        h_ = hashlib.sha256()
        ok = True
        for name in rec.get("layers", []):
            arr = group[name]
            index = (slice(r.row0, r.row0 + r.height), slice(r.col0, r.col0 + r.width))
            values = _read(arr, ((slice(None),) * (arr.ndim - 2)) + index, f"chunk {r.key} of {name}",
                           report.problems)
            if values is None:
                ok = False
                break
            h_.update(values.tobytes())
        if ok and rec.get("layers") and h_.hexdigest() != rec["sha256"]:
            report.problems.append(f"corrupt chunk {r.key}: checksum differs from its completion record")
    if report.complete_mark and not report.problems and attrs[COMPLETE_ATTR] != progress.digest():
        report.problems.append(f"completion records changed since the {kind} was marked complete")
    return report


def _verify_embeddings(path: str, group: zarr.Group, storage: StorageConfig) -> VerifyReport:
    emb = group["embedding"]
    rows = emb.chunks[0]
    n_chunks = -(-emb.shape[0] // rows)
    progress = CompletionRecords(Target(f"{path}.progress", storage))
    report = VerifyReport(path, "embeddings", n_chunks, COMPLETE_ATTR in group.attrs)
    names = sorted(k for k in group.array_keys() if k != "sample_id")
    for c in range(n_chunks):
        key = f"chunk-{c:06d}"
        rec = progress.record(key)
        if rec is None:
            report.problems.append(f"missing chunk {key}: no completion record")
            continue
        start, stop = rec["rows"]
        for name in names:
            _read(group[name], (slice(start, stop),), f"{key} of {name}", report.problems)
    if report.complete_mark and not report.problems and group.attrs[COMPLETE_ATTR] != progress.digest():
        report.problems.append("completion records changed since the embeddings were marked complete")
    return report
