"""`misomap embed`: MISO's per-pixel embeddings (the input of its task heads) written chunk by chunk
into a Zarr store on the cube's grid (misomap.mapping.embeddings), through the chunk engine of the
map: completion records, finished chunks skipped, resumable, byte-identical on rerun, a complete
mark, then a STAC item naming the cube and model digests.

It reads the run's `map` section (cube, chunk_px, workers, device, batch_size, zarr_format); the
model is MISO (`map.model_path`, or `--model-path`), the output `<workdir>/embeddings/miso` unless given.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from misomap.config import RunConfig
from misomap.core.config_base import StorageConfig
from misomap.core.errors import ConfigError, MisomapError
from misomap.core.storage import Target
from misomap.cube.grid import plan_chunks
from misomap.cube.store import require_complete
from misomap.mapping.chunk import output_grid
from misomap.mapping.config import MapConfig
from misomap.mapping.embeddings import (
    EmbeddingStoreError,
    EmbedSpec,
    embed_chunk,
    ensure_template,
    identity,
    mark_embeddings_complete,
    progress_url,
    store_url,
    write_embedding_stac,
)
from misomap.mapping.predictors.api import get_predictor, model_digest
from misomap.runtime.records import CompletionRecords, run_lock
from misomap.runtime.runner import Executor, run_plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedSummary:
    """What an embedding run did."""

    output: str
    chunks_total: int
    chunks_run: int
    pixels: int
    seconds: float
    bytes_per_pixel: float

    @property
    def pixels_per_second(self) -> float:
        return self.pixels / self.seconds if self.seconds > 0 else float("nan")


def embed_config(config: RunConfig, model_path: str | None = None) -> tuple[MapConfig, str]:
    """The map section to embed with (MISO, on the cube's own grid) and the output folder."""
    base = config.map.model_dump() if config.map is not None else {"cube": config.cube_location()}
    path = model_path or (base.get("model_path") if base.get("model") == "miso" else None)
    if not path:
        raise ConfigError("misomap embed needs a MISO checkpoint: set map.model: miso and map.model_path, "
                          "or pass --model-path")
    output = f"{config.workdir}/embeddings/miso"
    cfg = MapConfig.model_validate({**base, "model": "miso", "model_path": path, "output": output,
                                    "resolution": None})
    return cfg, output


def _discard(output: str, storage: StorageConfig) -> None:
    for part in ("stac", "embeddings.zarr", "_progress"):
        Target(output, storage).join(part).delete()


def run_embed(config: RunConfig, model_path: str | None = None, output: str | None = None,
              overwrite: bool = False) -> EmbedSummary:
    """Embed every chunk of the cube, skipping finished ones; mark the store complete; write STAC."""
    cfg, default_out = embed_config(config, model_path)
    output = (output or default_out).rstrip("/")
    storage = config.storage
    start = time.perf_counter()
    with run_lock(output):
        require_complete(cfg.cube, storage)
        predictor = get_predictor(cfg, storage)
        if not hasattr(predictor, "embed"):
            raise EmbeddingStoreError(f"{cfg.model_path} gives no embeddings")
        dim = int(predictor.dense.model.cfg.feature_dim)
        ident = identity(cfg, storage, model_digest(cfg, storage), dim)
        store = Target(store_url(output), storage)
        if overwrite:
            _discard(output, storage)
        records = CompletionRecords(Target(progress_url(output), storage))
        grid = output_grid(cfg, storage)
        if ensure_template(store, grid, cfg.chunk_px, cfg.zarr_format, ident):
            records.clear()
        regions = plan_chunks(grid, cfg.chunk_px)
        report = run_plan(regions, embed_chunk, EmbedSpec(cfg, output, storage), records,
                          Executor(cfg.workers, config.gateway), name="embedding chunks", expected=(Exception,))
        if report.failures:
            raise MisomapError(f"{len(report.failures)} of {len(regions)} embedding chunks failed (store "
                               f"{store.url} stays incomplete; rerun to retry them): {report.failures[0].message} "
                               f"(chunk {report.failures[0].key})")
        mark_embeddings_complete(store, records.digest())
        stac = write_embedding_stac(cfg, storage, output, config.name)
    seconds = time.perf_counter() - start
    pixels = sum(r.height * r.width for r in report.todo)
    size = sum(store.fs.du(store.path, total=False).values()) if store.exists() else 0
    summary = EmbedSummary(output, len(regions), report.ran, pixels, seconds, size / (grid.shape[0] * grid.shape[1]))
    log.info("embeddings done: %d/%d chunks run, %d px in %.1f s (%.0f px/s), %.1f bytes/px on storage; STAC %s",
             report.ran, len(regions), pixels, seconds, summary.pixels_per_second, summary.bytes_per_pixel, stac)
    return summary
