"""Dense MISO map inference: agrees with the single-crop path and shows no chunk seams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from misomap.config import config_from_dict
from misomap.cube.grid import Grid
from misomap.cube.store import COMPLETE_KEY
from misomap.jobs.predict import run_predict
from misomap.models.miso.config import CropConfig, EncoderConfig, LocationConfig, MisoConfig
from misomap.models.miso.model import MisoModel
from misomap.models.miso.train import model_checkpoint_bytes

IMG = [f"s2_summer_b{i}" for i in range(4)]
COV = ["elevation", "slope"]
GRID = Grid("EPSG:3338", 30.0, 300000.0, 1710000.0, 300000.0 + 96 * 30, 1710000.0 + 96 * 30)
TOL = 0.011
"""Largest |ΔP(permafrost)|: float noise plus the map's uint8 percent rounding (0.005)."""


def _model(data: np.ndarray, role: str = "alignment") -> MisoModel:
    """A random MISO whose permafrost head is rescaled to spread P over (0, 1) on `data` (a random
    head sits near one constant), so that disagreements between inference paths would show."""
    torch.manual_seed(3)
    cfg = MisoConfig(imagery=EncoderConfig(bands=IMG, embed_dim=16, mean=[0.0] * 4, std=[1.0] * 4),
                     covariates=EncoderConfig(bands=COV, embed_dim=16, mean=[0.0] * 2, std=[1.0] * 2),
                     location=LocationConfig(bounds=GRID.bounds, role=role), crops=CropConfig(size_px=32))
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
                    coords={"band": np.array(IMG + COV, dtype=object),  # vlen-utf8, as the real cube
                            "y": GRID.y_coords(), "x": GRID.x_coords(),
                            "spatial_ref": ((), 0, GRID.spatial_ref_attrs())},
                    attrs={"misomap": {"imagery_datetime": ["2019-06-15T00:00:00Z", "2023-08-15T00:00:00Z"]},
                           COMPLETE_KEY: {"records_sha256": "written-whole", "chunks": 0}})  # written whole
    cube = root / "cube.zarr"
    ds.chunk({"band": -1, "y": 48, "x": 48}).to_zarr(cube, zarr_format=3, mode="w", consolidated=True)
    ckpt = root / "miso.safetensors"
    ckpt.write_bytes(model_checkpoint_bytes(_model(data)))
    return cube, ckpt, data


def _run(cube: Path, ckpt: Path, out: Path, chunk: int) -> Path:
    cfg = config_from_dict({"map": {"cube": str(cube), "output": str(out), "model": "miso",
                                    "model_path": str(ckpt), "chunk_px": chunk, "workers": 1, "cogs": False}})
    run_predict(cfg)
    return out


def _map(cube: Path, ckpt: Path, out: Path, chunk: int) -> np.ndarray:
    return xr.open_zarr(_run(cube, ckpt, out, chunk) / "map.zarr")["permafrost_probability"].values


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


@pytest.mark.parametrize("role", ["alignment", "input"])
def test_dense_queries_equal_the_model_on_each_tile(role):
    """The factored LIIF and flat batches answer like `MisoModel` on each point's own tile,
    whatever the batch size, with nodata in a tile and points on tile edges; for a model whose heads
    read the location embedding too."""
    from misomap.models.miso.dense import DenseMiso

    rng = np.random.default_rng(4)
    data = rng.normal(size=(len(IMG + COV), 96, 96)).astype("float32")
    model = _model(data, role)
    tiles = rng.normal(size=(5, len(IMG + COV), 32, 32)).astype("float32")
    tiles[1, :, :6] = np.nan
    tile = rng.integers(0, 5, 300)
    pix = rng.uniform(0, 32, (300, 2))
    pix[:4] = [[0, 0], [31.99, 31.99], [0, 31.5], [16, 16]]
    xy = np.stack([rng.uniform(GRID.xmin, GRID.xmax, 300), rng.uniform(GRID.ymin, GRID.ymax, 300)], -1)
    with torch.no_grad():
        t = torch.from_numpy(tiles)[tile]
        ref = model.predict_points(t[:, :len(IMG)], t[:, len(IMG):], torch.from_numpy(pix).float()[:, None],
                                   torch.from_numpy(xy)[:, None])
    for batch in (7, 8192):
        out = DenseMiso(model, torch.device("cpu"), point_batch=batch).predict(tiles, tile, pix, xy)
        assert np.abs(out["permafrost"] - ref["permafrost"][:, 0].numpy()).max() < 1e-5
        assert np.abs(out["soil_order"] - ref["soil_order"][:, 0].numpy()).max() < 1e-5
    assert ref["permafrost"].std() > 0.05


def test_scored_pedon_predictions_are_the_map(setup, tmp_path):
    """`predict_pedons` (what cross-validation scores) gives the map's values at the pedons."""
    from misomap.models.miso.dense import DenseMiso, predict_pedons

    cube, ckpt, data = setup
    ds = xr.open_zarr(_run(cube, ckpt, tmp_path / "m", 32) / "map.zarr")
    pf = ds["permafrost_probability"].values
    so = ds["soil_order_probability"].values
    rng = np.random.default_rng(2)
    n = 2000
    r, c = rng.integers(0, 96, n), rng.integers(0, 96, n)
    x = GRID.xmin + (c + rng.uniform(0.01, 0.99, n)) * GRID.resolution  # anywhere inside the pixel
    y = GRID.ymax - (r + rng.uniform(0.01, 0.99, n)) * GRID.resolution
    pred = predict_pedons(DenseMiso(_model(data), torch.device("cpu")), data[:len(IMG)], data[len(IMG):],
                          GRID, x, y)
    assert pred["valid"].all() and pred["permafrost"].std() > 0.05
    diff = np.abs(pred["permafrost"] - pf[r, c])
    assert diff.mean() <= 0.005 and diff.max() <= TOL, (diff.mean(), diff.max())
    # map classes follow the stored (rounded) percentages (contract §5): score the same rule
    flips = np.mean((np.rint(pred["permafrost"] * 100) >= 50) != ds["permafrost_class"].values[r, c])
    so_flips = np.mean(np.rint(pred["soil_order"] * 100).argmax(-1) != ds["soil_order_class"].values[r, c])
    assert flips <= 0.002 and so_flips <= 0.002, (flips, so_flips)
    assert np.abs(pred["soil_order"] - np.moveaxis(so[:, r, c], 0, -1)).max() <= TOL
    assert set(pred) >= {"permafrost_entropy", "soil_order_entropy"}


def test_a_checkpoint_from_before_location_roles_maps_as_an_input_model():
    """Checkpoints written before `location.role` existed fed location to the heads: loaded for a
    map, they keep doing so (read as the new default, their maps would silently change). Fields
    added since with defaults (encoder clipping) do not make them "a different config"."""
    import json

    from misomap.mapping.config import MapConfig
    from misomap.mapping.predictors.miso import load_miso_predictor
    from misomap.models.miso.weights import safetensors_metadata
    from safetensors.torch import load as load_tensors, save as save_tensors

    rng = np.random.default_rng(5)
    model = _model(rng.normal(size=(len(IMG + COV), 96, 96)).astype("float32"), "input")
    data = model_checkpoint_bytes(model)
    meta = safetensors_metadata(data)
    old = json.loads(meta["miso_config"])
    del old["location"]["role"]
    for enc in ("imagery", "covariates"):  # fields added since, with defaults: the checkpoint still loads
        for field in ("clip", "low", "high"):
            del old[enc][field]
    data = save_tensors(load_tensors(data), metadata={**meta, "miso_config": json.dumps(old)})
    cfg = MapConfig(cube="unused", output="unused", model="miso", device="cpu")
    predictor = load_miso_predictor({"old.safetensors": data}, cfg)
    assert predictor.dense.model.cfg.location.role == "input" and predictor.dense.model.location_in_heads
