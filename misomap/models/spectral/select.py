"""Property regressors the spectroscopy field uses, chosen per property by inner cross-validation on
the training rows only, with CV+ prediction intervals from the same inner folds.

Candidates (each on every feature block it is offered): PLSR at every number of components of a grid,
ridge (penalty by generalised CV), gradient-boosted trees (scikit-learn's HistGradientBoosting, the
Cubist-like model here), and memory-based learning (a local PLSR on each query's spectral neighbours,
the KSSL standard). A skewed property (judged on the fitting rows) is modelled as log(1+x).

CV+ (Barber et al. 2021): with inner-fold models mu_-k and out-of-fold residuals R_i on the n training
rows, the 1-alpha interval of a new x runs from the floor(alpha(n+1))-th smallest of mu_-k(i)(x) - R_i
to the ceil((1-alpha)(n+1))-th smallest of mu_-k(i)(x) + R_i. The inner folds that choose the
regressor also calibrate its interval, so no model is fitted twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import skew
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold

log = logging.getLogger(__name__)

PLS_COMPONENTS = (1, 2, 3, 4, 6, 8, 10, 12, 15, 20, 25, 30)
RIDGE_ALPHAS = tuple(np.logspace(-3, 4, 15))
REGRESSORS = ("plsr", "ridge", "hgb", "mbl")


def _standardise(X: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = X.mean(0), X.std(0)
    sd[sd == 0] = 1.0
    return (X - mu) / sd, (Q - mu) / sd


def pls_path(X: np.ndarray, y: np.ndarray, Q: np.ndarray, max_components: int) -> np.ndarray:
    """Predictions (queries, k) of PLSR with 1..k components from one fit (autoscaled X and y).

    PLS1 by NIPALS (one response converges in one step; the same algorithm and numbers as scikit-learn's
    PLSRegression, tested against it): components are sequential, so the k-component model is the first
    k of the largest. Written out because memory-based learning fits one model per query and
    scikit-learn's per-fit checks would dominate the cost."""
    k = max(1, min(max_components, X.shape[1], len(X) - 1))
    Xs, Qs = _standardise(X, Q)
    my, sy = y.mean(), y.std() or 1.0
    Xd, yd = Xs - Xs.mean(0), (y - my) / sy
    W, P, q = np.zeros((X.shape[1], k)), np.zeros((X.shape[1], k)), np.zeros(k)
    used = 0
    for a in range(k):
        w = Xd.T @ yd
        norm = np.linalg.norm(w)
        if norm < 1e-12:
            break
        w /= norm
        t = Xd @ w
        tt = t @ t
        W[:, a], P[:, a], q[a] = w, Xd.T @ t / tt, yd @ t / tt
        Xd = Xd - np.outer(t, P[:, a])
        yd = yd - t * q[a]
        used = a + 1
    if used == 0:
        return np.full((len(Q), k), my)
    R = W[:, :used] @ np.linalg.pinv(P[:, :used].T @ W[:, :used])
    path = my + sy * np.cumsum(((Qs - Xs.mean(0)) @ R) * q[:used], axis=1)
    return np.hstack([path, np.repeat(path[:, -1:], k - used, axis=1)])


def ridge_predict(X: np.ndarray, y: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Ridge on autoscaled features, penalty by efficient leave-one-out (GCV) on the fitting rows."""
    Xs, Qs = _standardise(X, Q)
    return RidgeCV(alphas=RIDGE_ALPHAS).fit(Xs, y).predict(Qs)


def hgb_predict(X: np.ndarray, y: np.ndarray, Q: np.ndarray, seed: int) -> np.ndarray:
    """Gradient-boosted trees with fixed small-data settings (no early stopping: rows are few)."""
    model = HistGradientBoostingRegressor(max_iter=40, learning_rate=0.15, max_leaf_nodes=15, max_bins=63,
                                          min_samples_leaf=max(3, min(10, len(y) // 10)),
                                          l2_regularization=1.0, random_state=seed)
    return model.fit(X, y).predict(Q)


def mbl_predict(X: np.ndarray, y: np.ndarray, Q: np.ndarray, Z: np.ndarray, ZQ: np.ndarray,
                neighbours: int | None = None, max_components: int = 10) -> np.ndarray:
    """Memory-based learning: per query, a PLSR on its `neighbours` nearest fitting rows in the
    (autoscaled) neighbour space Z, predicting the mean over 3..max_components components
    (a weighted-average-PLS-like blend that needs no per-query tuning)."""
    n = len(X)
    k = neighbours or min(n, max(20, n // 3))
    Zs, ZQs = _standardise(Z, ZQ)
    d = ((ZQs[:, None, :] - Zs[None, :, :]) ** 2).sum(-1)
    near = np.argsort(d, axis=1)[:, :k]
    out = np.empty(len(Q))
    for i, rows in enumerate(near):
        path = pls_path(X[rows], y[rows], Q[i:i + 1], max_components)
        out[i] = path[0, min(2, path.shape[1] - 1):].mean()
    return out


@dataclass(frozen=True)
class Candidate:
    """One (feature block, regressor, setting) the inner CV can choose."""

    features: str
    regressor: str
    components: int = 0

    @property
    def label(self) -> str:
        """features/regressor (PLSR: with its number of components)."""
        extra = f"{self.components}" if self.regressor == "plsr" else ""
        return f"{self.features}/{self.regressor}{extra}"


def _fit_block(X: np.ndarray, y: np.ndarray, Q: np.ndarray, Z: np.ndarray, ZQ: np.ndarray, features: str,
               regressors: Sequence[str], max_components: int, seed: int) -> dict[Candidate, np.ndarray]:
    """Predictions on Q of every regressor on one feature block (log/target handled by the caller)."""
    out: dict[Candidate, np.ndarray] = {}
    if "plsr" in regressors:
        path = pls_path(X, y, Q, max_components)
        for c in PLS_COMPONENTS:
            if c <= path.shape[1]:
                out[Candidate(features, "plsr", c)] = path[:, c - 1]
    if "ridge" in regressors:
        out[Candidate(features, "ridge")] = ridge_predict(X, y, Q)
    if "hgb" in regressors:
        out[Candidate(features, "hgb")] = hgb_predict(X, y, Q, seed)
    if "mbl" in regressors:
        out[Candidate(features, "mbl")] = mbl_predict(X, y, Q, Z, ZQ)
    return out


Blocks = dict[str, tuple[np.ndarray, tuple[str, ...]]]
"""Feature block name -> (features for every row, regressors offered on it)."""


def is_skewed(y: np.ndarray, threshold: float | None) -> bool:
    """Whether a non-negative target is skewed beyond `threshold` (then modelled as log(1+x))."""
    return (threshold is not None and y.size > 2 and y.min() >= 0 and np.std(y) > 0
            and skew(y) > threshold)


def fit_all(blocks: Blocks, neighbour_space: np.ndarray, y: np.ndarray, fit: np.ndarray, query: np.ndarray,
            log_target: bool, max_components: int, seed: int) -> dict[Candidate, np.ndarray]:
    """Every candidate fitted on rows `fit` and predicting rows `query`, in property units."""
    fwd: Callable[[np.ndarray], np.ndarray] = np.log1p if log_target else (lambda v: v)
    back: Callable[[np.ndarray], np.ndarray] = np.expm1 if log_target else (lambda v: v)
    yt = fwd(y[fit])
    Z, ZQ = neighbour_space[fit], neighbour_space[query]
    out: dict[Candidate, np.ndarray] = {}
    for name, (X, regs) in blocks.items():
        for cand, pred in _fit_block(X[fit], yt, X[query], Z, ZQ, name, regs, max_components, seed).items():
            out[cand] = back(pred)
    return out


def cv_plus(test_preds: np.ndarray, fold_of_row: np.ndarray, residuals: np.ndarray, alpha: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """CV+ interval (lower, upper) per query. test_preds: (folds, queries) predictions of each inner-fold
    model; fold_of_row and residuals: (n,) the inner fold and |out-of-fold residual| of each fitting row."""
    n = len(residuals)
    centre = test_preds[fold_of_row]                        # (n, queries)
    lo_k = math.floor(alpha * (n + 1))
    hi_k = math.ceil((1 - alpha) * (n + 1))
    lo = np.full(test_preds.shape[1], -np.inf) if lo_k < 1 else np.sort(centre - residuals[:, None], 0)[lo_k - 1]
    hi = np.full(test_preds.shape[1], np.inf) if hi_k > n else np.sort(centre + residuals[:, None], 0)[hi_k - 1]
    return lo, hi


@dataclass(frozen=True)
class Choice:
    """One track's choice for one property on one training set: the candidate, its point predictions
    (model refitted on every training row) and CV+ interval bounds for the query rows."""

    candidate: Candidate
    inner_rmse: float
    prediction: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def choose_and_predict(blocks: Blocks, neighbour_space: np.ndarray, y: np.ndarray, train: np.ndarray,
                       query: np.ndarray, tracks: dict[str, Callable[[Candidate], bool]], inner_folds: int = 5,
                       alpha: float = 0.1, max_components: int = 20, skew_threshold: float | None = 1.0,
                       seed: int = 0) -> dict[str, Choice]:
    """Per track (a filter over candidates), the candidate with the lowest inner-CV RMSE on `train`
    (rows with y measured), its prediction for `query` and its CV+ 1-alpha interval. Only `train`
    rows' targets are read; `query` rows contribute features only."""
    train = train[~np.isnan(y[train])]
    log_target = is_skewed(y[train], skew_threshold)
    folds = KFold(min(inner_folds, len(train)), shuffle=True, random_state=seed)
    fold_of_row = np.empty(len(train), dtype=int)
    oof: dict[Candidate, np.ndarray] = {}
    fold_test: dict[Candidate, list[np.ndarray]] = {}
    for f, (a, b) in enumerate(folds.split(train)):
        fold_of_row[b] = f
        both = np.concatenate([train[b], query])
        preds = fit_all(blocks, neighbour_space, y, train[a], both, log_target, max_components, seed)
        for cand, p in preds.items():
            oof.setdefault(cand, np.full(len(train), np.nan))[b] = p[:len(b)]
            fold_test.setdefault(cand, []).append(p[len(b):])
    scores = {c: float(np.sqrt(np.mean((p - y[train]) ** 2))) for c, p in oof.items() if not np.isnan(p).any()}
    chosen = {}
    for track, keep in tracks.items():
        pool = {c: s for c, s in scores.items() if keep(c)}
        if pool:
            chosen[track] = min(pool, key=lambda c: (pool[c], c.label))
    full = fit_all({n: (X, tuple({c.regressor for c in chosen.values() if c.features == n}))
                    for n, (X, _) in blocks.items()}, neighbour_space, y, train, query, log_target,
                   max_components, seed)
    out = {}
    for track, cand in chosen.items():
        lo, hi = cv_plus(np.stack(fold_test[cand]), fold_of_row, np.abs(y[train] - oof[cand]), alpha)
        out[track] = Choice(cand, scores[cand], full[cand], lo, hi)
    return out
