"""`misomap plan` and `misomap regenerate`: the tile plan of a run, and search → cube → predict →
publish over it, each stage idempotent and resumable.

Each stage is handed to its wing: the plan, task graph and chunk input keys to misomap.plan, the
chunks to the chunk engine (misomap.runtime) with the cube's and the map's own chunk tasks, the
versions and the publish lock to misomap.publish. A chunk is rebuilt only when its input key has no
completion record, so a run killed anywhere resumes and a run whose overall key equals the published
version's does no work. Working stores live under `<workdir>/regen/` (ours alone: anything else
found there, or in `publish.root`, is refused before any write); each carries a complete mark
vouching for exactly the current chunk keys. Readers see only `publish.root`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from misomap.config import RunConfig
from misomap.core.config_base import overlaps
from misomap.core.errors import ConfigError
from misomap.core.storage import Target
from misomap.cube.build import CubeChunkSpec, planned_grid, search_bbox
from misomap.cube.config import CubeConfig
from misomap.cube.grid import Grid
from misomap.cube.search import FoundItems, load_signer, open_client, search_source
from misomap.cube.stack import source_gdal_options
from misomap.cube.store import check_owned
from misomap.mapping.chunk import context_bounds, run_hash
from misomap.mapping.config import MapConfig
from misomap.mapping.export import export_all
from misomap.mapping.layers import map_bytes_per_px
from misomap.mapping.predictors.api import get_predictor, model_digest
from misomap.mapping.store import check_map_owned, write_file_manifest
from misomap.mapping.working import RegenerateError, ensure_working_cube, ensure_working_map, run_stale
from misomap.plan.plan import RegionPlan, check_resolution, estimate, make_plan, statewide_grid
from misomap.plan.regen import DryRun, cube_keys, map_keys, records_digest, sha, task_graph
from misomap.publish import versions
from misomap.publish.lock import publish_lock
from misomap.runtime.records import CompletionRecords, forget_stale, run_lock
from misomap.viewer.publish import training_pedons, write_viewer

log = logging.getLogger(__name__)
REGEN_PARTS = frozenset({"cube.zarr", "cube.zarr.chunks.json", "map", "state"})
STATE_PARTS = frozenset({"cube", "map", "export"})
"""What `<workdir>/regen/` and its `state/` hold; anything else there was not written by regenerate."""


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


def _cube(config: RunConfig) -> CubeConfig:
    if config.cube is None:
        raise ConfigError("the run configuration has no `cube:` section: regenerate builds the cube it maps")
    return config.cube


def region_plan(config: RunConfig, statewide: bool = False, resolution: float | None = None) -> RegionPlan:
    """The run's tile plan: the cube's grid (all of Alaska for `area: alaska` or `statewide`), at
    `resolution` if given, restricted to `plan.tiles` if set."""
    cfg = _cube(config)
    res = cfg.resolution if resolution is None else check_resolution(resolution)
    grid = statewide_grid(res) if statewide or cfg.area == "alaska" else Grid.aligned(cfg.crs, res,
                                                                                      planned_grid(cfg).bounds)
    map_res = res if resolution is not None or config.map is None or config.map.resolution is None \
        else config.map.resolution
    chunk_px = config.map.chunk_px if config.map else MapConfig.model_fields["chunk_px"].default
    return make_plan(grid, cfg.chunk, map_res, chunk_px, len(cfg.band_names()), map_bytes_per_px(), config.plan.tiles)


def dry_run(config: RunConfig, statewide: bool = False, resolution: float | None = None) -> DryRun:
    """The graph and cost of a regeneration; reads no imagery, searches nothing, loads no model."""
    plan = region_plan(config, statewide, resolution)
    return DryRun(plan, estimate(plan, config.plan.rates), task_graph(plan))


def plan_report(config: RunConfig, statewide: bool, resolutions: list[float]) -> list[tuple[str, RegionPlan]]:
    """Plans `misomap plan` prints: the run's region at each resolution (its own if none given)."""
    cfg = _cube(config)
    name = "alaska" if statewide or cfg.area == "alaska" else (cfg.area or config.name)
    return [(f"{name} at {cfg.resolution if r is None else r:g} m", region_plan(config, statewide, r))
            for r in (resolutions or [None])]


def _regen(config: RunConfig) -> str:
    return f"{str(config.workdir).rstrip('/')}/regen"


def work_config(config: RunConfig) -> RunConfig:
    """The run with regenerate's own working stores: `<workdir>/regen/cube.zarr` and `.../map`."""
    if config.map is None:
        raise ConfigError("the run configuration has no `map:` section (model, model_path ...)")
    if config.publish is None:
        raise ConfigError("the run configuration has no `publish:` section (root, keep)")
    cube = _cube(config).model_copy(update={"out": f"{_regen(config)}/cube.zarr"})
    mapc = config.map.model_copy(update={"cube": cube.out, "output": f"{_regen(config)}/map"})
    return config.model_copy(update={"cube": cube, "map": mapc})


def _state(config: RunConfig, stage: str) -> CompletionRecords:
    return CompletionRecords(Target(f"{_regen(config)}/state/{stage}", config.storage))


def check_working_stores(config: RunConfig, wconfig: RunConfig) -> None:
    """Refuse, before anything is written, working stores or a publish root that hold what this
    command did not write (OwnershipError naming them; nothing is changed)."""
    cfg, mc, pub, regen = wconfig.cube, wconfig.map, config.publish, _regen(config)
    assert cfg is not None and mc is not None and pub is not None
    if overlaps(pub.root, regen):
        raise ConfigError(f"publish.root {pub.root} overlaps regenerate's working stores {regen}: publish "
                          "outside <workdir>/regen")
    versions.check_parts(Target(regen, config.storage), REGEN_PARTS, {"state": STATE_PARTS}, "`misomap regenerate`")
    check_owned(cfg.out, wconfig.storage)
    check_map_owned(Target(mc.output, wconfig.storage))
    versions.check_owned(pub.root, config.storage)


def _search(config: RunConfig, cfg: CubeConfig, grid: Grid) -> list[FoundItems]:
    if config.stac.url is None:
        raise ConfigError("stac.url is not set: regenerate searches a STAC API")
    url, signer = str(config.stac.url), load_signer(cfg.sign) if cfg.sign else None
    client = open_client(url, config.stac.timeout_s, config.stac.max_retries)
    return [search_source(client, url, cfg, src, search_bbox(grid), signer) for src in cfg.sources]


def run_regenerate(config: RunConfig) -> RegenerateSummary:
    """Regenerate and publish the map of the run's plan; only stale chunks are recomputed. One run
    at a time per workdir and per publish root (the second waits)."""
    start = time.perf_counter()
    plan = region_plan(config)  # no land / unknown tile: refused here, before anything is read
    wconfig = work_config(config)
    cfg, mc, pub = wconfig.cube, wconfig.map, config.publish
    assert cfg is not None and mc is not None and pub is not None
    versions.latest(pub.root, config.storage)  # a bad or dangling pointer is refused here
    digest, predictor = model_digest(mc, config.storage), get_predictor(mc, config.storage)
    missing = [b for b in predictor.bands if b not in cfg.band_names()]
    if missing:
        raise RegenerateError(f"model checkpoint {mc.model_path or mc.model} reads band(s) {missing} that the cube "
                              f"does not have (cube bands: {cfg.band_names()}): use a checkpoint trained on this "
                              "cube's bands or add them to cube.sources; nothing was built or published")
    check_working_stores(config, wconfig)
    with run_lock(_regen(config)), publish_lock(pub.root, config.storage) as lease:
        current = versions.latest(pub.root, config.storage)  # read again: another run may have published
        found = _search(config, cfg, plan.grid)
        ckeys = cube_keys(cfg, found, plan)
        rhash = run_hash(mc.model_copy(update={"cube": "regen-cube", "model_path": None}), digest)
        inputs_key = sha([sorted(ckeys.items()), rhash, [w.key for w in plan.map_chunks]])
        stages = [StageReport("search", sum(len(its) for f in found for its in f.groups.values()), 0, "items")]
        if current is not None and current.inputs_key == inputs_key:
            versions.verify(pub.root, config.storage, current)  # "nothing to do" only for a whole version
            log.info("inputs unchanged since version %s: nothing to do", current.id)
            stages += [StageReport(s, 0, n) for s, n in (("cube", len(ckeys)), ("predict", len(plan.map_chunks)),
                                                         ("publish", 1))]
            return RegenerateSummary(tuple(stages), current.id, False, inputs_key, time.perf_counter() - start)
        ensure_working_cube(cfg, wconfig.storage, plan.grid, _state(wconfig, "cube"))
        mkeys = map_keys(plan, ckeys, rhash, lambda g, sub: context_bounds(g, sub, predictor))
        ensure_working_map(mc, wconfig.storage, plan.map_grid, rhash, digest,
                           [_state(wconfig, "map"), _state(wconfig, "export")])
        todo = {stage: [w for w in chunks if f"{w.key}-{keys[w.key]}" not in _state(wconfig, stage).done()]
                for stage, chunks, keys in (("cube", plan.cube_chunks, ckeys), ("map", plan.map_chunks, mkeys))}
        log.info("regenerate: %d/%d cube chunks and %d/%d map chunks to run", len(todo["cube"]),
                 len(plan.cube_chunks), len(todo["map"]), len(plan.map_chunks))
        states = {stage: _state(wconfig, stage) for stage in ("cube", "map")}
        run_stale(cfg, mc, wconfig.storage, wconfig.gateway, CubeChunkSpec(cfg, wconfig.storage, found, plan.grid,
                  source_gdal_options(wconfig.storage)), todo, {"cube": ckeys, "map": mkeys}, states)
        stages += [StageReport("cube", len(todo["cube"]), len(plan.cube_chunks) - len(todo["cube"]), "chunks"),
                   StageReport("predict", len(todo["map"]), len(plan.map_chunks) - len(todo["map"]), "chunks")]
        exported = records_digest(mkeys)[:24]
        if todo["map"] or exported not in _state(wconfig, "export").done():
            output = Target(mc.output, wconfig.storage)
            output.join("_progress/files.json").delete()
            export_all(mc, wconfig.storage, wconfig.name, plan.map_grid)
            write_viewer(mc, wconfig.storage, wconfig.name, plan.map_grid,
                         training_pedons(wconfig.workdir, wconfig.storage))
            write_file_manifest(output)
            _state(wconfig, "export").mark(exported, {"map_records_sha256": records_digest(mkeys)})
        version, new = versions.publish(mc.output, pub.root, config.storage, inputs_key, pub.keep,
                                        search_bbox(plan.grid), f"{config.name} soil and permafrost map", lease)
        stages.append(StageReport("publish", int(new), int(not new), version.id))
        for stage, keys in (("cube", ckeys), ("map", mkeys), ("export", {exported: ""})):
            forget_stale(_state(wconfig, stage), {f"{k}-{v}" if v else k for k, v in keys.items()})
    return RegenerateSummary(tuple(stages), version.id, new, inputs_key, time.perf_counter() - start)
