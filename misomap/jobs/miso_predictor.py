"""MISO as a map predictor: the encoders run on crop-sized tiles laid on a global grid, each tile
encoded once, and the LIIF head is queried at every output pixel in its tile's central part.

Tiles are the size the model was trained on (a Swin encoder's attention windows and shifts depend on
its input's size, so encoding a whole chunk would change the features), and they sit on one grid
for the whole cube, so every chunking encodes the same tiles: chunk seams cannot appear. Output at
the cube's resolution or any other: the implicit head is queried at continuous coordinates.
"""

from __future__ import annotations

import json
import logging
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
TILE_BATCH = 8


def model_files(model_path: str) -> list[str]:
    """A MISO map needs one model checkpoint (safetensors with its config in the metadata)."""
    return [model_path]


def _device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


class MisoMapPredictor:
    """Tiled dense MISO inference: tiles of `tile` px whose central `core` px are kept."""

    def __init__(self, model: MisoModel, device: torch.device, batch_points: int) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.batch_points = batch_points
        cfg = model.cfg
        self.img_bands = tuple(cfg.imagery.bands)
        self.cov_bands = tuple(cfg.covariates.bands) if cfg.covariates is not None else ()
        self.bands = self.img_bands + self.cov_bands
        self.tile = int(cfg.crops.size_px)
        self.core = self.tile // 2
        self.margin = (self.tile - self.core) // 2
        # windows start on core multiples (global tile grid) and hold every tile their pixels need
        self.align_px = self.core
        self.halo_px = self.core + self.margin

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    @torch.no_grad()
    def predict(self, window: np.ndarray, wx: np.ndarray, wy: np.ndarray,
                qx: np.ndarray, qy: np.ndarray) -> MapProbabilities:
        res = float(wx[1] - wx[0])
        x0, y0 = wx[0] - res / 2, wy[0] + res / 2  # the window's outer top-left corner
        gx, gy = np.meshgrid(qx, qy)
        col = ((gx - x0) / res).ravel()  # continuous pixel coordinates inside the window
        row = ((y0 - gy) / res).ravel()
        core_c = np.floor(col / self.core).astype(np.int64)
        core_r = np.floor(row / self.core).astype(np.int64)
        tiles = sorted(set(zip(core_r.tolist(), core_c.tolist())))
        n_img = len(self.img_bands)
        pf = np.full(col.shape, np.nan, np.float32)
        so = np.full((len(SOIL_ORDERS), col.size), np.nan, np.float32)
        for start in range(0, len(tiles), TILE_BATCH):
            batch = tiles[start:start + TILE_BATCH]
            crops, members = [], []
            for tr, tc in batch:
                r0, c0 = tr * self.core - self.margin, tc * self.core - self.margin
                if r0 < 0 or c0 < 0 or r0 + self.tile > window.shape[1] or c0 + self.tile > window.shape[2]:
                    raise PredictorError(f"tile at window pixel ({r0}, {c0}) leaves the window; halo too small")
                crops.append(window[:, r0:r0 + self.tile, c0:c0 + self.tile])
                members.append((np.flatnonzero((core_r == tr) & (core_c == tc)), r0, c0))
            q = max(len(m[0]) for m in members)
            pix = np.zeros((len(batch), q, 2), np.float32)
            xy = np.zeros((len(batch), q, 2), np.float32)
            for b, (idx, r0, c0) in enumerate(members):
                pix[b, :len(idx)] = np.stack([col[idx] - c0, row[idx] - r0], -1)
                xy[b, :len(idx)] = np.stack([gx.ravel()[idx], gy.ravel()[idx]], -1)
                pix[b, len(idx):] = self.tile / 2  # padding queries, discarded
            stack = torch.from_numpy(np.ascontiguousarray(np.stack(crops))).to(self.device)
            img = stack[:, :n_img]
            cov = stack[:, n_img:] if self.cov_bands else None
            with self._autocast():
                enc = self.model.encode(img, cov)
                out = self.model.query(enc, torch.from_numpy(pix).to(self.device),
                                       torch.from_numpy(xy).to(self.device))
            probs = torch.sigmoid(out.logits["permafrost"].float()).cpu().numpy()
            soil = torch.softmax(out.logits["soil_order"].float(), dim=-1).cpu().numpy()
            for b, (idx, _, _) in enumerate(members):
                pf[idx] = probs[b, :len(idx)]
                so[:, idx] = soil[b, :len(idx)].T
        h, w = len(qy), len(qx)
        cols = np.clip(np.floor(col).astype(int), 0, window.shape[2] - 1)
        rows = np.clip(np.floor(row).astype(int), 0, window.shape[1] - 1)
        valid = np.isfinite(window[:, rows, cols]).all(axis=0)
        pf[~valid] = np.nan
        so[:, ~valid] = np.nan
        return MapProbabilities(pf.reshape(h, w), so.reshape(len(SOIL_ORDERS), h, w))


def load_miso_predictor(blobs: dict[str, bytes], cfg: MapConfig) -> MisoMapPredictor:
    """Rebuild the model from the checkpoint's own config, load its weights, pick the device."""
    (source, data), = blobs.items()
    meta = safetensors_metadata(data)
    if "miso_config" not in meta:
        raise PredictorError(f"{source} is not a misomap MISO checkpoint (no miso_config in its metadata)")
    mcfg = MisoConfig.model_validate(json.loads(meta["miso_config"]))
    if mcfg.location.bounds is None:
        raise PredictorError(f"{source}: checkpoint config lacks location bounds")
    missing = [t for t in ("permafrost", "soil_order") if t not in mcfg.loss.tasks]
    if missing:
        raise PredictorError(f"{source}: the model has no head for {missing}; a map needs both tasks")
    model = MisoModel(mcfg, tuple(mcfg.location.bounds))
    load_model_state(model, data, source)
    device = _device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.workers))
    predictor = MisoMapPredictor(model, device, cfg.batch_size)
    log.info("MISO predictor on %s: %d px tiles, %d px cores, halo %d px", device, predictor.tile,
             predictor.core, predictor.halo_px)
    return predictor
