"""Regeneration's working stores (`<workdir>/regen/cube.zarr` and `.../map`): their templates, the
stale chunks run on the chunk engine with the cube build's and the map job's own chunk tasks, and
their complete marks and chunk manifests, vouching for exactly the current chunk input keys."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import zarr

from misomap import __version__
from misomap.core.config_base import GatewayConfig, StorageConfig
from misomap.core.errors import MisomapError
from misomap.core.storage import Target
from misomap.cube.build import CubeChunkSpec, build_cube_chunk
from misomap.cube.config import CubeConfig
from misomap.cube.grid import Grid
from misomap.cube.stack import forget_datasets
from misomap.cube.store import (
    COMPLETE_KEY,
    consolidate,
    mark_complete,
    require_complete,
    stored_lineage,
    template,
    unmark,
    write_template,
)
from misomap.mapping.chunk import MapSpec, predict_chunk, zarr_url
from misomap.mapping.config import MapConfig
from misomap.mapping.store import MapStoreError, ensure_template, mark_map_complete
from misomap.plan.regen import sha
from misomap.runtime import zarr_io
from misomap.runtime.cluster import dask_client
from misomap.runtime.records import COMPLETE_ATTR, CompletionRecords, chunk_digests
from misomap.runtime.runner import KeyedChunk, RunReport, run_plan

log = logging.getLogger(__name__)


class RegenerateError(MisomapError):
    """The regeneration cannot start or finish: a missing section, a model for other bands, failed chunks."""


def ensure_working_cube(cfg: CubeConfig, storage: StorageConfig, grid: Grid, records: CompletionRecords) -> None:
    """The working cube's skeleton (grid, bands, chunking); rewritten with fresh records if those change."""
    ident = sha([grid.to_dict(), cfg.band_names(), cfg.chunk, cfg.zarr_format, cfg.zstd_level])[:16]
    existing = stored_lineage(cfg.out, storage)
    if existing is not None and existing.get("fingerprint") == ident:
        return
    log.info("writing the working cube template %s (stored fingerprint %s, now %s)", cfg.out,
             existing and existing.get("fingerprint"), ident)
    records.clear()
    lineage = {"software": f"misomap {__version__}", "grid": grid.to_dict(), "chunk": cfg.chunk,
               "bands": cfg.band_names(), "fingerprint": ident, "items": "per chunk: see <workdir>/regen/state/cube",
               "search": {"datetime": cfg.datetime}}  # the maps' STAC dates (map_export.imagery_period)
    write_template(template(grid, cfg.band_names(), cfg.chunk, lineage), cfg.out, storage, cfg.zarr_format,
                   cfg.zstd_level)
    consolidate(cfg.out, storage)


def ensure_working_map(mc: MapConfig, storage: StorageConfig, grid: Grid, rhash: str, digest: str,
                       records: list[CompletionRecords]) -> None:
    """The working map's skeleton for this model and map section; a map of another run is ours to
    discard (readers only ever see published versions), and so are its `records`."""
    store = Target(zarr_url(mc), storage)
    attrs = {"title": "misomap soil and permafrost map", "source": f"misomap {__version__}",
             "misomap_model": mc.model, "misomap_model_sha256": digest, "misomap_status": "incomplete"}
    try:
        written = ensure_template(store, grid, mc.chunk_px, mc.zarr_format, attrs, rhash)
    except MapStoreError:
        log.info("working map %s is from another model or map section: starting it afresh", mc.output)
        Target(mc.output, storage).delete()
        written = ensure_template(store, grid, mc.chunk_px, mc.zarr_format, attrs, rhash)
    if written:
        for r in records:
            r.clear()


def _attrs(url: str, storage: StorageConfig) -> dict[str, Any]:
    return dict(zarr.open_group(Target(url, storage).zarr_store(read_only=True), mode="r").attrs)


def _names(keys: dict[str, str]) -> tuple[list[str], list[str]]:
    return [f"{k}-{v}" for k, v in keys.items()], list(keys)


def _raise_failures(report: RunReport, what: str) -> None:
    if report.failures:
        raise RegenerateError(f"{len(report.failures)} {what} chunk(s) failed (the others are recorded; rerun to "
                              "retry them):\n  " + "\n  ".join(f"{f.key}: {f.message}" for f in report.failures))


def run_stale(cfg: CubeConfig, mc: MapConfig, storage: StorageConfig, gateway: GatewayConfig, spec: CubeChunkSpec,
              todo: dict[str, list[Any]], keys: dict[str, dict[str, str]], records: dict[str, CompletionRecords]
              ) -> None:
    """Run the stale cube chunks, then the stale map chunks, on one dask cluster (none when nothing is
    stale); each store loses its complete mark before its chunks are rewritten and gets it back,
    with its chunk manifest, for exactly the current `keys`, once they all are."""
    map_store = Target(zarr_url(mc), storage)
    if todo["cube"]:
        unmark(cfg.out, storage)
    if todo["map"]:
        zarr_io.unmark(map_store, COMPLETE_ATTR)
    forget_datasets()
    busy = bool(todo["cube"] or todo["map"])
    with dask_client(max(cfg.workers, mc.workers), gateway) if busy else contextlib.nullcontext() as client:
        if todo["cube"]:
            _raise_failures(run_plan([KeyedChunk(w, keys["cube"][w.key]) for w in todo["cube"]], build_keyed, spec,
                                     records["cube"], client, name="regen-cube", expected=(Exception,)), "cube")
        digest = sha(sorted(_names(keys["cube"])[0]))
        if (_attrs(cfg.out, storage).get(COMPLETE_KEY) or {}).get("records_sha256") != digest:
            mark_complete(cfg.out, storage, digest, chunk_digests(records["cube"], *_names(keys["cube"])))
        if todo["map"]:
            require_complete(cfg.out, storage)  # the map stage reads only a finished cube
            _raise_failures(run_plan([KeyedChunk(m, keys["map"][m.key]) for m in todo["map"]], predict_keyed,
                                     MapSpec(mc, storage), records["map"], client, name="regen-map",
                                     expected=(Exception,)), "map")
    digest = sha(sorted(_names(keys["map"])[0]))
    if _attrs(map_store.url, storage).get(COMPLETE_ATTR) != digest:
        names, chunk_keys = _names(keys["map"])
        layers = (records["map"].record(names[0]) or {}).get("layers", []) if names else []
        mark_map_complete(map_store, digest, layers, chunk_digests(records["map"], names, chunk_keys))


def build_keyed(chunk: KeyedChunk, spec: CubeChunkSpec) -> dict[str, Any]:
    """The cube build's own chunk task on a keyed chunk; recorded under its input key."""
    return {"chunk": chunk.window.key, **build_cube_chunk(chunk.window, spec)}


def predict_keyed(chunk: KeyedChunk, spec: MapSpec) -> dict[str, Any]:
    """The map job's own chunk task on a keyed chunk; recorded under its input key."""
    return {"chunk": chunk.window.key, **predict_chunk(chunk.window, spec)}
