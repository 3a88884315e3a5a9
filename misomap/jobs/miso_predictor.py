"""MISO as a map predictor: encode each chunk (plus a halo) once, query LIIF at every output pixel.

No sliding window: the encoders run once per chunk, and the implicit head is queried at the
output pixel centres, at the cube's resolution or any other.
"""

from __future__ import annotations

import json
import logging
import math
import os

import numpy as np
import torch

from misomap.classes import SOIL_ORDERS
from misomap.jobs.map_config import MapConfig
from misomap.jobs.map_layers import MapProbabilities
from misomap.jobs.predictors import PredictorError
from misomap.models.miso.config import MisoConfig
from misomap.models.miso.model import MisoModel
from misomap.models.miso.train import load_model_state
from misomap.models.miso.weights import safetensors_metadata

log = logging.getLogger(__name__)


def model_files(model_path: str) -> list[str]:
    """A MISO map needs one model checkpoint (safetensors with its config in the metadata)."""
    return [model_path]


def _device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


class MisoMapPredictor:
    """Dense MISO inference on a cube window; windows are aligned so chunkings agree."""

    def __init__(self, model: MisoModel, device: torch.device, batch_points: int) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.batch_points = batch_points
        cfg = model.cfg
        self.img_bands = tuple(cfg.imagery.bands)
        self.cov_bands = tuple(cfg.covariates.bands) if cfg.covariates is not None else ()
        self.bands = self.img_bands + self.cov_bands
        # context as in training (half a crop), rounded up to whole feature cells of the deepest stage
        self.align_px = int(model.stride)
        self.halo_px = math.ceil(cfg.crops.size_px / 2 / self.align_px) * self.align_px

    def predict(self, window: np.ndarray, wx: np.ndarray, wy: np.ndarray,
                qx: np.ndarray, qy: np.ndarray) -> MapProbabilities:
        res = float(wx[1] - wx[0])
        x0, y0 = wx[0] - res / 2, wy[0] + res / 2  # window's outer top-left corner
        n_img = len(self.img_bands)
        img = torch.from_numpy(np.ascontiguousarray(window[:n_img])).to(self.device)
        cov = torch.from_numpy(np.ascontiguousarray(window[n_img:])).to(self.device) if self.cov_bands else None
        gx, gy = np.meshgrid(qx, qy)
        pix = np.stack([(gx - x0) / res, (y0 - gy) / res], axis=-1).reshape(-1, 2)
        xy = np.stack([gx, gy], axis=-1).reshape(-1, 2)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" \
            else torch.autocast("cpu", enabled=False)
        with autocast:
            out = self.model.predict_dense(img, cov, torch.from_numpy(pix).float().to(self.device),
                                           torch.from_numpy(xy).to(self.device).float(),
                                           batch_points=self.batch_points)
        h, w = len(qy), len(qx)
        pf = out["permafrost"].float().cpu().numpy().reshape(h, w)
        so = out["soil_order"].float().cpu().numpy().reshape(h, w, len(SOIL_ORDERS)).transpose(2, 0, 1)
        cols = np.clip(np.floor(pix[:, 0]).astype(int), 0, window.shape[2] - 1)
        rows = np.clip(np.floor(pix[:, 1]).astype(int), 0, window.shape[1] - 1)
        valid = np.isfinite(window[:, rows, cols]).all(axis=0).reshape(h, w)
        pf = np.where(valid, pf, np.nan).astype(np.float32)
        so = np.where(valid[None], so, np.nan).astype(np.float32)
        return MapProbabilities(pf, so)


def load_miso_predictor(blobs: dict[str, bytes], cfg: MapConfig) -> MisoMapPredictor:
    """Rebuild the model from the checkpoint's own config, load its weights, pick the device."""
    (source, data), = blobs.items()
    meta = safetensors_metadata(data)
    if "miso_config" not in meta:
        raise PredictorError(f"{source} is not a misomap MISO checkpoint (no miso_config in its metadata)")
    mcfg = MisoConfig.model_validate(json.loads(meta["miso_config"]))
    if mcfg.location.bounds is None:
        raise PredictorError(f"{source}: checkpoint config lacks location bounds")
    model = MisoModel(mcfg, tuple(mcfg.location.bounds))
    load_model_state(model, data, source)
    device = _device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.workers))
    predictor = MisoMapPredictor(model, device, cfg.batch_size)
    log.info("MISO predictor on %s, halo %d px, windows aligned to %d px", device, predictor.halo_px,
             predictor.align_px)
    return predictor
