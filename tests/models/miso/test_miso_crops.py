"""Crops: edges padded with nodata, all-nodata crops flagged (no crash), labelled slots only from
the sampler's training points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from misomap.cube.grid import Grid
from misomap.models.miso.config import CropConfig, EncoderConfig, LiifConfig, LocationConfig, MisoConfig
from misomap.models.miso.crops import CropSampler, Points, read_window
from misomap.models.miso.errors import CropError
from misomap.models.miso.model import MisoModel

GRID = Grid("EPSG:3338", 30.0, 300_000.0, 1_200_000.0, 303_000.0, 1_203_000.0)  # 100 x 100 px
CFG = CropConfig(size_px=32, jitter_px=4, label_slots=3, pseudo_points=4, grid=2)


def arrays(nodata_cols: int = 0) -> np.ndarray:
    a = np.arange(3 * 100 * 100, dtype=np.float32).reshape(3, 100, 100)
    a[:, :, :nodata_cols] = np.nan
    return a


def pts(xs, ys, pf, so) -> Points:
    return Points(np.asarray(xs, float), np.asarray(ys, float), np.asarray(pf), np.asarray(so))


def test_read_window_pads_beyond_edges_with_nan() -> None:
    a = arrays()
    w = read_window(a, -5, 90, 16)
    assert w.shape == (3, 16, 16)
    assert np.isnan(w[:, :5]).all() and np.isnan(w[:, :, 10:]).all()
    assert np.array_equal(w[:, 5:, :10], a[:, :11, 90:])


def test_crop_at_the_cube_corner_is_padded_and_locates_the_point() -> None:
    corner = pts([GRID.xmin + 15], [GRID.ymax - 15], [1], [2])  # centre of pixel (0, 0)
    s = CropSampler(arrays(), None, GRID, corner, CFG)
    b = s.centred(corner)
    assert b.imagery.shape == (1, 3, 32, 32)
    assert np.isnan(b.imagery[0, :, :16, :]).all() and np.isfinite(b.imagery[0, :, 16:, 16:]).all()
    assert np.allclose(b.pix[0, 0], [16.5, 16.5])
    assert b.imagery[0, 0, 16, 16] == arrays()[0, 0, 0]
    assert np.allclose(b.xy[0, 0], [GRID.xmin + 15, GRID.ymax - 15])
    assert b.valid[0, 0] and b.permafrost[0, 0] == 1


def test_all_nodata_crop_is_flagged_and_the_model_does_not_crash() -> None:
    p = pts([GRID.xmin + 300], [GRID.ymax - 1500], [1], [4])
    s = CropSampler(arrays(nodata_cols=60), None, GRID, p, CFG)
    lab = s.labelled(np.array([0]), np.random.default_rng(0))
    assert np.isnan(lab.imagery).all()
    assert not lab.valid.any() and (lab.permafrost == -1).all() and (lab.soil == -1).all()
    model = MisoModel(MisoConfig(imagery=EncoderConfig(bands=["a", "b", "c"], embed_dim=16),
                                 location=LocationConfig(num_scales=4, hidden=16), feature_dim=16,
                                 liif=LiifConfig(hidden=16), crops=CFG), GRID.bounds)
    out = model.predict_points(torch.as_tensor(lab.imagery), None, torch.as_tensor(lab.pix),
                               torch.as_tensor(lab.xy))
    assert all(torch.isfinite(v).all() for v in out.values())


def test_unlabelled_crops_skip_nodata_and_fail_clearly_when_everything_is_nodata() -> None:
    empty = pts([], [], [], [])
    s = CropSampler(arrays(nodata_cols=50), None, GRID, empty, CFG.model_copy(update={"min_valid_fraction": 0.9}))
    b = s.unlabelled(6, np.random.default_rng(0))
    valid_px = np.isfinite(b.imagery).any(1).mean(axis=(1, 2))
    assert (valid_px >= 0.9).all() and (b.permafrost == -1).all()
    dead = CropSampler(np.full((3, 100, 100), np.nan, np.float32), None, GRID, empty, CFG)
    with pytest.raises(CropError, match="valid pixels"):
        dead.unlabelled(1, np.random.default_rng(0))


def test_labelled_crops_put_the_centre_pedon_first_then_neighbours_then_pseudo_and_grid() -> None:
    p = pts([GRID.xmin + 1515, GRID.xmin + 1575, GRID.xmin + 2900], [GRID.ymax - 1515] * 3, [1, 0, 1], [0, 1, 2])
    s = CropSampler(arrays(), None, GRID, p, CFG)
    b = s.labelled(np.array([0]), np.random.default_rng(3))
    assert b.pix.shape == (1, 3 + 4 + 4, 2)
    assert list(b.permafrost[0, :3]) == [1, 0, -1]  # the far pedon is outside the crop
    assert np.allclose(b.xy[0, 0], [p.x[0], p.y[0]]) and np.allclose(b.xy[0, 1], [p.x[1], p.y[1]])
    assert (b.soil[0, 2:] == -1).all()
    assert np.allclose(b.pix[0, -4:], [[8, 8], [24, 8], [8, 24], [24, 24]])
    jittered = [s.labelled(np.array([0]), np.random.default_rng(k)).pix[0, 0] for k in range(8)]
    assert all(np.abs(j - 16.5).max() <= CFG.jitter_px + 1 for j in jittered)
    assert len({tuple(j) for j in jittered}) > 1


def test_mismatched_arrays_and_points_are_refused() -> None:
    with pytest.raises(CropError, match="grid"):
        CropSampler(np.zeros((3, 10, 10), np.float32), None, GRID, pts([], [], [], []), CFG)
    with pytest.raises(CropError, match="'permafrost'"):
        pts([1.0, 2.0], [1.0, 2.0], [1], [0, 1])


def test_pedons_scored_through_map_tiles_flag_nodata_and_outside_points() -> None:
    """predict_pedons (the map's tiles) on an imagery-only model: points on nodata pixels or
    outside the grid are invalid but answered; a point equals the model on its own map tile."""
    from misomap.models.miso.dense import DenseMiso, predict_pedons

    torch.manual_seed(0)
    model = MisoModel(MisoConfig(imagery=EncoderConfig(bands=["a", "b", "c"], embed_dim=16),
                                 location=LocationConfig(num_scales=4, hidden=16), feature_dim=16,
                                 liif=LiifConfig(hidden=16), crops=CFG), GRID.bounds).eval()
    a = arrays(nodata_cols=10) / 30000.0
    x = np.array([GRID.xmin + 100, GRID.xmin + 1515, GRID.xmax + 50, GRID.xmin + 2990])
    y = np.array([GRID.ymax - 100, GRID.ymax - 1515, GRID.ymax - 50, GRID.ymin + 10])
    out = predict_pedons(DenseMiso(model, torch.device("cpu")), a, None, GRID, x, y)
    assert list(out["valid"]) == [False, True, False, True]
    assert all(np.isfinite(v).all() for v in out.values())
    # pedon 1 sits in pixel (50, 50): tile (3, 3) of the 16 px core grid, whose crop starts at 40
    crop = torch.from_numpy(read_window(a, 40, 40, 32))[None]
    xy = torch.tensor([[[GRID.xmin + 50.5 * 30, GRID.ymax - 50.5 * 30]]], dtype=torch.float64)
    ref = model.predict_points(crop, None, torch.tensor([[[10.5, 10.5]]]), xy)
    assert abs(float(ref["permafrost"][0, 0]) - out["permafrost"][1]) < 1e-5
    assert np.allclose(ref["soil_order"][0, 0].numpy(), out["soil_order"][1], atol=1e-5)



def test_dihedral_crops_turn_with_their_query_points() -> None:
    """Turned crops keep every query over its own pixel (all bands, both encoders) with xy and labels
    unmoved; all 8 orientations occur; without `dihedral` the crops are exactly as before."""
    p = pts(GRID.xmin + np.linspace(500, 2500, 8), GRID.ymax - np.linspace(600, 2400, 8),
            [1, 0, 1, 0, 1, 0, 1, 0], [0, 1, 2, 3, 4, 5, 6, 0])
    img, cov = arrays(), arrays()[::-1] * 2
    turned = CropSampler(img, cov, GRID, p, CFG.model_copy(update={"dihedral": True}))
    seen = set()
    for b in (turned.labelled(np.resize(np.arange(8), 48), np.random.default_rng(3)),
              turned.unlabelled(16, np.random.default_rng(4))):
        for k in range(len(b.pix)):
            for q in np.flatnonzero(b.valid[k]):
                col, row = np.floor(b.pix[k, q]).astype(int)
                gc = int((b.xy[k, q, 0] - GRID.xmin) // GRID.resolution)
                gr = int((GRID.ymax - b.xy[k, q, 1]) // GRID.resolution)
                assert np.array_equal(b.imagery[k, :, row, col], img[:, gr, gc])
                assert np.array_equal(b.covariates[k, :, row, col], cov[:, gr, gc])
            along_x = np.nanmedian(np.diff(b.imagery[k, 0], axis=1))  # ±1: columns run along x
            along_y = np.nanmedian(np.diff(b.imagery[k, 0], axis=0))
            seen.add((along_x, along_y))
    assert seen == {(1, 100), (-1, 100), (1, -100), (-1, -100), (100, 1), (-100, 1), (100, -1), (-100, -1)}
    idx = np.resize(np.arange(8), 16)
    first = CropSampler(img, cov, GRID, p, CFG).labelled(idx, np.random.default_rng(3))
    again = CropSampler(img, cov, GRID, p, CFG).labelled(idx, np.random.default_rng(3))
    assert np.array_equal(again.imagery, first.imagery, equal_nan=True) and np.array_equal(again.pix, first.pix)
    turned_again = turned.labelled(idx, np.random.default_rng(3))
    assert not np.array_equal(turned_again.imagery, first.imagery, equal_nan=True)
