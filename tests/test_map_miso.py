"""Dense MISO map inference: agrees with the single-crop path and shows no chunk seams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from misomap.config import config_from_dict
from misomap.cube.grid import Grid
from misomap.jobs.predict import run_predict
from misomap.models.miso.config import CropConfig, EncoderConfig, LocationConfig, MisoConfig
from misomap.models.miso.model import MisoModel
from misomap.models.miso.train import model_checkpoint_bytes

IMG = [f"s2_summer_b{i}" for i in range(4)]
COV = ["elevation", "slope"]
GRID = Grid("EPSG:3338", 30.0, 300000.0, 1710000.0, 300000.0 + 96 * 30, 1710000.0 + 96 * 30)
TOL = 0.011
"""Largest |ΔP(permafrost)|: float noise plus the map's uint8 percent rounding (0.005)."""


def _model(data: np.ndarray) -> MisoModel:
    """A random MISO whose permafrost head is rescaled to spread P over (0, 1) on `data` (a random
    head sits near one constant), so that disagreements between inference paths would show."""
    torch.manual_seed(3)
    cfg = MisoConfig(imagery=EncoderConfig(bands=IMG, embed_dim=16, mean=[0.0] * 4, std=[1.0] * 4),
                     covariates=EncoderConfig(bands=COV, embed_dim=16, mean=[0.0] * 2, std=[1.0] * 2),
                     location=LocationConfig(bounds=GRID.bounds), crops=CropConfig(size_px=32))
    model = MisoModel(cfg, GRID.bounds).eval()
    head = model.heads.heads["permafrost"]
    rows, cols = np.mgrid[0:96:4, 0:96:4]
    pix = torch.from_numpy(np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], -1)).float()
    xy = torch.from_numpy(np.stack([GRID.x_coords()[cols.ravel()], GRID.y_coords()[rows.ravel()]], -1)).float()
    t = torch.from_numpy(data)
    with torch.no_grad():
        head.bias.zero_()
        p = model.predict_dense(t[:len(IMG)], t[len(IMG):], pix, xy)["permafrost"].clamp(1e-6, 1 - 1e-6)
        logit = torch.log(p / (1 - p))
        k = 2.0 / float(logit.std())
        head.weight.mul_(k)
        head.bias.fill_(-k * float(logit.mean()))
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    from scipy.ndimage import gaussian_filter

    root = tmp_path_factory.mktemp("miso-map")
    rng = np.random.default_rng(0)
    data = np.stack([gaussian_filter(rng.normal(size=GRID.shape), 2) * 3 for _ in IMG + COV]).astype("float32")
    ds = xr.Dataset({"data": (("band", "y", "x"), data, {"grid_mapping": "spatial_ref"})},
                    coords={"band": IMG + COV, "y": GRID.y_coords(), "x": GRID.x_coords(),
                            "spatial_ref": ((), 0, GRID.spatial_ref_attrs())},
                    attrs={"misomap": {"imagery_datetime": ["2019-06-15T00:00:00Z", "2023-08-15T00:00:00Z"]}})
    cube = root / "cube.zarr"
    ds.chunk({"band": -1, "y": 48, "x": 48}).to_zarr(cube, zarr_format=3, mode="w", consolidated=True)
    ckpt = root / "miso.safetensors"
    ckpt.write_bytes(model_checkpoint_bytes(_model(data)))
    return cube, ckpt, data


def _map(cube: Path, ckpt: Path, out: Path, chunk: int) -> np.ndarray:
    cfg = config_from_dict({"map": {"cube": str(cube), "output": str(out), "model": "miso",
                                    "model_path": str(ckpt), "chunk_px": chunk, "workers": 1, "cogs": False}})
    run_predict(cfg)
    return xr.open_zarr(out / "map.zarr")["permafrost_probability"].values


def test_two_chunkings_agree_and_match_single_crops(setup, tmp_path):
    cube, ckpt, data = setup
    a = _map(cube, ckpt, tmp_path / "c32", 32)
    b = _map(cube, ckpt, tmp_path / "c48", 48)
    assert np.isfinite(a).all()
    assert a.std() > 0.05, "the map must vary, or agreement proves nothing"
    seam = np.abs(a - b).max()
    assert seam <= TOL, f"chunkings disagree by up to {seam:.3f}"

    # a point predicted alone, through one crop: the crop of the global tile grid that holds it
    model = _model(data)
    tile = model.cfg.crops.size_px
    core, margin = tile // 2, tile // 4
    pad = np.pad(data, ((0, 0), (tile, tile), (tile, tile)), constant_values=np.nan)
    rng = np.random.default_rng(1)
    for r, c in rng.integers(0, 96, size=(12, 2)):
        r0, c0 = (r // core) * core - margin, (c // core) * core - margin
        crop = torch.from_numpy(pad[:, tile + r0:tile + r0 + tile, tile + c0:tile + c0 + tile].copy())[None]
        pix = torch.tensor([[[c + 0.5 - c0, r + 0.5 - r0]]])
        xy = torch.tensor([[[GRID.x_coords()[c], GRID.y_coords()[r]]]], dtype=torch.float32)
        p = model.predict_points(crop[:, :len(IMG)], crop[:, len(IMG):], pix, xy)["permafrost"].item()
        assert abs(p - a[r, c]) <= TOL, (r, c, p, a[r, c])
