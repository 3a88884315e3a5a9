"""Where the spectral jobs keep things: resolved locations, the library (synthetic if none is
configured), and model bundles (safetensors + skops + config JSON) as bytes on local disk or S3."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from misomap.core.config_base import GatewayConfig, StorageConfig
from misomap.core.errors import MissingObjectError
from misomap.core.storage import Target
from misomap.spectra.config import SpectralConfig
from misomap.spectra.errors import SpectralError
from misomap.spectra.library import SpectralLibrary, open_library_group, write_library
from misomap.spectra.readers import OSSL_ID_COLUMN
from misomap.spectra.synthetic import synthetic_library

log = logging.getLogger(__name__)

MODEL_FILES = ("mir_vae.safetensors", "nir_encoder.safetensors", "mir_regressor.skops",
               "nir_regressor.skops", "spectral_model.json")


@dataclass(frozen=True)
class SpectralRun:
    """What the spectral wing needs of a run: its spectral section, storage, workdir, seed and
    gateway (the fields keep the run configuration's names)."""

    spectral: SpectralConfig | None
    storage: StorageConfig
    workdir: str
    seed: int = 0
    gateway: GatewayConfig = GatewayConfig()


@dataclass(frozen=True)
class SpectralPaths:
    """Resolved locations of one run's spectral inputs and outputs."""

    library: str
    models: str
    report: str
    embeddings: str


def spectral_section(cfg: SpectralRun) -> SpectralConfig:
    """The run's spectral section, or a clear error when the config has none."""
    if cfg.spectral is None:
        raise SpectralError("the run configuration has no 'spectral:' section; add one (see docs)")
    return cfg.spectral


def spectral_paths(cfg: SpectralRun) -> SpectralPaths:
    """Configured locations, defaulting under <workdir>/spectral/."""
    sc = spectral_section(cfg)
    base = f"{cfg.workdir}/spectral"
    return SpectralPaths(sc.library or f"{base}/library.zarr", sc.models or f"{base}/models",
                         sc.report or f"{base}/report", sc.embeddings or f"{base}/embeddings.zarr")


def ensure_library(cfg: SpectralRun) -> str:
    """The library URL; with none configured, the synthetic library is generated once."""
    sc = spectral_section(cfg)
    url = spectral_paths(cfg).library
    if sc.library is None:
        try:
            open_library_group(url, cfg.storage.options_for(url))
        except SpectralError:
            syn = sc.synthetic
            log.info("no spectral library configured: generating the synthetic one (%d samples) at %s",
                     syn.n_samples, url)
            lib = synthetic_library(syn.n_samples, syn.nir_fraction, syn.repeats, sc.mir_axis, sc.nir_axis,
                                    seed=cfg.seed)
            write_library(lib, url, cfg.storage.options_for(url), chunk_rows=sc.chunk_size)
    return url


def save_models(cfg: SpectralRun, files: dict[str, bytes], meta: dict[str, Any]) -> str:
    """Write the model bundle (files by name plus spectral_model.json); returns its folder."""
    folder = spectral_paths(cfg).models
    for name, data in files.items():
        Target(f"{folder}/{name}", cfg.storage).write_bytes(data)
    Target(f"{folder}/spectral_model.json", cfg.storage).write_bytes(json.dumps(meta, indent=2, sort_keys=True).encode())
    log.info("saved spectral models to %s", folder)
    return folder


def load_models(cfg: SpectralRun) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The model bundle's files and its metadata."""
    folder = spectral_paths(cfg).models
    try:
        meta = json.loads(Target(f"{folder}/spectral_model.json", cfg.storage).read_bytes())
        files = {name: Target(f"{folder}/{name}", cfg.storage).read_bytes() for name in meta["files"]}
    except MissingObjectError as err:
        raise SpectralError(f"{err}: run `misomap train-spectral` with this config first") from None
    except (ValueError, KeyError, TypeError) as err:
        raise SpectralError(f"{folder}/spectral_model.json is damaged ({type(err).__name__}: {err}): rerun "
                            "`misomap train-spectral` with this config") from None
    return files, meta


def import_library(tables: dict[str, str], out: str, soillab: str | None = None, properties: tuple[str, ...] = (),
                   id_column: str = OSSL_ID_COLUMN, paired_only: bool = False, chunk_rows: int = 1024,
                   storage: StorageConfig | None = None) -> SpectralLibrary:
    """Read OSSL-layout tables ({sensor: file}) into a new Zarr library at `out`; refuses an existing
    store (nothing is overwritten) and checks every sensor before writing."""
    from misomap.spectra.preprocess import validate_sensor
    from misomap.spectra.readers import library_from_tables, read_table

    if Target(out, storage).exists():
        raise SpectralError(f"{out} already exists: import into a new location (nothing is overwritten)")
    lib = library_from_tables({name: read_table(f) for name, f in tables.items()},
                              read_table(soillab) if soillab else None, properties, id_column, paired_only)
    for name, sensor in lib.sensors.items():
        validate_sensor(sensor, f"{name} table {tables[name]}", min_samples=2)
    write_library(lib, out, Target(out, storage).options or None, chunk_rows=chunk_rows)
    return lib
