"""A tiny MISO trained for a few seconds on a synthetic scene with learnable labels: a model whose
logits are far from zero where the scene is clear, as a trained model's are (random weights put
almost every pixel near a class boundary, which exaggerates precision flips)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from misomap.core.classes import SOIL_ORDERS
from misomap.cube.grid import Grid
from misomap.models.miso.config import CropConfig, EncoderConfig, LocationConfig, MisoConfig
from misomap.models.miso.model import MisoModel

IMG = [f"s2_summer_b{i}" for i in range(4)]
COV = ["elevation", "slope"]


def scene(size: int = 128, seed: int = 0) -> tuple[np.ndarray, Grid, np.ndarray, np.ndarray]:
    """Bands (6, size, size), their grid, and per-pixel permafrost (0/1) and soil-order labels that
    follow smooth functions of the bands."""
    rng = np.random.default_rng(seed)
    data = np.stack([gaussian_filter(rng.normal(size=(size, size)), 3) * 3 for _ in IMG + COV]).astype(np.float32)
    grid = Grid("EPSG:3338", 30.0, 300000.0, 1710000.0, 300000.0 + size * 30, 1710000.0 + size * 30)
    pf = (data[0] + 0.5 * data[4] > 0).astype(np.int64)
    so = np.clip(np.floor((data[1] - data[5]) * 1.5 + 3), 0, len(SOIL_ORDERS) - 1).astype(np.int64)
    return data, grid, pf, so


def trained_model(steps: int = 40, seed: int = 0) -> tuple[MisoModel, np.ndarray, Grid]:
    """A 2-stage, 32 px MISO trained `steps` Adam steps on random 32 px crops of `scene()`; returns the
    model (eval mode), the scene and its grid."""
    data, grid, pf, so = scene(seed=seed)
    torch.manual_seed(seed)
    two = {"depths": [1, 1], "num_heads": [1, 2], "embed_dim": 16}
    cfg = MisoConfig(imagery=EncoderConfig(bands=IMG, mean=[0.0] * 4, std=[3.0] * 4, **two),
                     covariates=EncoderConfig(bands=COV, mean=[0.0] * 2, std=[3.0] * 2, **two),
                     location=LocationConfig(bounds=grid.bounds), crops=CropConfig(size_px=32), feature_dim=32,
                     liif={"hidden": 32})
    model = MisoModel(cfg, grid.bounds)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    size, crop, n_img = data.shape[1], 32, len(IMG)
    for _ in range(steps):
        r0, c0 = rng.integers(0, size - crop, 8), rng.integers(0, size - crop, 8)
        crops = torch.from_numpy(np.stack([data[:, r:r + crop, c:c + crop] for r, c in zip(r0, c0)]))
        pr, pc = rng.integers(0, crop, (8, 16)), rng.integers(0, crop, (8, 16))
        pix = torch.from_numpy(np.stack([pc + 0.5, pr + 0.5], -1)).float()
        rows, cols = r0[:, None] + pr, c0[:, None] + pc
        xy = torch.from_numpy(np.stack([grid.xmin + (cols + 0.5) * 30, grid.ymax - (rows + 0.5) * 30], -1))
        out = model(crops[:, :n_img], crops[:, n_img:], pix, xy).logits
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            out["permafrost"], torch.from_numpy(pf[rows, cols]).float()) + \
            torch.nn.functional.cross_entropy(out["soil_order"].reshape(-1, len(SOIL_ORDERS)),
                                              torch.from_numpy(so[rows, cols]).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), data, grid
