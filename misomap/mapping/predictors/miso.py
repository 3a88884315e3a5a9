"""MISO as a map predictor: crop-sized tiles on the cube's global tile grid, each encoded once,
and the LIIF head queried at every output pixel of its tile's central part (misomap.models.miso.dense).

Tiles are the size the model was trained on (a Swin encoder's attention windows and shifts depend on
its input's size, so encoding a whole chunk would change the features), and they sit on one grid
for the whole cube, so every chunking encodes the same tiles: chunk seams cannot appear. The same
tiles answer pedons in cross-validation (`dense.predict_pedons`): the map is the scored model.
Output at the cube's resolution or any other: the implicit head is queried at continuous coordinates.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from misomap.core.classes import SOIL_ORDERS
from misomap.core.inputs import predictable
from misomap.mapping.config import MapConfig
from misomap.mapping.layers import MapProbabilities
from misomap.mapping.predictors.api import PredictorError
from misomap.models.miso.config import MisoConfig
from misomap.models.miso.dense import DenseMiso
from misomap.models.miso.model import MisoModel
from misomap.models.miso.train import load_model_state, stored_config
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
    """Dense MISO on the global tile grid: windows start on tile-core multiples of the cube's pixels."""

    def __init__(self, model: MisoModel, device: torch.device, batch_points: int | None = None) -> None:
        self.dense = DenseMiso(model, device, batch_points)
        self.bands = self.dense.bands
        g = self.dense.grid
        self.align_px = g.core
        self.halo_px = g.core + g.margin

    def _queries(self, window: np.ndarray, wx: np.ndarray, wy: np.ndarray, qx: np.ndarray,
                 qy: np.ndarray) -> tuple[np.ndarray, ...]:
        """The tiles of a window and each output pixel's tile, in-tile position, coordinates and
        validity (misomap.core.inputs.predictable at its cube pixel)."""
        g = self.dense.grid
        res = float(wx[1] - wx[0])
        x0, y0 = wx[0] - res / 2, wy[0] + res / 2  # the window's outer top-left corner, core-aligned
        gx, gy = np.meshgrid(qx, qy)
        col = ((gx - x0) / res).ravel()  # continuous pixel coordinates inside the window
        row = ((y0 - gy) / res).ravel()
        r0, c0, inverse = g.assign(col, row)
        if r0.min() < 0 or c0.min() < 0 or r0.max() + g.tile > window.shape[1] \
                or c0.max() + g.tile > window.shape[2]:
            raise PredictorError(f"a {g.tile} px tile leaves the {window.shape[1:]} px window; "
                                 "halo too small")
        tiles = sliding_window_view(window, (g.tile, g.tile), axis=(1, 2))[:, r0, c0].transpose(1, 0, 2, 3)
        pix = np.stack([col - c0[inverse], row - r0[inverse]], -1)
        xy = np.stack([gx.ravel(), gy.ravel()], -1)
        cols = np.clip(np.floor(col).astype(int), 0, window.shape[2] - 1)
        rows = np.clip(np.floor(row).astype(int), 0, window.shape[1] - 1)
        return tiles, inverse, pix, xy, predictable(window[:, rows, cols], self.bands)

    def predict(self, window: np.ndarray, wx: np.ndarray, wy: np.ndarray,
                qx: np.ndarray, qy: np.ndarray) -> MapProbabilities:
        tiles, inverse, pix, xy, valid = self._queries(window, wx, wy, qx, qy)
        out = self.dense.predict(tiles, inverse, pix, xy)
        pf, so = out["permafrost"], out["soil_order"].T.copy()
        h, w = len(qy), len(qx)
        pf[~valid] = np.nan
        so[:, ~valid] = np.nan
        return MapProbabilities(pf.reshape(h, w), so.reshape(len(SOIL_ORDERS), h, w))

    def embed(self, window: np.ndarray, wx: np.ndarray, wy: np.ndarray,
              qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
        """The embedding the heads read (feature_dim, len(qy), len(qx)) float32 at the output pixels
        (DenseMiso.embed), NaN where the map is nodata."""
        tiles, inverse, pix, xy, valid = self._queries(window, wx, wy, qx, qy)
        z = self.dense.embed(tiles, inverse, pix, xy)
        z[~valid] = np.nan
        return z.T.reshape(z.shape[1], len(qy), len(qx))


def load_miso_predictor(blobs: dict[str, bytes], cfg: MapConfig) -> MisoMapPredictor:
    """Rebuild the model from the checkpoint's own config, load its weights, pick the device."""
    (source, data), = blobs.items()
    stored = stored_config(safetensors_metadata(data))
    if stored is None:
        raise PredictorError(f"{source} is not a misomap MISO checkpoint (no miso_config in its metadata)")
    mcfg = MisoConfig.model_validate(stored)
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
    predictor = MisoMapPredictor(model, device, cfg.batch_size if device.type == "cpu" else None)
    g = predictor.dense.grid
    log.info("MISO predictor on %s: %d px tiles, %d px cores, halo %d px, %d queries per batch", device,
             g.tile, g.core, predictor.halo_px, predictor.dense.point_batch)
    return predictor
