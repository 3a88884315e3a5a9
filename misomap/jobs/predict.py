"""`misomap predict`: the map chunk by chunk on the chunk engine (each chunk a pure function of
(region, MapSpec), misomap.mapping.chunk), then the exports and the viewer.

Resumable: finished chunks carry completion records and are skipped on rerun, so a killed run,
rerun, ends byte-identical to an uninterrupted one. Runs on a local dask cluster by default or on a
dask-gateway cluster.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from misomap import __version__
from misomap.config import RunConfig
from misomap.core.config_base import StorageConfig
from misomap.core.errors import ConfigError, MisomapError, one_line
from misomap.core.storage import Target
from misomap.cube.grid import plan_chunks
from misomap.cube.reader import open_cube_cached
from misomap.cube.store import require_complete
from misomap.mapping.chunk import (
    MapSpec,
    map_executor,
    output_grid,
    predict_chunk,
    progress_url,
    run_hash,
    zarr_url,
)
from misomap.mapping.config import MapConfig
from misomap.mapping.export import check_exportable, export_all
from misomap.mapping.predictors.api import PredictorError, get_predictor, model_digest
from misomap.mapping.store import (
    FILES,
    check_map_owned,
    ensure_template,
    mark_map_complete,
    portable_location,
    write_file_manifest,
)
from misomap.runtime.records import CompletionRecords, chunk_digests, run_lock
from misomap.runtime.runner import run_plan
from misomap.viewer.publish import training_pedons, write_viewer

log = logging.getLogger(__name__)


class MapJobError(MisomapError):
    """Some chunks failed; the others finished and a rerun retries only the failed ones."""


@dataclass(frozen=True)
class PredictSummary:
    """What a map run did."""

    output: str
    chunks_total: int
    chunks_run: int
    pixels: int
    seconds: float

    @property
    def pixels_per_second(self) -> float:
        return self.pixels / self.seconds if self.seconds > 0 else float("nan")


def map_config(config: RunConfig) -> MapConfig:
    """The run's map section, or a clear error naming it."""
    if config.map is None:
        raise ConfigError("the run configuration has no `map:` section (cube, output, model ...)")
    return config.map


def with_map(config: RunConfig, model: str, model_path: str) -> RunConfig:
    """The run with a map section for `model`: the configured map settings if any, else defaults;
    the cube from the run (map.cube, else the cube section's output), the output
    `<workdir>/maps/<model>`."""
    base = config.map.model_dump() if config.map is not None else {"cube": config.cube_location()}
    section = MapConfig.model_validate({**base, "model": model, "model_path": model_path,
                                        "output": f"{config.workdir}/maps/{model}"})
    return config.model_copy(update={"map": section})


def check_inputs(config: RunConfig) -> str:
    """Everything a map run needs, checked once on the client before anything is written or any
    task submitted: the output is ours, the cube is finished and has the model's bands, the model
    loads. Returns the model's digest."""
    cfg = map_config(config)
    check_map_owned(Target(cfg.output, config.storage))
    require_complete(cfg.cube, config.storage)
    try:
        digest = model_digest(cfg, config.storage)
        predictor = get_predictor(cfg, config.storage)
    except MisomapError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to load is reported once, naming the file
        where = cfg.model_path or cfg.model
        raise PredictorError(f"cannot load the {cfg.model!r} model from {where}: {type(err).__name__}: "
                             f"{one_line(err)}; retrain it or fix map.model_path") from None
    bands = open_cube_cached(cfg.cube, config.storage)["band"].values.tolist()
    missing = [b for b in predictor.bands if b not in bands]
    if missing:
        raise PredictorError(f"cube {cfg.cube} lacks bands the {cfg.model!r} model needs: {missing}; "
                             f"the cube has {bands}: map with the cube the model was trained on")
    return digest


def _discard_map(cfg: MapConfig, storage: StorageConfig) -> None:
    """Remove this run's own earlier map (store, records, exports) for --overwrite; ownership was
    checked by check_inputs, so nothing foreign is here."""
    for part in ("viewer", "stac", "cogs", "model", "quicklook.png", "map.zarr", "_progress"):
        Target(cfg.output, storage).join(part).delete()


def run_predict(config: RunConfig, overwrite: bool = False) -> PredictSummary:
    """Predict the whole map, skipping finished chunks; then mark the store complete and export
    COGs, a quicklook and, last, STAC."""
    cfg = map_config(config)
    start = time.perf_counter()
    store = Target(zarr_url(cfg), config.storage)
    with run_lock(cfg.output):
        # Checked under the lock: a concurrent run's half-written template is never judged foreign.
        digest = check_inputs(config)
        check_exportable(cfg, config.storage)
        grid = output_grid(cfg, config.storage)
        rhash = run_hash(cfg, digest)
        records = CompletionRecords(Target(progress_url(cfg), config.storage))
        attrs = {"title": "misomap soil and permafrost map", "source": f"misomap {__version__}",
                 "misomap_input_cube": portable_location(cfg.cube), "misomap_model": cfg.model,
                 "misomap_model_path": portable_location(cfg.model_path or ""), "misomap_model_sha256": digest,
                 "misomap_status": "incomplete"}
        if overwrite:
            _discard_map(cfg, config.storage)
        if ensure_template(store, grid, cfg.chunk_px, cfg.zarr_format, attrs, rhash):
            records.clear()
        regions = plan_chunks(grid, cfg.chunk_px)
        report = run_plan(regions, predict_chunk, MapSpec(cfg, config.storage), records,
                          map_executor(cfg, config.gateway), name="map chunks", expected=(Exception,))
        if report.failures:
            causes: dict[str, list[str]] = {}
            for f in report.failures:
                causes.setdefault(f.message, []).append(f.key)
            raise MapJobError(f"{len(report.failures)} of {len(regions)} map chunks failed (map {store.url} stays "
                              "marked incomplete; rerun to retry them): " +
                              "; ".join(f"{err} (chunks {', '.join(sorted(keys)[:5])}"
                                        f"{' ...' if len(keys) > 5 else ''})" for err, keys in causes.items()))
        keys = [r.key for r in regions]
        mark_map_complete(store, records.digest(), (records.record(keys[0]) or {}).get("layers", []),
                          chunk_digests(records, keys))
        output = Target(cfg.output, config.storage)
        output.join(FILES).delete()  # the file manifest stands only for finished exports
        export_all(cfg, config.storage, config.name, grid)
        write_viewer(cfg, config.storage, config.name, grid,
                     training_pedons(config.workdir, config.storage))
        write_file_manifest(output)
    seconds = time.perf_counter() - start
    pixels = sum(r.height * r.width for r in report.todo)
    summary = PredictSummary(cfg.output, len(regions), report.ran, pixels, seconds)
    log.info("map done: %d/%d chunks run, %d px in %.1f s (%.0f px/s)", report.ran, len(regions),
             pixels, seconds, summary.pixels_per_second)
    return summary
