"""The RF model: fitting, per-chunk prediction with nodata, and skops files with trusted types only."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from misomap.models.baseline_config import RFConfig
from misomap.models.weighting import TrainingWeights
from misomap.models.rf import (
    RFModelError,
    dumps_model,
    fit_rf,
    loads_model,
    predict_chunk,
    predict_proba,
    select_features,
)

BANDS = ["s2_summer_red", "s2_summer_nir", "s2_summer_scl", "s1_summer_vv_db", "elevation"]
CFG = RFConfig(n_estimators=15)


def _data(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.where(X[:, 0] + 0.3 * X[:, 3] > 0, "Gelisols", "Inceptisols")
    y[:10] = "Histosols"
    return X, y


def test_feature_selection():
    assert select_features(BANDS, RFConfig()) == ["s2_summer_red", "s2_summer_nir",
                                                  "s1_summer_vv_db", "elevation"]
    assert select_features(BANDS, RFConfig(radar=False, use_xy=True)) == [
        "s2_summer_red", "s2_summer_nir", "elevation", "x", "y"]


def test_fit_learns_and_maps_unseen_classes_to_zero():
    X, y = _data()
    feats = select_features(BANDS, CFG)
    model = fit_rf(X[:150], y[:150], feats, "soil_order", CFG, seed=0)
    prob = predict_proba(model, X[150:], ["Andisols", "Gelisols", "Histosols", "Inceptisols"])
    assert np.allclose(prob.sum(axis=1), 1) and (prob[:, 0] == 0).all()
    held_out_acc = np.mean(np.array(["Andisols", "Gelisols", "Histosols", "Inceptisols"])[
        prob.argmax(axis=1)] == y[150:])
    assert held_out_acc > 0.7


def test_same_seed_same_forest_and_class_weight_option():
    X, y = _data()
    feats = select_features(BANDS, CFG)
    a = predict_proba(fit_rf(X, y, feats, "t", CFG, seed=1), X)
    b = predict_proba(fit_rf(X, y, feats, "t", CFG, seed=1), X)
    assert np.array_equal(a, b)
    weighted = fit_rf(X, y, feats, "t", CFG, seed=1, weights=TrainingWeights(balanced=True))
    assert weighted.forest.class_weight == "balanced"


def test_class_weighting_with_permafrost_labels():
    """Digit-like labels ('0', '1') with class weighting (scikit-learn alone fails on these)."""
    X, _ = _data()
    y = np.where(X[:, 0] > 0.8, "1", "0")
    cfg = RFConfig(n_estimators=15)
    model = fit_rf(X, y, select_features(BANDS, cfg), "permafrost", cfg, seed=0, weights=TrainingWeights(balanced=True))
    assert model.classes == ("0", "1")
    assert predict_proba(model, X, ["0", "1"])[y == "1", 1].mean() > 0.5


@pytest.mark.parametrize("bad,match", [("nan", "non-finite training values in feature 's2_summer_nir'"),
                                       ("one", "single class"), ("shape", "expected")])
def test_fit_rejects_bad_training_data(bad, match):
    X, y = _data()
    feats = select_features(BANDS, CFG)
    if bad == "nan":
        X[5, 1] = np.nan
    elif bad == "one":
        y[:] = "Gelisols"
    else:
        X = X[:, :3]
    with pytest.raises(RFModelError, match=match):
        fit_rf(X, y, feats, "soil_order", CFG, seed=0)


def test_predict_chunk_matches_table_and_keeps_nodata():
    X, y = _data()
    cfg = RFConfig(n_estimators=15, use_xy=True)
    feats = select_features(BANDS, cfg)  # 4 cube bands + x, y
    xs, ys = np.array([100.0, 200.0, 300.0]), np.array([900.0, 800.0])
    Xxy = np.column_stack([X, np.resize(xs, len(X)), np.resize(ys, len(X))])
    model = fit_rf(Xxy, y, feats, "soil_order", cfg, seed=0)
    rng = np.random.default_rng(1)
    block = rng.normal(size=(len(BANDS), 2, 3)).astype(np.float32)
    block[1, 0, 2] = np.nan  # nodata in a feature band
    block[2, 1, 1] = np.nan  # nodata in the scene-class band, which is no feature
    out = predict_chunk(model, block, BANDS, xs, ys)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    assert np.isnan(out[:, 0, 2]).all() and np.isfinite(out[:, 1, 1]).all()
    table = np.concatenate([block[[0, 1, 3, 4], 1, 0], [xs[0], ys[1]]]).reshape(1, -1)
    assert np.allclose(out[:, 1, 0], predict_proba(model, table)[0])


def test_predict_chunk_names_missing_band():
    X, y = _data()
    model = fit_rf(X, y, select_features(BANDS, CFG), "soil_order", CFG, seed=0)
    with pytest.raises(RFModelError, match=r"lacks feature band\(s\) \['elevation'\]"):
        predict_chunk(model, np.zeros((4, 2, 2), np.float32), BANDS[:4], np.arange(2), np.arange(2))


def test_skops_roundtrip_without_pickle():
    X, y = _data()
    model = fit_rf(X, y, select_features(BANDS, CFG), "soil_order", CFG, seed=0)
    blob = dumps_model(model)
    assert blob[:2] == b"PK"  # a skops zip archive, not a pickle stream
    back = loads_model(blob)
    assert back.features == model.features and back.classes == model.classes
    assert np.array_equal(predict_proba(back, X), predict_proba(model, X))


def test_untrusted_type_refused_with_clear_error():
    X, y = _data()
    model = fit_rf(X, y, select_features(BANDS, CFG), "soil_order", CFG, seed=0)
    evil = sio.dumps({"forest": model.forest, "target": "soil_order", "features": [],
                      "classes": [], "payload": datetime.timedelta(days=1)})
    with pytest.raises(RFModelError, match=r"refusing to load evil\.skops: .*\['datetime\.timedelta'\]"):
        loads_model(evil, source="evil.skops")


def test_foreign_estimator_and_garbage_refused():
    X, y = _data()
    other = sio.dumps({"forest": LogisticRegression().fit(X, y)})
    with pytest.raises(RFModelError, match="not a misomap Random Forest"):
        loads_model(other, source="lr.skops")
    with pytest.raises(RFModelError, match="not a readable skops model file"):
        loads_model(b"\x80\x04garbage", source="junk.skops")


@pytest.mark.parametrize("section,match", [
    ({"labels": {"window": 2}}, r"labels: .*window must be odd"),
    ({"folds": {"dbscan_eps_m": [-1]}}, r"folds.dbscan_eps_m: .*must be > 0"),
    ({"folds": {"k": 1}}, r"folds.k"),
    ({"evaluation": {"class_weighting": "heavy"}}, r"evaluation.class_weighting"),
    ({"rf": {"n_trees": 5}}, r"rf.n_trees: unknown key"),
    ({"evaluation": {"distance_bins_km": [10, 1]}}, r"evaluation.distance_bins_km: .*increasing"),
])
def test_bad_config_sections_named(section, match):
    from misomap.config import config_from_dict
    from misomap.core.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        config_from_dict(section)
