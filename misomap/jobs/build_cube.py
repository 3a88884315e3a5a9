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

import dask
import numpy as np
from tqdm import tqdm

from misomap import __version__
from misomap.config import RunConfig
from misomap.core.config_base import GatewayConfig, StorageConfig
from misomap.core.storage import Target
from misomap.cube.build import build_chunk, planned_grid, search_bbox
from misomap.cube.config import CubeConfig
from misomap.cube.errors import ChunkBuildError, CubeError, CubeStorageError, StacSearchError
from misomap.cube.grid import ChunkWindow, Grid, plan_chunks
from misomap.cube.quicklook import quicklook_png
from misomap.cube.reader import open_cube
from misomap.cube.search import FoundItems, load_signer, open_client, search_source
from misomap.cube.stack import forget_datasets, source_gdal_options
from misomap.cube.store import (
    CompletionRecords,
    check_owned,
    check_writable,
    consolidate,
    mark_complete,
    stored_lineage,
    template,
    values_sha256,
    write_region,
    write_template,
)
from misomap.jobs.cluster import dask_client

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


def _run_chunk(cfg: CubeConfig, storage: StorageConfig, found: list[FoundItems], grid: Grid, window: ChunkWindow,
               records: CompletionRecords, gdal_options: dict[str, str]) -> str | None:
    """Build, write and record one chunk; the error message if its build failed, else None."""
    try:
        values = build_chunk(cfg, found, grid, window, gdal_options)
        write_region(cfg.out, storage, values, window.row0, window.col0)
        records.mark(window.key, all_nodata=bool(np.isnan(values).all()), sha256=values_sha256(values))
        return None
    except ChunkBuildError as err:
        log.error("%s", err)
        return str(err)


def _run_threads(todo: list[ChunkWindow], args: tuple[Any, ...], workers: int, bar: tqdm) -> list[str]:
    """Chunk tasks on the local threaded scheduler (each thread keeps its assets open across chunks)."""
    def one(window: ChunkWindow) -> str | None:
        try:
            return _run_chunk(*args[:4], window, *args[4:])
        finally:
            bar.update(1)

    tasks = [dask.delayed(one)(w) for w in todo]
    return [f for f in dask.compute(*tasks, scheduler="threads", num_workers=workers) if f]


def _run_gateway(todo: list[ChunkWindow], args: tuple[Any, ...], workers: int, gateway: GatewayConfig,
                 bar: tqdm) -> list[str]:
    """Chunk tasks on a dask-gateway cluster; the progress bar follows the futures on the client."""
    from distributed import as_completed

    failures = []
    with dask_client(workers, gateway) as client:
        shared = client.scatter(list(args), broadcast=True)
        futures = {client.submit(_run_chunk, *shared[:4], w, *shared[4:], key=f"cube-chunk-{w.key}",
                                 pure=False): w for w in todo}
        for fut in as_completed(futures):
            bar.update(1)
            if fut.status == "error":
                failures.append(f"chunk {futures[fut].key}: {fut.exception()!r}")
            elif fut.result():
                failures.append(fut.result())
    return failures


def run_build_cube(config: RunConfig) -> CubeBuildResult:
    """Build (or finish) the cube described by `config.cube`. ChunkBuildError lists failed chunks
    after every other chunk was written, so a rerun after the fix completes the cube."""
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

    records = CompletionRecords(cfg.out, storage, fingerprint)
    existing = stored_lineage(cfg.out, storage)
    if existing is not None and existing.get("fingerprint") != fingerprint:
        raise CubeStorageError(
            f"{cfg.out} holds a cube built from other inputs (fingerprint {existing.get('fingerprint')} "
            f"!= {fingerprint}): remove it or set cube.out to a new location")
    done = records.done() if existing is not None else set()
    if "template" not in done:
        records.clear()
        write_template(template(grid, cfg.band_names(), cfg.chunk, lineage), cfg.out, storage,
                       cfg.zarr_format, cfg.zstd_level)
        records.mark("template")

    windows = plan_chunks(grid, cfg.chunk)
    todo = [w for w in windows if w.key not in done]
    log.info("cube %s: grid %s, %d bands, %d chunks of %d px, %d to build", cfg.out, grid.shape,
             len(cfg.band_names()), len(windows), cfg.chunk, len(todo))
    args = (cfg, storage, found, grid, records, source_gdal_options(storage))
    forget_datasets()  # assets may have changed since an earlier build in this process
    with tqdm(total=len(windows), initial=len(windows) - len(todo), desc="cube chunks", unit="chunk") as bar:
        if not todo:
            failures = []
        elif config.gateway.address:
            failures = _run_gateway(todo, args, cfg.workers, config.gateway, bar)
        else:
            failures = _run_threads(todo, args, cfg.workers, bar)
    if failures:
        raise ChunkBuildError(f"{len(failures)} of {len(windows)} chunks failed (the others are written "
                              "and recorded; rerun after fixing to finish):\n  " + "\n  ".join(failures))
    consolidate(cfg.out, storage)
    quicklook = cfg.out + ".quicklook.png"
    png = quicklook_png(open_cube(cfg.out, storage, complete=False), cfg.rgb_bands())
    Target(quicklook, storage).write_bytes(png)
    mark_complete(cfg.out, storage, records.digest(), len(windows))
    log.info("cube done: %s (quicklook %s)", cfg.out, quicklook)
    return CubeBuildResult(cfg.out, quicklook, (len(cfg.band_names()), *grid.shape), len(windows),
                           len(todo), len(windows) - len(todo))
