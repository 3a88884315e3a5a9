"""Map predictors: what the map job runs on each chunk, loaded once per worker process."""

from __future__ import annotations

import hashlib
import importlib
import logging
from typing import Any, Protocol

import fsspec
import numpy as np

from misomap.errors import MisomapError
from misomap.jobs.map_config import MapConfig
from misomap.jobs.map_layers import MapProbabilities

log = logging.getLogger(__name__)


class PredictorError(MisomapError):
    """The configured model cannot be loaded or does not fit the cube."""


class MapPredictor(Protocol):
    """Turns a cube window (with halo) into probabilities at query coordinates."""

    bands: tuple[str, ...]
    halo_m: float

    def predict(self, window: np.ndarray, wx: np.ndarray, wy: np.ndarray,
                qx: np.ndarray, qy: np.ndarray) -> MapProbabilities:
        """window: (band, H, W) float32 in `bands` order with pixel-centre coords wx (W,), wy (H,);
        returns probabilities on the (len(qy), len(qx)) grid of query pixel centres."""
        ...


_CACHE: dict[str, MapPredictor] = {}
LOADS: list[str] = []  # load events in this process, for tests and logs


def read_model_bytes(path: str, storage_options: dict[str, Any]) -> bytes:
    """The model file's bytes, from a local path or s3:// URL."""
    try:
        with fsspec.open(path, "rb", **storage_options) as fh:
            return fh.read()
    except FileNotFoundError:
        raise PredictorError(f"model file not found: {path}") from None


def model_digest(cfg: MapConfig, storage_options: dict[str, Any]) -> str:
    """sha256 of the model file (or of the factory name), so a new model invalidates old chunks."""
    if cfg.model_path is None:
        return hashlib.sha256(cfg.model.encode()).hexdigest()
    return hashlib.sha256(read_model_bytes(cfg.model_path, storage_options)).hexdigest()


def _factory(name: str):
    if name == "rf":
        from misomap.jobs.rf_predictor import load_rf_predictor

        return load_rf_predictor
    if name == "miso":
        from misomap.jobs.miso_predictor import load_miso_predictor

        return load_miso_predictor
    module, _, attr = name.partition(":")
    if not attr:
        raise PredictorError(f"model {name!r}: use 'rf', 'miso' or 'package.module:factory'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise PredictorError(f"model factory {name!r} cannot be imported: {err}") from None


def get_predictor(cfg: MapConfig, storage_options: dict[str, Any]) -> MapPredictor:
    """The predictor for `cfg`, built at most once per process (i.e. once per dask worker)."""
    key = f"{cfg.model}|{cfg.model_path}|{cfg.device}|{cfg.batch_size}"
    if key not in _CACHE:
        blob = read_model_bytes(cfg.model_path, storage_options) if cfg.model_path else b""
        _CACHE[key] = _factory(cfg.model)(blob, cfg)
        LOADS.append(key)
        log.info("loaded model %s", key)
    return _CACHE[key]
