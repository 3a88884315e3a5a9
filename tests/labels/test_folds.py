"""Shared cross-validation folds: reproducible, spatially grouped, leave-one-region/zone-out."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from misomap.labels.config import FoldsConfig
from misomap.labels.folds import FoldsError, distance_to_training, make_folds


def _pedons(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Pedons in tight 200 m clusters around sites 3 km apart, over a 60 km square."""
    rng = np.random.default_rng(seed)
    sites = rng.uniform(0, 60_000, (40, 2))
    site = rng.integers(0, len(sites), n)
    xy = sites[site] + rng.normal(0, 100, (n, 2))
    return pd.DataFrame({"pedon_id": [f"p{i:04d}" for i in range(n)], "x": xy[:, 0], "y": xy[:, 1],
                         "region": np.where(xy[:, 0] < 30_000, "west", "east"),
                         "zone": np.where(xy[:, 1] < 20_000, "sporadic",
                                          np.where(xy[:, 1] < 40_000, "discontinuous", "continuous"))})


def test_schemes_and_reproducible_from_seed():
    p = _pedons()
    a, b = make_folds(p, FoldsConfig(), seed=3), make_folds(p, FoldsConfig(), seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["pedon_id", "random", "dbscan_1km", "dbscan_10km", "blocks",
                               "region", "zone"]
    c = make_folds(p, FoldsConfig(), seed=4)
    assert not (a["random"] == c["random"]).all()
    for scheme in ("random", "dbscan_1km", "blocks"):
        assert set(a[scheme]) == set(range(5)), scheme


def test_independent_of_row_order():
    p = _pedons()
    a = make_folds(p, FoldsConfig(), seed=1)
    b = make_folds(p.sample(frac=1, random_state=9), FoldsConfig(), seed=1)
    pd.testing.assert_frame_equal(a, b)


def test_dbscan_clusters_never_split_across_folds():
    p = _pedons()
    folds = make_folds(p, FoldsConfig(), seed=0).set_index("pedon_id").loc[p["pedon_id"]]
    xy = p[["x", "y"]].to_numpy()
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    close = (d < 1000) & (d > 0)
    i, j = np.nonzero(close)
    f = folds["dbscan_1km"].to_numpy()
    assert (f[i] == f[j]).all(), "pedons within 1 km landed in different dbscan_1km folds"
    # pairs within 1 km are split by the random scheme, which is the point of spatial folds
    assert (folds["random"].to_numpy()[i] != folds["random"].to_numpy()[j]).any()


def test_blocks_and_leave_one_region_zone_out():
    p = _pedons()
    cfg = FoldsConfig(block_size_m=15_000)
    folds = make_folds(p, cfg, seed=0).set_index("pedon_id").loc[p["pedon_id"]]
    block = (p["x"] // 15_000).astype(int).astype(str) + "_" + (p["y"] // 15_000).astype(int).astype(str)
    assert (folds.groupby(block.to_numpy())["blocks"].nunique() == 1).all()
    assert folds.groupby(p["region"].to_numpy())["region"].nunique().eq(1).all()
    assert folds["region"].nunique() == 2 and folds["zone"].nunique() == 3


def test_missing_region_marked_unused(caplog):
    p = _pedons()
    p.loc[:9, "region"] = None
    with caplog.at_level(logging.WARNING):
        folds = make_folds(p, FoldsConfig(), seed=0).set_index("pedon_id").loc[p["pedon_id"]]
    assert (folds["region"].to_numpy()[:10] == -1).all() and (folds["region"].to_numpy()[10:] >= 0).all()
    assert "10 pedons have no value" in caplog.text


def test_too_few_groups_reduces_folds_with_warning(caplog):
    p = _pedons(60)
    p["x"] = np.where(np.arange(60) < 30, 0.0, 50_000.0)
    p["y"] = 0.0
    with caplog.at_level(logging.WARNING):
        folds = make_folds(p, FoldsConfig(), seed=0)
    assert set(folds["dbscan_10km"]) == {0, 1}
    assert "2 groups < k=5" in caplog.text


def test_single_group_marks_everything_unused(caplog):
    p = _pedons(50)
    p["x"], p["y"] = 100.0, 100.0
    with caplog.at_level(logging.WARNING):
        folds = make_folds(p, FoldsConfig(), seed=0)
    assert (folds["dbscan_1km"] == -1).all()
    assert "cannot split" in caplog.text


@pytest.mark.parametrize("bad,match", [("dup", "occurs more than once"), ("nox", "no column 'x'"),
                                       ("few", "cannot fill k=5")])
def test_bad_pedon_tables(bad, match):
    p = _pedons(20)
    if bad == "dup":
        p.loc[1, "pedon_id"] = p.loc[0, "pedon_id"]
    elif bad == "nox":
        p = p.drop(columns="x")
    else:
        p = p.iloc[:3]
    with pytest.raises(FoldsError, match=match):
        make_folds(p, FoldsConfig(), seed=0)


def test_distance_to_training_matches_brute_force():
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 1000, (50, 2))
    fold = rng.integers(-1, 3, 50)
    got = distance_to_training(xy, fold)
    for i in range(50):
        if fold[i] < 0:
            assert np.isnan(got[i])
            continue
        train = (fold >= 0) & (fold != fold[i])
        assert got[i] == pytest.approx(np.hypot(*(xy[train] - xy[i]).T).min())


def test_dominant_cluster_marks_scheme_unused(caplog):
    """Dense pedons chain into one DBSCAN cluster: no honest split exists, so the scheme is unused."""
    p = _pedons(100)
    p["x"] = np.where(np.arange(100) < 90, np.arange(100) * 500.0, 1e6 + np.arange(100) * 5e4)
    p["y"] = 0.0
    with caplog.at_level(logging.WARNING):
        folds = make_folds(p, FoldsConfig(), seed=0)
    assert (folds["dbscan_1km"] == -1).all()
    assert "largest holding 90% of the pedons, cannot split" in caplog.text


def test_validation_fraction_on_every_scheme_of_the_demo_folds(demo_world):
    """carve_validation on the demo's own folds (every scheme, every test fold): validation holds
    val_fraction ± 2 points of the training pedons, never a whole training fold, never the test."""
    from misomap.core.config_base import StorageConfig
    from misomap.demo.run_sections import fold_scales
    from misomap.labels.config import LabelsConfig
    from misomap.labels.pedons import read_labels
    from misomap.labels.folds import carve_validation, scheme_columns

    pedons = read_labels(LabelsConfig(world=str(demo_world)), StorageConfig())
    pedons = pedons.assign(x=pedons.geometry.x, y=pedons.geometry.y)
    eps, block = fold_scales(demo_world)
    folds = make_folds(pedons, FoldsConfig(k=5, dbscan_eps_m=(eps,), block_size_m=block), seed=0)
    xy = pedons.set_index("pedon_id").loc[folds["pedon_id"], ["x", "y"]].to_numpy()
    assert {"random", "blocks", "region"} <= set(scheme_columns(folds))
    for scheme in scheme_columns(folds):
        col = folds[scheme].to_numpy()
        for fold in sorted(set(col) - {-1}):
            train, val = carve_validation(col, fold, 0.15, 0, xy)
            part = (col >= 0) & (col != fold)
            assert abs(val.sum() / part.sum() - 0.15) <= 0.02, (scheme, fold, val.sum() / part.sum())
            assert not (val & ~part).any() and ((train | val) == part).all()
            for f in set(col[part]):
                assert train[col == f].any(), f"{scheme} fold {fold}: training fold {f} all in validation"


def test_inner_folds_are_the_training_parts_largest_qualifying_folds():
    """Nested validation holds out folds of the same scheme inside the training part: never the
    test fold, never a -1 pedon, only folds with min_share of the training pedons, the largest first."""
    from misomap.labels.folds import inner_folds

    # fold sizes: 0 → 50, 1 → 30, 2 → 15, 3 → 4, 4 → 30; 10 pedons unused
    col = np.repeat([0, 1, 2, 3, 4, -1], [50, 30, 15, 4, 30, 10])
    assert inner_folds(col, 0, 2, 0.05) == [1, 4]  # a tie (30, 30) goes to the lower id
    assert inner_folds(col, 1, 5, 0.05) == [0, 2, 4]  # fold 3 holds 4 of 99 training pedons: < 5 %
    assert inner_folds(col, 1, 5, 0.04) == [0, 2, 3, 4]
    assert inner_folds(col, 4, 1, 0.05) == [0]
    with pytest.raises(FoldsError, match="fold 0: its training part has 1 fold"):
        inner_folds(np.repeat([0, 1, -1], [5, 5, 3]), 0, 2, 0.05)
    with pytest.raises(FoldsError, match="lower miso.design.min_share"):
        inner_folds(np.repeat([0, 1, 2], [50, 2, 2]), 0, 2, 0.6)
