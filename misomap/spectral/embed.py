"""embed-spectra: embed a spectral library of any size chunk by chunk through dask (a local
cluster or dask-gateway) into Zarr -- MIR-latent embeddings, optionally property predictions and
NIR->MIR converted spectra. Resumable and idempotent: each finished chunk gets a completion record
after its data is written; a rerun skips recorded chunks and rewrites any half-written one with the
same bytes (every chunk is a pure function of its rows and the models)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from misomap.core.config_base import StorageConfig
from misomap.core.errors import one_line
from misomap.core.storage import Target
from misomap.spectral.prepare import prepare
from misomap.spectral.store import SpectralRun, ensure_library, load_models, spectral_paths, spectral_section
from misomap.models.spectral.nir import nir_from_arch, nir_to_mir
from misomap.models.spectral.regressors import regressor_from_bytes
from misomap.models.spectral.serialization import load_state, read_metadata
from misomap.models.spectral.vae import embed, vae_from_arch
from misomap.spectra.config import AxisSpec
from misomap.spectra.errors import SpectralError
from misomap.spectra.library import open_library_group, read_sensor, sensor_rows
from misomap.runtime.records import COMPLETE_ATTR, CompletionRecords, run_lock
from misomap.runtime.runner import Executor, RowChunk, row_chunks, run_plan
from misomap.runtime.zarr_io import claim, open_group, write_region

log = logging.getLogger(__name__)


class EmbeddingOutputError(SpectralError):
    """The embeddings output exists but was made from other models, library or settings."""


@dataclass(frozen=True)
class EmbedPlan:
    """Everything a worker needs for any chunk (picklable; model files travel as bytes)."""

    library: str
    output: str
    storage: StorageConfig
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

    def chunks(self) -> list[RowChunk]:
        """The plan's row chunks, in order."""
        return row_chunks(self.n_rows, self.chunk_size)


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
    target = Target(plan.output, plan.storage)
    group = open_group(target, mode="r+")
    stored = group.attrs.get("misomap_spectral_embedding") if group is not None else None
    if not claim(target, stored, signature, "embeddings (library, models or settings differ)",
                 EmbeddingOutputError):
        return group
    group = zarr.open_group(target.zarr_store(), mode="w", zarr_format=3)
    group.attrs["misomap_spectral_embedding"] = signature
    n, rows = plan.n_rows, plan.chunk_size
    _create_array(group, "sample_id", (n,), rows, str, "")
    _create_array(group, "embedding", (n, int(meta["latent_dim"])), rows, np.float32, np.nan)
    if plan.predict:
        arr = _create_array(group, "predictions", (n, len(meta["properties"])), rows, np.float32, np.nan)
        arr.attrs["properties"] = meta["properties"]
        if "prediction_interval" in meta:
            for bound in ("predictions_lower", "predictions_upper"):
                arr = _create_array(group, bound, (n, len(meta["properties"])), rows, np.float32, np.nan)
                arr.attrs.update({"properties": meta["properties"], **meta["prediction_interval"]})
    if plan.convert and plan.sensor == "nir":
        mir = AxisSpec(**meta["mir_axis"])
        arr = _create_array(group, "converted_mir", (n, mir.size), rows, np.float32, np.nan)
        arr.attrs.update({"axis": meta["mir_axis"], "unit": "cm-1", "quantity": "SNV absorbance"})
    return group


def embed_chunk(chunk: RowChunk, plan: EmbedPlan) -> dict[str, Any]:
    """Embed the rows of one chunk and write them; returns the chunk's completion record (its rows
    and the checksum of what it wrote). A pure function of (chunk, plan)."""
    import torch

    torch.set_num_threads(1)
    start, stop = chunk.start, chunk.stop
    lib = open_library_group(plan.library, Target(plan.library, plan.storage).options or None)
    spectra = read_sensor(lib, plan.sensor, start, stop)
    prepared = prepare(spectra, f"{plan.sensor} rows {start}..{stop - 1} (chunk {chunk.index})", plan.axis)
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
        if hasattr(model, "predict_interval"):
            layers["predictions_lower"], layers["predictions_upper"] = model.predict_interval(layers["embedding"])
    values = {"sample_id": spectra.sample_id, **{name: layers[name].astype(np.float32) for name in sorted(layers)}}
    write_region(Target(plan.output, plan.storage), values, slice(start, stop))
    digest = hashlib.sha256(spectra.sample_id.astype(str).tobytes())
    for name in sorted(layers):
        digest.update(values[name].tobytes())
    return {"chunk": chunk.index, "rows": [start, stop], "sha256": digest.hexdigest()}


def make_plan(cfg: SpectralRun, models: dict[str, bytes], meta: dict[str, Any]) -> EmbedPlan:
    """The plan for this run's library, sensor and models."""
    sc = spectral_section(cfg)
    paths = spectral_paths(cfg)
    library = ensure_library(cfg) if sc.library is None else sc.library
    group = open_library_group(library, cfg.storage.options_for(library) or None)
    needed = {"mir_vae.safetensors"} | ({"nir_encoder.safetensors"} if sc.embed_sensor == "nir" else set())
    if sc.predict:
        needed.add(f"{sc.embed_sensor}_regressor.skops")
    missing = sorted(needed - set(models))
    if missing:
        raise SpectralError(f"model bundle {paths.models} lacks {missing}: retrain with a library that has "
                            f"'{sc.embed_sensor}' spectra paired with MIR")
    for name in sorted(needed):  # every model file loads here, once, before any chunk is run
        try:
            blob = models[name]
            if name.endswith(".skops"):
                regressor_from_bytes(blob)
            else:
                arch = nir_from_arch if name.startswith("nir") else vae_from_arch
                load_state(arch(read_metadata(blob)[1]), blob)
        except Exception as err:  # noqa: BLE001 - a truncated or foreign file fails in many ways
            raise SpectralError(f"model file {paths.models}/{name} cannot be loaded ({type(err).__name__}: "
                                f"{one_line(err)[:200]}): rerun `misomap train-spectral` with this config") from None
    axis = AxisSpec(**meta["mir_axis" if sc.embed_sensor == "mir" else "nir_axis"])
    return EmbedPlan(library, paths.embeddings, cfg.storage, sc.embed_sensor, axis, models, sc.predict, sc.convert,
                     sc.chunk_size, sensor_rows(group, sc.embed_sensor))


def embed_library(cfg: SpectralRun) -> EmbedSummary:
    """Embed the configured library's `embed_sensor` spectra; skips chunks already recorded."""
    sc = spectral_section(cfg)
    models, meta = load_models(cfg)
    plan = make_plan(cfg, models, meta)
    executor = (Executor(cfg.gateway.workers, cfg.gateway) if cfg.gateway.address
                else Executor(sc.local_workers, threads=not sc.local_processes))
    with run_lock(plan.output):
        group = open_output(plan, meta)
        records = CompletionRecords(Target(f"{plan.output}.progress", plan.storage))
        report = run_plan(plan.chunks(), embed_chunk, plan, records, executor, name="embed-spectra")
        # the complete mark, written last: the digest of every chunk's record (`misomap verify`)
        group.attrs[COMPLETE_ATTR] = records.digest()
    return EmbedSummary(plan.output, plan.n_rows, plan.n_chunks, report.ran)
