"""`misomap plan` and `misomap regenerate`: the tile plan of a run, and search → cube → predict →
publish over it, each stage idempotent and resumable.

Every cube chunk has an input key: a hash of the cube section, the grid and the ids and `updated`
times of the STAC items whose footprints touch the chunk. Every map chunk's key hashes the map run
(map section + model checkpoint digest) and the keys of the cube chunks its predictor reads (its
window plus halo). A chunk is rebuilt only when its key has no completion record, so a run killed
anywhere resumes, a new item redoes only the chunks it touches, and a run whose overall key equals the
published version's does no work at all. Working stores live under `<workdir>/regen/` (ours alone);
readers see only `publish.root`, where whole versions appear atomically (misomap.publish.versions).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any


from misomap import __version__
from misomap.core.classes import SOIL_ORDERS
from misomap.config import RunConfig
from misomap.cube.build import CubeChunkSpec, build_cube_chunk, overlapping, planned_grid, search_bbox
from misomap.cube.config import CubeConfig
from misomap.cube.grid import ChunkWindow, Grid
from misomap.cube.search import FoundItems, load_signer, open_client, search_source
from misomap.cube.stack import forget_datasets, source_gdal_options
from misomap.cube.store import consolidate, stored_lineage, template, write_template
from misomap.core.errors import ConfigError, MisomapError
from misomap.core.storage import Target
from misomap.mapping.chunk import MapSpec, context_bounds, predict_chunk, run_hash, zarr_url
from misomap.runtime.cluster import dask_client
from misomap.runtime.records import CompletionRecords, run_lock
from misomap.runtime.runner import KeyedChunk, RunReport, run_plan
from misomap.mapping.config import MapConfig
from misomap.mapping.export import export_all
from misomap.mapping.layers import LAYERS
from misomap.mapping.predictors.api import get_predictor, model_digest
from misomap.mapping.store import MapStoreError, ensure_template
from misomap.plan.plan import RegionPlan, StageCost, estimate, make_plan, statewide_grid
from misomap.publish import versions
from misomap.viewer.publish import training_pedons, write_viewer

log = logging.getLogger(__name__)


class RegenerateError(MisomapError):
    """The regeneration cannot start or finish: a missing section, a model for other bands, failed chunks."""


@dataclass(frozen=True)
class StageReport:
    """What one stage did: units run and skipped (up to date)."""

    name: str
    ran: int
    skipped: int
    note: str = ""


@dataclass(frozen=True)
class RegenerateSummary:
    """What a regeneration did, stage by stage, and the version readers now see."""

    stages: tuple[StageReport, ...]
    version: str | None
    new_version: bool
    inputs_key: str
    seconds: float


@dataclass(frozen=True)
class DryRun:
    """The task graph and cost of a regeneration, computed without reading imagery."""

    plan: RegionPlan
    costs: list[StageCost]
    graph: dict[str, tuple[Any, ...]] = field(repr=False)

    @property
    def n_edges(self) -> int:
        return sum(len(t) - 1 for t in self.graph.values())


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _cube(config: RunConfig) -> CubeConfig:
    if config.cube is None:
        raise ConfigError("the run configuration has no `cube:` section: regenerate builds the cube it maps")
    return config.cube


def map_bytes_per_px() -> int:
    """Bytes per pixel of the map's uint8 layers (per-class layers count once per soil order)."""
    return sum(len(SOIL_ORDERS) if layer.per_class else 1 for layer in LAYERS)


def region_plan(config: RunConfig, statewide: bool = False, resolution: float | None = None) -> RegionPlan:
    """The run's tile plan: the cube's grid (all of Alaska for `area: alaska` or `statewide`), at
    `resolution` if given, restricted to `plan.tiles` if set."""
    cfg = _cube(config)
    res = resolution or cfg.resolution
    if statewide or cfg.area == "alaska":
        grid = statewide_grid(res)
    else:
        grid = Grid.aligned(cfg.crs, res, planned_grid(cfg).bounds)
    map_res = res if resolution or config.map is None or config.map.resolution is None else config.map.resolution
    chunk_px = config.map.chunk_px if config.map else MapConfig.model_fields["chunk_px"].default
    return make_plan(grid, cfg.chunk, map_res, chunk_px, len(cfg.band_names()), map_bytes_per_px(),
                     config.plan.tiles)


def _overlap_keys(plan_grid: Grid, chunk: int, bounds: tuple[float, float, float, float],
                  planned: set[str]) -> list[str]:
    """Keys of the planned cube chunks whose area overlaps `bounds`."""
    r, (xmin, ymin, xmax, ymax) = plan_grid.resolution, bounds
    c0 = max(math.floor((xmin - plan_grid.xmin) / r / chunk + 1e-9), 0)
    c1 = math.ceil((xmax - plan_grid.xmin) / r / chunk - 1e-9)
    r0 = max(math.floor((plan_grid.ymax - ymax) / r / chunk + 1e-9), 0)
    r1 = math.ceil((plan_grid.ymax - ymin) / r / chunk - 1e-9)
    return [k for iy in range(r0, r1) for ix in range(c0, c1) if (k := f"{iy}.{ix}") in planned]


def _noop(*_: Any) -> None:
    """Stand-in task body of the dry-run graph."""


def task_graph(plan: RegionPlan) -> dict[str, tuple[Any, ...]]:
    """The regeneration as a dask graph: search → one task per cube chunk → one per map chunk (after
    the cube chunks under it) → publish. Dry runs and the scheduling bench use it."""
    planned = {w.key for w in plan.cube_chunks}
    graph: dict[str, tuple[Any, ...]] = {"search": (_noop,)}
    for w in plan.cube_chunks:
        graph[f"cube-{w.key}"] = (_noop, "search")
    for m in plan.map_chunks:
        sub = plan.map_grid.window(m.row0, m.col0, m.height, m.width)
        deps = _overlap_keys(plan.grid, plan.cube_chunk, sub.bounds, planned)
        graph[f"predict-{m.key}"] = (_noop, *[f"cube-{k}" for k in deps])
    graph["publish"] = (_noop, *[f"predict-{m.key}" for m in plan.map_chunks])
    return graph


def dry_run(config: RunConfig, statewide: bool = False, resolution: float | None = None) -> DryRun:
    """The graph and cost of a regeneration; reads no imagery, searches nothing, loads no model."""
    plan = region_plan(config, statewide, resolution)
    return DryRun(plan, estimate(plan, config.plan.rates), task_graph(plan))


def work_config(config: RunConfig) -> RunConfig:
    """The run with regenerate's own working stores: `<workdir>/regen/cube.zarr` and `.../map`."""
    if config.map is None:
        raise ConfigError("the run configuration has no `map:` section (model, model_path ...)")
    if config.publish is None:
        raise ConfigError("the run configuration has no `publish:` section (root, keep)")
    regen = f"{str(config.workdir).rstrip('/')}/regen"
    cube = _cube(config).model_copy(update={"out": f"{regen}/cube.zarr"})
    mapc = config.map.model_copy(update={"cube": cube.out, "output": f"{regen}/map"})
    return config.model_copy(update={"cube": cube, "map": mapc})


def _state(config: RunConfig, stage: str) -> CompletionRecords:
    return CompletionRecords(Target(f"{str(config.workdir).rstrip('/')}/regen/state/{stage}", config.storage))


def _updated(item: Any) -> str:
    p = item.properties
    return str(p.get("updated") or p.get("created") or p.get("datetime") or "")


def cube_keys(cfg: CubeConfig, found: list[FoundItems], plan: RegionPlan) -> dict[str, str]:
    """Input key of every planned cube chunk: cube section, grid, and the touching items' ids and
    `updated` times."""
    ident = [cfg.model_dump(mode="json", exclude={"out", "workers"}), cfg.band_names(), plan.grid.to_dict()]
    keys = {}
    for w in plan.cube_chunks:
        bbox = search_bbox(plan.grid.window(w.row0, w.col0, w.height, w.width))
        items = sorted((f.source.collection, group, it.id, _updated(it))
                       for f in found for group, its in f.groups.items() for it in overlapping(its, bbox))
        keys[w.key] = _sha([ident, w.key, items])[:24]
    return keys


def _cube_task(chunk: KeyedChunk, spec: CubeChunkSpec) -> dict[str, Any]:
    """Build and write one cube chunk (the cube build's own task); recorded under its input key."""
    return {"chunk": chunk.window.key, **build_cube_chunk(chunk.window, spec)}


def _predict_task(chunk: KeyedChunk, spec: MapSpec) -> dict[str, Any]:
    """Predict one map chunk (the map job's own task); recorded under its input key."""
    return {"chunk": chunk.window.key, **predict_chunk(chunk.window, spec)}


def _raise_failures(report: RunReport, what: str) -> None:
    if report.failures:
        raise RegenerateError(f"{len(report.failures)} {what} chunk(s) failed (the others are recorded; rerun to "
                              "retry them):\n  " + "\n  ".join(f"{f.key}: {f.message}" for f in report.failures))


def _ensure_cube_template(cfg: CubeConfig, config: RunConfig, grid: Grid) -> None:
    """The working cube's skeleton (grid, bands, chunking); rewritten with fresh records if those change."""
    ident = _sha([grid.to_dict(), cfg.band_names(), cfg.chunk, cfg.zarr_format, cfg.zstd_level])[:16]
    existing = stored_lineage(cfg.out, config.storage)
    if existing is not None and existing.get("fingerprint") == ident:
        return
    log.info("writing the working cube template %s (stored fingerprint %s, now %s)", cfg.out,
             existing and existing.get("fingerprint"), ident)
    _state(config, "cube").clear()
    lineage = {"software": f"misomap {__version__}", "grid": grid.to_dict(), "chunk": cfg.chunk,
               "bands": cfg.band_names(), "fingerprint": ident,
               "items": "per chunk: see <workdir>/regen/state/cube",
               "search": {"datetime": cfg.datetime}}  # the maps' STAC dates (map_export.imagery_period)
    write_template(template(grid, cfg.band_names(), cfg.chunk, lineage), cfg.out, config.storage,
                   cfg.zarr_format, cfg.zstd_level)
    consolidate(cfg.out, config.storage)


def _ensure_map_template(wconfig: RunConfig, grid: Grid, rhash: str, digest: str) -> None:
    """The working map's skeleton for this model and map section; a map of another run is ours to
    discard (readers only ever see published versions)."""
    mc = wconfig.map
    assert mc is not None
    store = Target(zarr_url(mc), wconfig.storage)
    attrs = {"title": "misomap soil and permafrost map", "source": f"misomap {__version__}",
             "misomap_model": mc.model, "misomap_model_sha256": digest}
    try:
        written = ensure_template(store, grid, mc.chunk_px, mc.zarr_format, attrs, rhash)
    except MapStoreError:
        log.info("working map %s is from another model or map section: starting it afresh", mc.output)
        Target(mc.output, wconfig.storage).delete()
        written = ensure_template(store, grid, mc.chunk_px, mc.zarr_format, attrs, rhash)
    if written:
        _state(wconfig, "map").clear()


def _check_bands(mc: MapConfig, cfg: CubeConfig, predictor: Any) -> None:
    missing = [b for b in predictor.bands if b not in cfg.band_names()]
    if missing:
        raise RegenerateError(
            f"model checkpoint {mc.model_path or mc.model} reads band(s) {missing} that the cube does not "
            f"have (cube bands: {cfg.band_names()}): use a checkpoint trained on this cube's bands or add "
            "them to cube.sources; nothing was built or published")


def _search(config: RunConfig, cfg: CubeConfig, grid: Grid) -> list[FoundItems]:
    if config.stac.url is None:
        raise ConfigError("stac.url is not set: regenerate searches a STAC API")
    url = str(config.stac.url)
    signer = load_signer(cfg.sign) if cfg.sign else None
    client = open_client(url, config.stac.timeout_s, config.stac.max_retries)
    return [search_source(client, url, cfg, src, search_bbox(grid), signer) for src in cfg.sources]


def run_regenerate(config: RunConfig) -> RegenerateSummary:
    """Regenerate and publish the map of the run's plan; only stale chunks are recomputed."""
    start = time.perf_counter()
    plan = region_plan(config)  # no land / unknown tile: refused here, before anything is read
    wconfig = work_config(config)
    cfg, mc, pub = wconfig.cube, wconfig.map, config.publish
    assert cfg is not None and mc is not None and pub is not None
    current = versions.latest(pub.root, config.storage)  # a dangling pointer is refused here
    digest = model_digest(mc, config.storage)
    predictor = get_predictor(mc, config.storage)
    _check_bands(mc, cfg, predictor)

    with run_lock(f"{str(config.workdir).rstrip('/')}/regen"):
        found = _search(config, cfg, plan.grid)
        ckeys = cube_keys(cfg, found, plan)
        rhash = run_hash(mc, digest)
        inputs_key = _sha([sorted(ckeys.items()), rhash, [w.key for w in plan.map_chunks]])
        stages = [StageReport("search", sum(len(its) for f in found for its in f.groups.values()), 0, "items")]
        if current is not None and current.inputs_key == inputs_key:
            log.info("inputs unchanged since version %s: nothing to do", current.id)
            stages += [StageReport(s, 0, n) for s, n in (("cube", len(ckeys)), ("predict", len(plan.map_chunks)),
                                                         ("publish", 1))]
            return RegenerateSummary(tuple(stages), current.id, False, inputs_key, time.perf_counter() - start)

        _ensure_cube_template(cfg, wconfig, plan.grid)
        cube_done = _state(wconfig, "cube").done()
        cube_todo = [w for w in plan.cube_chunks if f"{w.key}-{ckeys[w.key]}" not in cube_done]
        _ensure_map_template(wconfig, plan.map_grid, rhash, digest)
        map_keys = _map_keys(plan, ckeys, rhash, predictor)
        map_done = _state(wconfig, "map").done()
        map_todo = [m for m in plan.map_chunks if f"{m.key}-{map_keys[m.key]}" not in map_done]
        log.info("regenerate: %d/%d cube chunks and %d/%d map chunks to run", len(cube_todo),
                 len(plan.cube_chunks), len(map_todo), len(plan.map_chunks))
        if cube_todo or map_todo:
            _compute(wconfig, found, plan, cube_todo, ckeys, map_todo, map_keys)
        stages += [StageReport("cube", len(cube_todo), len(plan.cube_chunks) - len(cube_todo), "chunks"),
                   StageReport("predict", len(map_todo), len(plan.map_chunks) - len(map_todo), "chunks")]
        if map_todo or not _has_exports(wconfig):
            export_all(mc, wconfig.storage, wconfig.name, plan.map_grid)
            write_viewer(mc, wconfig.storage, wconfig.name, plan.map_grid,
                         training_pedons(wconfig.workdir, wconfig.storage))
        version, new = versions.publish(mc.output, pub.root, config.storage, inputs_key, pub.keep,
                                        search_bbox(plan.grid), title=f"{config.name} soil and permafrost map")
        stages.append(StageReport("publish", int(new), int(not new), version.id))
        _forget_stale(wconfig, ckeys, map_keys)
    return RegenerateSummary(tuple(stages), version.id, new, inputs_key, time.perf_counter() - start)


def _map_keys(plan: RegionPlan, ckeys: dict[str, str], rhash: str, predictor: Any) -> dict[str, str]:
    """Input key of every map chunk: the map run and the keys of the cube chunks its predictor reads."""
    planned = set(ckeys)
    out = {}
    for m in plan.map_chunks:
        sub = plan.map_grid.window(m.row0, m.col0, m.height, m.width)
        reads = _overlap_keys(plan.grid, plan.cube_chunk, context_bounds(plan.grid, sub, predictor), planned)
        out[m.key] = _sha([rhash, m.key, [(k, ckeys[k]) for k in reads]])[:24]
    return out


def _compute(wconfig: RunConfig, found: list[FoundItems], plan: RegionPlan, cube_todo: list[ChunkWindow],
             ckeys: dict[str, str], map_todo: list[ChunkWindow], map_keys: dict[str, str]) -> None:
    """Run the stale cube chunks, then the stale map chunks, on one dask cluster."""
    cfg, mc = wconfig.cube, wconfig.map
    assert cfg is not None and mc is not None
    forget_datasets()
    spec = CubeChunkSpec(cfg, wconfig.storage, found, plan.grid, source_gdal_options(wconfig.storage))
    with dask_client(max(cfg.workers, mc.workers), wconfig.gateway) as client:
        if cube_todo:
            _raise_failures(run_plan([KeyedChunk(w, ckeys[w.key]) for w in cube_todo], _cube_task, spec,
                                     _state(wconfig, "cube"), client, name="regen-cube", expected=(Exception,)),
                            "cube")
            consolidate(cfg.out, wconfig.storage)
        if map_todo:
            _raise_failures(run_plan([KeyedChunk(m, map_keys[m.key]) for m in map_todo], _predict_task,
                                     MapSpec(mc, wconfig.storage),
                                     _state(wconfig, "map"), client, name="regen-map", expected=(Exception,)),
                            "map")


def _has_exports(wconfig: RunConfig) -> bool:
    mc = wconfig.map
    assert mc is not None
    return Target(mc.output, wconfig.storage).join("quicklook.png").exists()


def _forget_stale(wconfig: RunConfig, ckeys: dict[str, str], map_keys: dict[str, str]) -> None:
    """Drop completion records of superseded chunk inputs (keeps the state folders small)."""
    for stage, keys in (("cube", ckeys), ("map", map_keys)):
        log_ = _state(wconfig, stage)
        current = {f"{k}-{v}" for k, v in keys.items()}
        for name in log_.done() - current:
            log_.forget(name)


def plan_report(config: RunConfig, statewide: bool, resolutions: list[float]) -> list[tuple[str, RegionPlan]]:
    """Plans `misomap plan` prints: the run's region at each resolution (its own if none given)."""
    cfg = _cube(config)
    name = "alaska" if statewide or cfg.area == "alaska" else (cfg.area or config.name)
    return [(f"{name} at {r or cfg.resolution:g} m", region_plan(config, statewide, r))
            for r in (resolutions or [None])]

