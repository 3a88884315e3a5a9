"""Map predictors: what the map job runs on each chunk, loaded once per worker process."""

from __future__ import annotations

import hashlib
import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from misomap.core.config_base import StorageConfig
from misomap.core.errors import MisomapError, MissingObjectError
from misomap.core.storage import Target
from misomap.mapping.config import MapConfig
from misomap.mapping.layers import MapProbabilities

log = logging.getLogger(__name__)


class PredictorError(MisomapError):
    """The configured model cannot be loaded or does not fit the cube."""


class MapPredictor(Protocol):
    """Turns a cube window (with halo) into probabilities at query coordinates."""

    bands: tuple[str, ...]
    halo_px: int
    """Context the model needs around each output block, in cube pixels."""
    align_px: int
    """Windows start on multiples of this many cube pixels, so any chunking sees the same tiles."""

    def predict(self, window: np.ndarray, wx: np.ndarray, wy: np.ndarray,
                qx: np.ndarray, qy: np.ndarray) -> MapProbabilities:
        """window: (band, H, W) float32 in `bands` order with pixel-centre coords wx (W,), wy (H,);
        returns probabilities on the (len(qy), len(qx)) grid of query pixel centres."""
        ...


_CACHE: dict[str, MapPredictor] = {}
LOADS: list[str] = []  # load events in this process, for tests and logs
_LOAD_LOCK = threading.Lock()  # a worker's threads (reading while another computes) load it once


def read_model_files(paths: list[str], storage: StorageConfig) -> dict[str, bytes]:
    """Each model file's bytes by its path, from local paths or s3:// URLs."""
    blobs = {}
    for path in paths:
        try:
            blobs[path] = Target(path, storage).read_bytes()
        except MissingObjectError:
            raise PredictorError(f"model file not found: {path}") from None
    return blobs


@dataclass(frozen=True)
class PredictorKind:
    """How to find a kind of model's files under `model_path`, and how to build its predictor."""

    files: Callable[[str], list[str]]
    load: Callable[[dict[str, bytes], MapConfig], MapPredictor]


# The built-in kinds, named by module like any `module:factory` plug-in and imported on first use
# (MISO's pulls in torch; a Random Forest map never does). Each module has `model_files(model_path)`.
BUILTIN: dict[str, tuple[str, str]] = {
    "rf": ("misomap.mapping.predictors.rf", "load_rf_predictor"),
    "miso": ("misomap.mapping.predictors.miso", "load_miso_predictor"),
    "auto": ("misomap.mapping.predictors.auto", "load_auto_predictor"),
}


def _kind(name: str) -> PredictorKind:
    if name in BUILTIN:
        module_name, loader = BUILTIN[name]
        module = importlib.import_module(module_name)
        return PredictorKind(module.model_files, getattr(module, loader))
    module, _, attr = name.partition(":")
    if not attr:
        raise PredictorError(f"model {name!r}: use 'rf', 'miso', 'auto' or 'package.module:factory'")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise PredictorError(f"model factory {name!r} cannot be imported: {err}") from None
    return PredictorKind(lambda path: [path] if path else [], factory)


def model_paths(cfg: MapConfig) -> list[str]:
    """The model's files under `map.model_path` (none for a code-only custom predictor)."""
    files = _kind(cfg.model).files(cfg.model_path or "")
    if cfg.model in BUILTIN and not cfg.model_path:
        raise PredictorError(f"map.model_path is required for model {cfg.model!r}")
    return files


def model_digest(cfg: MapConfig, storage: StorageConfig) -> str:
    """sha256 over the model's files (or its factory name), so a new model invalidates old chunks."""
    h = hashlib.sha256(cfg.model.encode())
    for path, blob in sorted(read_model_files(model_paths(cfg), storage).items()):
        h.update(path.rsplit("/", 1)[-1].encode())
        h.update(blob)
    return h.hexdigest()


def get_predictor(cfg: MapConfig, storage: StorageConfig) -> MapPredictor:
    """The predictor for `cfg`, built at most once per process (i.e. once per dask worker)."""
    key = f"{cfg.model}|{cfg.model_path}|{cfg.device}|{cfg.batch_size}"
    with _LOAD_LOCK:
        return _cached_predictor(key, cfg, storage)


def _cached_predictor(key: str, cfg: MapConfig, storage: StorageConfig) -> MapPredictor:
    if key not in _CACHE:
        blobs = read_model_files(model_paths(cfg), storage)
        _CACHE[key] = _kind(cfg.model).load(blobs, cfg)
        LOADS.append(key)
        log.info("loaded model %s", key)
    return _CACHE[key]
