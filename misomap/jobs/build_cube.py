"""`misomap cube build`: search → template → chunk tasks on dask (local threads, or a dask-gateway
cluster when `gateway.address` is set) → completion records → consolidate → quicklook. Resumable: a
rerun skips recorded chunks and ends byte-identical to one clean run."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timezone
from typing import Any


from misomap import __version__
from misomap.config import RunConfig
from misomap.core.config_base import StorageConfig
from misomap.core.storage import Target
from misomap.cube.build import CubeChunkSpec, build_cube_chunk, planned_grid, search_bbox
from misomap.cube.config import CubeConfig
from misomap.cube.errors import ChunkBuildError, CubeError, CubeStorageError, StacSearchError
from misomap.cube.grid import ChunkWindow, plan_chunks
from misomap.cube.quicklook import quicklook_png
from misomap.cube.reader import open_cube
from misomap.cube.search import FoundItems, load_signer, open_client, search_source
from misomap.cube.stack import forget_datasets, source_gdal_options
from misomap.cube.store import (check_owned, check_writable, chunk_problems, consolidate, mark_complete,
                                stored_lineage, template, unmark, write_template)
from misomap.runtime.records import CompletionRecords, chunk_digests
from misomap.runtime.runner import Executor, run_plan
from misomap.runtime.zarr_io import claim

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CubeBuildResult:
    """What a build did: where the cube is, its shape, and how many chunks this run computed."""

    out: str
    quicklook: str
    shape: tuple[int, int, int]
    chunks_total: int
    chunks_built: int
    chunks_skipped: int


def _lineage(cfg: CubeConfig, stac_url: str, found: list[FoundItems], grid_dict: dict[str, Any]) -> dict[str, Any]:
    lineage = {
        "software": f"misomap {__version__}",
        "stac_url": stac_url,
        "search": {"bbox": list(search_bbox(planned_grid(cfg))), "datetime": cfg.datetime,
                   "seasons": {k: [v.start, v.end] for k, v in cfg.seasons.items()},
                   "sources": [f.source.model_dump(mode="json") for f in found]},
        "items": {f.source.collection: f.item_ids() for f in found},
        "grid": grid_dict,
        "chunk": cfg.chunk,
        "bands": cfg.band_names(),
    }
    # the same items served by another endpoint (e.g. a demo server on a new port) are the same inputs
    inputs = {k: v for k, v in lineage.items() if k != "stac_url"}
    lineage["fingerprint"] = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    # derived from the items above (so not part of the fingerprint): the maps' STAC datetime range
    lineage["imagery_datetime"] = _imagery_period(found)
    return lineage


def _imagery_period(found: list[FoundItems]) -> list[str] | None:
    """[first, last] acquisition time (ISO 8601, UTC) over the items of every non-static source."""
    times = []
    for f in found:
        if f.source.kind == "static":
            continue
        for item in (it for items in f.groups.values() for it in items):
            meta = item.common_metadata
            times += [t for t in (item.datetime, meta.start_datetime, meta.end_datetime) if t is not None]
    if not times:
        return None
    return [t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") for t in (min(times), max(times))]


def _forget_damaged(out: str, storage: StorageConfig, records: CompletionRecords, windows: list[ChunkWindow]) -> None:
    """Forget the records of chunks that no longer match them (and the complete mark), so they are rebuilt."""
    done = records.done()
    recorded = [w for w in windows if w.key in done]
    damaged = list(chunk_problems(out, storage, {w.key: (records.record(w.key) or {}).get("sha256")
                                                 for w in recorded}, recorded))
    log.info("repair: %d of %d recorded chunks damaged%s", len(damaged), len(recorded),
             f" ({', '.join(damaged[:8])})" if damaged else "")
    if damaged:
        unmark(out, storage)
        for key in damaged:
            records.forget(key)


def run_build_cube(config: RunConfig, repair: bool = False) -> CubeBuildResult:
    """Build (or finish) the cube described by `config.cube`. ChunkBuildError lists failed chunks
    after every other chunk was written, so a rerun after the fix completes the cube. With `repair`,
    recorded chunks whose values differ from their record are forgotten first, and so rebuilt."""
    cfg = config.cube
    if cfg is None:
        raise CubeError("the run configuration has no `cube:` section")
    if config.stac.url is None:
        raise CubeError("stac.url is not set: the cube builder searches a STAC API")
    storage = config.storage
    grid = planned_grid(cfg)
    check_writable(cfg.out, storage)  # a missing bucket or refused access, named, before anything else
    check_owned(cfg.out, storage)  # before anything is searched or written
    signer = load_signer(cfg.sign) if cfg.sign else None
    bbox = search_bbox(grid)
    try:
        client = open_client(config.stac.url, config.stac.timeout_s, config.stac.max_retries)
        found = [search_source(client, config.stac.url, cfg, src, bbox, signer) for src in cfg.sources]
    except ValueError as err:  # a body that is not JSON (an HTML login page, a proxy's error page)
        raise StacSearchError(f"STAC API {config.stac.url} answered with something that is not STAC JSON "
                              f"({type(err).__name__}: {err}): check stac.url") from None
    lineage = _lineage(cfg, config.stac.url, found, grid.to_dict())
    fingerprint = lineage["fingerprint"]

    records = CompletionRecords(Target(cfg.out + ".progress", storage), fingerprint)
    existing = stored_lineage(cfg.out, storage)
    ours = not claim(Target(cfg.out, storage), existing.get("fingerprint") if existing else None,
                     fingerprint, "a cube", CubeStorageError)
    if "template" not in (records.done() if ours else set()):
        records.clear()
        write_template(template(grid, cfg.band_names(), cfg.chunk, lineage), cfg.out, storage,
                       cfg.zarr_format, cfg.zstd_level)
        records.mark("template")

    windows = plan_chunks(grid, cfg.chunk)
    if repair and ours:
        _forget_damaged(cfg.out, storage, records, windows)
    log.info("cube %s: grid %s, %d bands, %d chunks of %d px", cfg.out, grid.shape, len(cfg.band_names()),
             len(windows), cfg.chunk)
    spec = CubeChunkSpec(cfg, storage, found, grid, source_gdal_options(storage))
    forget_datasets()  # assets may have changed since an earlier build in this process
    executor = Executor(cfg.workers, config.gateway, threads=not config.gateway.address)
    report = run_plan(windows, build_cube_chunk, spec, records, executor, name="cube chunks",
                      expected=(ChunkBuildError,))
    if report.failures:
        for f in report.failures:
            log.error("%s", f.detail)
        raise ChunkBuildError(f"{len(report.failures)} of {len(windows)} chunks failed (the others are written "
                              "and recorded; rerun after fixing to finish):\n  "
                              + "\n  ".join(f.detail for f in report.failures))
    consolidate(cfg.out, storage)
    quicklook = cfg.out + ".quicklook.png"
    png = quicklook_png(open_cube(cfg.out, storage, complete=False), cfg.rgb_bands())
    Target(quicklook, storage).write_bytes(png)
    mark_complete(cfg.out, storage, records.digest(), chunk_digests(records, [w.key for w in windows]))
    log.info("cube done: %s (quicklook %s)", cfg.out, quicklook)
    return CubeBuildResult(cfg.out, quicklook, (len(cfg.band_names()), *grid.shape), len(windows),
                           report.ran, report.skipped)
