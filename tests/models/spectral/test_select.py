"""The fitted encoder, the inner-CV regressor choice and CV+ intervals, on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from misomap.models.spectral.regressors import CVPlusRegressor, regressor_from_bytes, regressor_to_bytes
from misomap.models.spectral.select import Candidate, choose_and_predict, cv_plus, mbl_predict, pls_path
from misomap.models.spectral.vae import (Schedule, VAEArch, embed, fit_encoder, init_from_pca,
                                         new_vae, pca_reconstruction_mse, reconstruction_mse)
from tests.support.spectral_helpers import low_rank_spectra

torch.set_num_threads(1)


def test_pca_initialised_encoder_reconstructs_held_out_spectra_as_well_as_pca():
    scans, rows, means = low_rank_spectra(150, rank=4, seed=1)
    arch = VAEArch(scans.shape[1], 4, (32, 16), linear=True)
    fit = fit_encoder(scans, rows, arch, Schedule(epochs=30, batch_size=32, beta=1e-4), patience=5)
    assert fit.holdout_mse <= 1.02 * fit.holdout_pca_mse + 1e-7, (fit.holdout_mse, fit.holdout_pca_mse)
    # and on new spectra from the same source it never saw
    _, _, fresh = low_rank_spectra(60, rank=4, seed=9)
    m = fit.model
    pca = pca_reconstruction_mse(means, fresh, 4, m.mean.numpy(), m.scale.numpy())
    assert reconstruction_mse(m, fresh) <= 1.2 * pca, (reconstruction_mse(m, fresh), pca)
    assert embed(m, fresh).shape == (60, 4)


def test_pca_start_is_pca_and_whitened():
    scans, rows, means = low_rank_spectra(100, rank=3, seed=2)
    model = init_from_pca(new_vae(VAEArch(scans.shape[1], 3, (16,), linear=True), means.mean(0), means.std(0)), means)
    z = embed(model, means)
    np.testing.assert_allclose(z.std(0, ddof=1), 1.0, rtol=1e-3)
    pca = pca_reconstruction_mse(means, means, 3, model.mean.numpy(), model.scale.numpy())
    assert reconstruction_mse(model, means) == pytest.approx(pca, rel=1e-3, abs=1e-8)
    with pytest.raises(ValueError, match="linear"):
        init_from_pca(new_vae(VAEArch(scans.shape[1], 3, (16,)), means.mean(0), means.std(0)), means)


def test_pls_path_equals_sklearn_plsr_at_every_size():
    from sklearn.cross_decomposition import PLSRegression

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 12)), rng.normal(size=40)
    Q = rng.normal(size=(5, 12))
    path = pls_path(X, y, Q, 6)
    for k in (1, 3, 6):
        np.testing.assert_allclose(path[:, k - 1], PLSRegression(k).fit(X, y).predict(Q).ravel(), rtol=1e-6, atol=1e-8)


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    y = X[:, 0] - 0.5 * X[:, 1] + 0.3 * rng.normal(size=n)
    return X, y


def test_inner_cv_choice_reads_training_rows_only():
    X, y = _data(80, 3)
    blocks = {"embedding": (X, ("plsr", "ridge", "mbl")), "spectra": (X[:, :5], ("plsr",))}
    train, query = np.arange(60), np.arange(60, 80)
    tracks = {"all": lambda c: True, "spectra": lambda c: c.features == "spectra"}
    a = choose_and_predict(blocks, X, y, train, query, tracks, inner_folds=3, seed=0)
    poisoned = y.copy()
    poisoned[query] = 1e6                       # test targets may hold anything: never read
    b = choose_and_predict(blocks, X, poisoned, train, query, tracks, inner_folds=3, seed=0)
    for t in tracks:
        assert a[t].candidate == b[t].candidate
        np.testing.assert_array_equal(a[t].prediction, b[t].prediction)
        np.testing.assert_array_equal(a[t].lower, b[t].lower)
    assert a["spectra"].candidate.features == "spectra"
    # a training target does change the choice's inputs
    changed = y.copy()
    changed[train[:30]] += 5
    c = choose_and_predict(blocks, X, changed, train, query, tracks, inner_folds=3, seed=0)
    assert not np.array_equal(a["all"].prediction, c["all"].prediction)


def test_inner_cv_prefers_the_informative_block():
    rng = np.random.default_rng(4)
    signal, noise = rng.normal(size=(120, 5)), rng.normal(size=(120, 5))
    y = signal @ np.array([1.0, -1, 0.5, 0, 0]) + 0.1 * rng.normal(size=120)
    blocks = {"good": (signal, ("plsr", "ridge")), "bad": (noise, ("plsr", "ridge"))}
    out = choose_and_predict(blocks, signal, y, np.arange(100), np.arange(100, 120), {"any": lambda c: True})
    assert out["any"].candidate.features == "good"
    assert isinstance(out["any"].candidate, Candidate)


def test_cv_plus_bounds_follow_the_formula():
    preds = np.array([[0.0], [10.0]])                # 2 fold models, one query
    fold = np.array([0, 0, 1, 1])
    res = np.array([1.0, 2.0, 3.0, 4.0])
    lo, hi = cv_plus(preds, fold, res, alpha=0.4)    # floor(0.4*5)=2nd smallest, ceil(0.6*5)=3rd smallest
    assert lo[0] == sorted([-1, -2, 7, 6])[1] and hi[0] == sorted([1, 2, 13, 14])[2]
    lo, hi = cv_plus(preds, fold, res, alpha=0.01)   # too few rows for 99%: unbounded
    assert np.isneginf(lo[0]) and np.isposinf(hi[0])


@pytest.mark.parametrize("kind", ["ridge", "plsr"])
def test_cv_plus_regressor_keeps_nominal_coverage(kind):
    covered = []
    for seed in range(4):
        X, y = _data(1300, seed)
        model = CVPlusRegressor(kind, skew_threshold=None, max_components=5, seed=seed, folds=5, alpha=0.1)
        model.fit(X[:300], y[:300, None])
        lo, hi = model.predict_interval(X[300:])
        covered.append(np.mean((y[300:] >= lo[:, 0]) & (y[300:] <= hi[:, 0])))
    assert 0.87 <= np.mean(covered) <= 0.95, covered


def test_choice_intervals_cover_out_of_fold():
    X, y = _data(600, 7)
    out = choose_and_predict({"x": (X, ("ridge", "plsr"))}, X, y, np.arange(250), np.arange(250, 600),
                             {"any": lambda c: True}, inner_folds=5, alpha=0.1)["any"]
    inside = np.mean((y[250:] >= out.lower) & (y[250:] <= out.upper))
    assert 0.85 <= inside <= 0.96, inside


def test_cv_plus_regressor_roundtrips_through_skops_with_unmeasured_rows():
    X, y = _data(60, 5)
    Y = np.stack([y, y * 2 + 1], axis=1)
    Y[::7, 1] = np.nan
    model = CVPlusRegressor("plsr", max_components=4, folds=3).fit(X, Y)
    back = regressor_from_bytes(regressor_to_bytes(model))
    np.testing.assert_array_equal(back.predict(X[:5]), model.predict(X[:5]))
    lo, hi = back.predict_interval(X[:5])
    assert np.all(lo <= back.predict(X[:5])) and np.all(hi >= back.predict(X[:5])) and np.isfinite(lo).all()


def test_mbl_fits_local_neighbourhoods():
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, size=(300, 1))
    y = np.where(x[:, 0] > 0, 2 * x[:, 0], -3 * x[:, 0])     # piecewise linear: global PLSR cannot fit it
    X = np.hstack([x, rng.normal(scale=0.01, size=(300, 3))])
    q = np.array([[-2.0, 0, 0, 0], [2.0, 0, 0, 0]])
    pred = mbl_predict(X, y, q, X[:, :1], q[:, :1], neighbours=40)
    np.testing.assert_allclose(pred, [6.0, 4.0], atol=0.3)
