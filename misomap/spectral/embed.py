"""embed-spectra: embed a spectral library of any size chunk by chunk through dask (a local
cluster or dask-gateway) into Zarr -- MIR-latent embeddings, optionally property predictions and
NIR->MIR converted spectra. Resumable and idempotent: each finished chunk gets a completion record
after its data is written; a rerun skips recorded chunks and rewrites any half-written one with the
same bytes (every chunk is a pure function of its rows and the models)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from distributed import as_completed
from tqdm import tqdm

from misomap.jobs.cluster import dask_client
from misomap.jobs.completion import COMPLETE_ATTR, CompletionLog, run_lock
from misomap.spectral.prepare import prepare
from misomap.spectral.store import SpectralRun, ensure_library, load_models, spectral_paths, spectral_section
from misomap.models.spectral.nir import nir_from_arch, nir_to_mir
from misomap.models.spectral.regressors import regressor_from_bytes
from misomap.models.spectral.serialization import load_state, read_metadata
from misomap.models.spectral.vae import embed, vae_from_arch
from misomap.spectra.config import AxisSpec, SpectralConfig
from misomap.spectra.errors import SpectralError
from misomap.spectra.library import open_library_group, read_sensor, sensor_rows

log = logging.getLogger(__name__)


class EmbeddingOutputError(SpectralError):
    """The embeddings output exists but was made from other models, library or settings."""


@dataclass(frozen=True)
class EmbedPlan:
    """Everything a worker needs for any chunk (picklable; model files travel as bytes)."""

    library: str
    library_options: dict[str, Any] | None
    output: str
    output_options: dict[str, Any] | None
    progress: str
    sensor: str
    axis: AxisSpec
    models: dict[str, bytes]
    predict: bool
    convert: bool
    chunk_size: int
    n_rows: int

    @property
    def n_chunks(self) -> int:
        """Number of row chunks."""
        return -(-self.n_rows // self.chunk_size)


@dataclass(frozen=True)
class EmbedSummary:
    """What one embed-spectra run did."""

    output: str
    rows: int
    chunks_total: int
    chunks_run: int


def _signature(plan: EmbedPlan, properties: list[str]) -> dict[str, Any]:
    digest = hashlib.sha256()
    for name in sorted(plan.models):
        digest.update(name.encode() + hashlib.sha256(plan.models[name]).digest())
    return {"library": plan.library, "sensor": plan.sensor, "rows": plan.n_rows, "chunk_size": plan.chunk_size,
            "predict": plan.predict, "convert": plan.convert, "models_sha256": digest.hexdigest(),
            "properties": properties}


def _create_array(group: zarr.Group, name: str, shape: tuple[int, ...], rows: int, dtype: Any,
                  fill: Any) -> zarr.Array:
    return group.create_array(name, shape=shape, chunks=(rows, *shape[1:]), dtype=dtype, fill_value=fill)


def open_output(plan: EmbedPlan, meta: dict[str, Any]) -> zarr.Group:
    """Create the output group, or reopen one whose signature matches this run exactly."""
    signature = _signature(plan, meta["properties"])
    opts = plan.output_options
    try:
        group = zarr.open_group(store=plan.output, mode="r+", storage_options=opts, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        group = None
    if group is not None:
        if group.attrs.get("misomap_spectral_embedding") != signature:
            raise EmbeddingOutputError(
                f"{plan.output} holds embeddings of another run (library, models or settings differ): "
                "delete it or set spectral.embeddings to a new location")
        return group
    group = zarr.open_group(store=plan.output, mode="w", storage_options=opts, zarr_format=3)
    group.attrs["misomap_spectral_embedding"] = signature
    n, rows = plan.n_rows, plan.chunk_size
    _create_array(group, "sample_id", (n,), rows, str, "")
    _create_array(group, "embedding", (n, int(meta["latent_dim"])), rows, np.float32, np.nan)
    if plan.predict:
        arr = _create_array(group, "predictions", (n, len(meta["properties"])), rows, np.float32, np.nan)
        arr.attrs["properties"] = meta["properties"]
    if plan.convert and plan.sensor == "nir":
        mir = AxisSpec(**meta["mir_axis"])
        arr = _create_array(group, "converted_mir", (n, mir.size), rows, np.float32, np.nan)
        arr.attrs.update({"axis": meta["mir_axis"], "unit": "cm-1", "quantity": "SNV absorbance"})
    return group


def embed_chunk(plan: EmbedPlan, chunk: int) -> dict[str, Any]:
    """Embed rows of one chunk, write them, then write the chunk's completion record."""
    import torch

    torch.set_num_threads(1)
    start, stop = chunk * plan.chunk_size, min(plan.n_rows, (chunk + 1) * plan.chunk_size)
    lib = open_library_group(plan.library, plan.library_options)
    spectra = read_sensor(lib, plan.sensor, start, stop)
    prepared = prepare(spectra, f"{plan.sensor} rows {start}..{stop - 1} (chunk {chunk})", plan.axis)
    blob = plan.models["mir_vae.safetensors"]
    vae = load_state(vae_from_arch(read_metadata(blob)[1]), blob)
    layers: dict[str, np.ndarray] = {}
    if plan.sensor == "mir":
        layers["embedding"] = embed(vae, prepared.means)
        regressor_file = "mir_regressor.skops"
    else:
        blob = plan.models["nir_encoder.safetensors"]
        encoder = load_state(nir_from_arch(read_metadata(blob)[1]), blob)
        layers["embedding"], converted = nir_to_mir(encoder, vae, prepared.means)
        if plan.convert:
            layers["converted_mir"] = converted
        regressor_file = "nir_regressor.skops"
    if plan.predict:
        model = regressor_from_bytes(plan.models[regressor_file])
        layers["predictions"] = model.predict(layers["embedding"]).astype(np.float32)
    out = zarr.open_group(store=plan.output, mode="r+", storage_options=plan.output_options, zarr_format=3)
    out["sample_id"][start:stop] = spectra.sample_id
    digest = hashlib.sha256(spectra.sample_id.astype(str).tobytes())
    for name in sorted(layers):
        values = layers[name].astype(np.float32)
        out[name][start:stop] = values
        digest.update(values.tobytes())
    info = {"chunk": chunk, "rows": [start, stop], "sha256": digest.hexdigest()}
    CompletionLog(plan.progress, plan.output_options).mark_done(f"chunk-{chunk:06d}", info)
    return info


def make_plan(cfg: SpectralRun, models: dict[str, bytes], meta: dict[str, Any]) -> EmbedPlan:
    """The plan for this run's library, sensor and models."""
    sc = spectral_section(cfg)
    paths = spectral_paths(cfg)
    library = ensure_library(cfg) if sc.library is None else sc.library
    group = open_library_group(library, cfg.storage.options_for(library))
    needed = {"mir_vae.safetensors"} | ({"nir_encoder.safetensors"} if sc.embed_sensor == "nir" else set())
    if sc.predict:
        needed.add(f"{sc.embed_sensor}_regressor.skops")
    missing = sorted(needed - set(models))
    if missing:
        raise SpectralError(f"model bundle {paths.models} lacks {missing}: retrain with a library that has "
                            f"'{sc.embed_sensor}' spectra paired with MIR")
    axis = AxisSpec(**meta["mir_axis" if sc.embed_sensor == "mir" else "nir_axis"])
    return EmbedPlan(library, cfg.storage.options_for(library), paths.embeddings,
                     cfg.storage.options_for(paths.embeddings), f"{paths.embeddings}.progress", sc.embed_sensor,
                     axis, models, sc.predict, sc.convert, sc.chunk_size, sensor_rows(group, sc.embed_sensor))


@contextlib.contextmanager
def _client(cfg: SpectralRun, sc: SpectralConfig) -> Iterator[Any]:
    """dask-gateway when configured, else a local cluster of processes or threads."""
    if cfg.gateway.address or sc.local_processes:
        workers = cfg.gateway.workers if cfg.gateway.address else sc.local_workers
        with dask_client(workers, cfg.gateway) as client:
            yield client
        return
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=sc.local_workers, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def embed_library(cfg: SpectralRun) -> EmbedSummary:
    """Embed the configured library's `embed_sensor` spectra; skips chunks already recorded."""
    sc = spectral_section(cfg)
    models, meta = load_models(cfg)
    plan = make_plan(cfg, models, meta)
    with run_lock(plan.output):
        group = open_output(plan, meta)
        progress = CompletionLog(plan.progress, plan.output_options)
        done = progress.done_keys()
        todo = [c for c in range(plan.n_chunks) if f"chunk-{c:06d}" not in done]
        log.info("embedding %d %s spectra from %s: %d chunks, %d already done", plan.n_rows, plan.sensor,
                 plan.library, plan.n_chunks, plan.n_chunks - len(todo))
        if todo:
            with _client(cfg, sc) as client:
                shared = client.scatter(plan, broadcast=True)
                futures = client.map(embed_chunk, [shared] * len(todo), todo, pure=False)
                try:
                    for fut in tqdm(as_completed(futures), total=len(todo), desc="embed-spectra", unit="chunk"):
                        fut.result()
                except BaseException:
                    client.cancel(futures)
                    raise
        # the complete mark, written last: the digest of every chunk's record (`misomap verify`)
        group.attrs[COMPLETE_ATTR] = progress.digest()
    return EmbedSummary(plan.output, plan.n_rows, plan.n_chunks, len(todo))
