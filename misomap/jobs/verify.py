"""`misomap verify PATH`: check a cube, a map, an embedding store, regenerate's working stores, a
published version or a publish root against the checksums written with them, and list every chunk
or file that is missing or corrupt. Exit 0 only when whole; damage is a report, never a traceback."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import zarr

from misomap.core.config_base import StorageConfig
from misomap.core.errors import MisomapError, one_line
from misomap.core.storage import Target
from misomap.cube.errors import CubeError
from misomap.cube.grid import Grid, plan_chunks
from misomap.cube.store import COMPLETE_KEY, chunk_manifest, chunk_problems
from misomap.mapping.store import CHUNKS, FILES, MANIFEST_ATTR, file_problems, map_chunk_problems
from misomap.publish import versions
from misomap.runtime.records import COMPLETE_ATTR, CompletionRecords

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


def _group(target: Target) -> tuple[zarr.Group | None, str | None]:
    """The Zarr group at `target` or why it cannot be read (None, None when nothing is there)."""
    if not target.join("zarr.json").exists() and not target.join(".zgroup").exists():
        return None, None
    try:
        return zarr.open_group(target.zarr_store(read_only=True), mode="r"), None
    except Exception as err:  # noqa: BLE001 - garbage metadata of any kind is a finding, not a crash
        return None, f"unreadable metadata in {target.url}: {type(err).__name__}: {one_line(err)}"


MAP = ("map", "map.zarr", "permafrost_probability", "map")
EMBEDDINGS = ("embedding cube", "embeddings.zarr", "embedding", "embeddings")
"""(kind, store, first array, `_progress/<folder>` of the completion records) of the products the
map's chunk engine writes."""


def verify(path: str, storage: StorageConfig | None = None) -> VerifyReport:
    """Verify the store at `path`: a cube, a map output folder (or its map.zarr), an embedding store,
    a published version folder or a publish root (its latest version)."""
    storage = storage or StorageConfig()
    path = path.rstrip("/").removesuffix("/map.zarr").removesuffix("/embeddings.zarr")
    target = Target(path, storage)
    try:
        if target.join(versions.POINTER).exists() or target.join(versions.MANIFEST).exists():
            return _verify_published(path, storage)
        group, broken = _group(target.join("map.zarr"))
        if group is not None or broken:
            return _verify_map(path, group, broken, storage)
        group, broken = _group(target.join("embeddings.zarr"))
        if group is not None or broken:
            return _verify_map(path, group, broken, storage, EMBEDDINGS)
        group, broken = _group(target)
    except (MisomapError, OSError) as err:
        return VerifyReport(path, "store", 0, False, [one_line(err)])
    if broken:
        return VerifyReport(path, "store", 0, False, [broken])
    if group is None:
        raise VerifyError(f"{path} is not a Zarr store or published version (cube, map, embeddings): nothing to verify")
    attrs = dict(group.attrs)
    if "misomap" in attrs:
        return _verify_cube(path, group, attrs, storage)
    if "misomap_spectral_embedding" in attrs:
        return _verify_embeddings(path, group, storage)
    raise VerifyError(f"{path} is a Zarr store without misomap lineage: it has no completion records to "
                      "check against")


def _verify_cube(path: str, group: zarr.Group, attrs: dict[str, Any], storage: StorageConfig) -> VerifyReport:
    try:
        lineage = attrs["misomap"]
        grid = Grid(lineage["grid"]["crs"], lineage["grid"]["resolution"], *lineage["grid"]["bounds"])
        windows = plan_chunks(grid, lineage["chunk"])
    except (KeyError, TypeError, ValueError) as err:
        return VerifyReport(path, "cube", 0, False, [f"lineage of {path} unreadable ({type(err).__name__}: {err})"])
    report = VerifyReport(path, "cube", len(windows), COMPLETE_KEY in attrs)
    records = CompletionRecords(Target(f"{path}.progress", storage), lineage.get("fingerprint"))
    try:
        manifest = chunk_manifest(path, storage, attrs.get(COMPLETE_KEY) or {})
    except CubeError as err:
        manifest, report.problems = None, [one_line(err)]
    if manifest is not None:  # a finished cube: every chunk against the manifest its mark vouches for
        expected: dict[str, str | None] = dict(manifest)
    else:
        expected = {w.key: (records.record(w.key) or {}).get("sha256") for w in windows}
    report.problems += list(chunk_problems(path, storage, expected, windows).values())
    own_records = records.done() - {"template"}  # a build's records beside the cube (regenerate keeps its own)
    if own_records and manifest is not None:
        report.problems += [f"missing chunk {w.key}: no completion record" for w in windows if w.key not in own_records]
    if report.complete_mark and not report.problems and own_records and \
            attrs[COMPLETE_KEY].get("records_sha256") != records.digest():
        report.problems.append("completion records changed since the cube was marked complete")
    return report


def _verify_map(path: str, group: zarr.Group | None, broken: str | None, storage: StorageConfig,
                product: tuple[str, str, str, str] = MAP) -> VerifyReport:
    """A map, or another product of the map's chunk engine (`product`: kind, store, first array)."""
    kind, store, first_array, progress = product
    output = Target(path, storage)
    if group is None:
        return VerifyReport(path, kind, 0, False, [broken or f"no {store}"])
    attrs = dict(group.attrs)
    report = VerifyReport(path, kind, 0, COMPLETE_ATTR in attrs)
    if first_array not in group:
        report.problems.append(f"{path}/{store} has no layers: its template was never finished (rerun the run "
                               "that writes it)")
        return report
    first = group[first_array]
    h, w = first.shape[-2:]
    regions = plan_chunks(Grid("EPSG:3338", 1.0, 0.0, 0.0, float(w), float(h)), first.chunks[-1])
    report.chunks = len(regions)
    if MANIFEST_ATTR in attrs:  # finished: chunks against the manifest the complete mark vouches for
        manifest = _json(output.join(CHUNKS), attrs[MANIFEST_ATTR], report.problems)
        if manifest is None:
            return report
        layers, expected = manifest["layers"], dict(manifest["chunks"])
    else:
        records = CompletionRecords(Target(f"{path}/_progress/{progress}", storage))
        recs = {r.key: records.record(r.key) for r in regions}
        layers = next((rec["layers"] for rec in recs.values() if rec and rec.get("layers")), [])
        expected = {k: (rec or {}).get("sha256") for k, rec in recs.items()}
        if report.complete_mark and attrs[COMPLETE_ATTR] != records.digest():
            report.problems.append(f"completion records changed since the {kind} was marked complete")
    report.problems += map_chunk_problems(group, layers, expected, regions)
    if report.complete_mark and kind == "map":
        files = _json(output.join(FILES), None, report.problems)
        report.problems += file_problems(output, files) if files is not None else []
    return report


def _json(target: Target, sha: str | None, problems: list[str]) -> Any:
    """A manifest's JSON, checked against `sha` when given; None (and a problem) when unusable."""
    try:
        body = target.read_bytes()
        if sha is not None and hashlib.sha256(body).hexdigest() != sha:
            raise ValueError("differs from the complete mark")
        return json.loads(body)
    except (MisomapError, ValueError) as err:
        problems.append(f"manifest {target.url} unusable ({one_line(err)}): rerun the run that wrote it")
        return None


def _verify_published(path: str, storage: StorageConfig) -> VerifyReport:
    target = Target(path, storage)
    if target.join(versions.MANIFEST).exists():  # one version folder: its root is two levels up
        root, vid = path.rsplit("/versions/", 1)
        version = next((v for v in versions.list_versions(root, storage) if v.id == vid), None)
        if version is None:
            return VerifyReport(path, "published version", 0, False, [f"{path}/{versions.MANIFEST} unreadable"])
    else:
        root, version = path, versions.latest(path, storage)
        if version is None:
            raise VerifyError(f"nothing is published under {path} yet")
    problems = versions.version_problems(root, storage, version)
    return VerifyReport(f"{root}/versions/{version.id}", "published version", len(version.files), True, problems)


def _verify_embeddings(path: str, group: zarr.Group, storage: StorageConfig) -> VerifyReport:
    emb = group["embedding"]
    n_chunks = -(-emb.shape[0] // emb.chunks[0])
    progress = CompletionRecords(Target(f"{path}.progress", storage))
    report = VerifyReport(path, "embeddings", n_chunks, COMPLETE_ATTR in group.attrs)
    for key in (f"chunk-{c:06d}" for c in range(n_chunks)):
        if (rec := progress.record(key)) is None:
            report.problems.append(f"missing chunk {key}: no completion record")
            continue
        for name in sorted(k for k in group.array_keys() if k != "sample_id"):
            try:
                group[name][slice(*rec["rows"])]
            except Exception as err:  # noqa: BLE001 - codec/IO errors of many kinds mean "corrupt"
                report.problems.append(f"corrupt {key} of {name}: unreadable ({type(err).__name__})")
    if report.complete_mark and not report.problems and group.attrs[COMPLETE_ATTR] != progress.digest():
        report.problems.append("completion records changed since the embeddings were marked complete")
    return report
