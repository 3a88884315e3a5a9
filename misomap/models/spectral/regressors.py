"""Downstream regressors for soil properties: PLSR (the chemometrics baseline), ridge and an MLP, and
CVPlusRegressor, which wraps any of them with CV+ prediction intervals.

One model per property, each fitted on the rows where that property was measured; skewed
properties (judged on the fitting rows only) are modelled as log(1+x); texture (clay, silt, sand) as
a composition through an isometric log-ratio. Persisted with skops (an exact type allow-list), never pickle.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import skops.io as sio
from scipy.stats import skew
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from misomap.models.skops_io import load_trusted
from misomap.models.spectral.select import RIDGE_ALPHAS, cv_plus
from misomap.spectra.errors import SpectralError

log = logging.getLogger(__name__)

RegressorKind = Literal["plsr", "ridge", "mlp"]
PLS_GRID = (1, 2, 3, 4, 6, 8, 10, 12, 15, 20, 25, 30)


def skewed_columns(Y: np.ndarray, threshold: float) -> tuple[int, ...]:
    """Indices of non-negative target columns whose skewness exceeds `threshold`."""
    cols = []
    for j in range(Y.shape[1]):
        col = Y[:, j][~np.isnan(Y[:, j])]
        if col.size > 2 and col.min() >= 0 and np.std(col) > 0 and skew(col) > threshold:
            cols.append(j)
    return tuple(cols)


def base_estimator(kind: RegressorKind, n_rows: int, n_features: int, max_components: int,
                   log_target: bool, seed: int) -> BaseEstimator:
    """PLSR with its number of components chosen by inner 3-fold CV, scaled ridge (penalty by GCV), or a
    small scaled MLP."""
    if kind == "plsr":
        limit = max(1, min(max_components, n_features, (2 * n_rows) // 3 - 1))
        grid = [k for k in PLS_GRID if k <= limit] or [1]
        model = GridSearchCV(PLSRegression(scale=True), {"n_components": grid},
                             cv=KFold(3, shuffle=True, random_state=seed), scoring="neg_mean_squared_error")
    elif kind == "ridge":
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    elif kind == "mlp":
        model = make_pipeline(StandardScaler(), MLPRegressor(
            hidden_layer_sizes=(64,), alpha=1e-2, learning_rate_init=1e-3, max_iter=400,
            early_stopping=n_rows >= 50, n_iter_no_change=10, random_state=seed))
    else:
        raise SpectralError(f"unknown regressor kind {kind!r}; use 'plsr', 'ridge' or 'mlp'")
    target_scaler = StandardScaler()
    if log_target:
        target_scaler = Pipeline([("log1p", FunctionTransformer(np.log1p, np.expm1, check_inverse=False)),
                                  ("scale", StandardScaler())])
    return TransformedTargetRegressor(regressor=model, transformer=target_scaler)


ILR_BASIS = np.array([[np.sqrt(2 / 3), 0.0], [-np.sqrt(1 / 6), np.sqrt(1 / 2)], [-np.sqrt(1 / 6), -np.sqrt(1 / 2)]])
"""Orthonormal pivot basis of the 3-part simplex (clay, silt, sand): ilr = clr(x) @ ILR_BASIS."""
COMPOSITION_FLOOR = 0.5
"""Texture fractions below this (in %) are raised to it before the log-ratio (zeros have no log)."""


def ilr(parts: np.ndarray) -> np.ndarray:
    """Isometric log-ratio coordinates (n, 2) of 3-part compositions (n, 3), any positive total."""
    x = np.maximum(np.asarray(parts, dtype=np.float64), COMPOSITION_FLOOR)
    logs = np.log(x)
    return (logs - logs.mean(axis=1, keepdims=True)) @ ILR_BASIS


def ilr_inverse(coords: np.ndarray, total: float = 100.0) -> np.ndarray:
    """Compositions (n, 3) summing to `total` from ilr coordinates (n, 2)."""
    e = np.exp(np.asarray(coords, dtype=np.float64) @ ILR_BASIS.T)
    return total * e / e.sum(axis=1, keepdims=True)


class PropertyRegressor(RegressorMixin, BaseEstimator):
    """One `kind` regressor per target, fitted where the target is measured.

    log(1+x) is chosen per column from the skewness of the rows it is fitted on (never from held-out
    rows); the `composition` columns (clay, silt, sand) are modelled jointly as two isometric
    log-ratio coordinates, so predicted texture is positive and sums to 100.
    """

    def __init__(self, kind: RegressorKind = "plsr", skew_threshold: float | None = 1.0,
                 max_components: int = 20, seed: int = 0, composition: tuple[int, ...] = ()) -> None:
        self.kind = kind
        self.skew_threshold = skew_threshold
        self.max_components = max_components
        self.seed = seed
        self.composition = composition

    def _fit_one(self, X: np.ndarray, y: np.ndarray, log_target: bool, what: str) -> BaseEstimator:
        if len(y) < 5:
            raise SpectralError(f"target {what} has only {len(y)} measured rows; need >= 5")
        est = clone(base_estimator(self.kind, len(y), X.shape[1], self.max_components, log_target, self.seed))
        return est.fit(X, y)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> PropertyRegressor:
        """Fit every column (and the texture composition); a target with fewer than 5 rows is refused."""
        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
        comp = tuple(self.composition)
        if comp and len(comp) != 3:
            raise SpectralError(f"composition needs the 3 texture columns (clay, silt, sand), got {comp}")
        plain = [j for j in range(Y.shape[1]) if j not in comp]
        self.log_columns_ = ()
        if self.skew_threshold is not None and plain:
            self.log_columns_ = tuple(plain[j] for j in skewed_columns(Y[:, plain], self.skew_threshold))
        self.estimators_ = []
        for j in plain:
            rows = ~np.isnan(Y[:, j])
            self.estimators_.append(self._fit_one(X[rows], Y[rows, j], j in self.log_columns_, f"column {j}"))
        self.columns_ = tuple(plain)
        if comp:
            rows = ~np.isnan(Y[:, comp]).any(axis=1)
            z = ilr(Y[rows][:, comp])
            self.composition_estimators_ = [self._fit_one(X[rows], z[:, k], False, f"texture ilr {k + 1}")
                                            for k in range(2)]
        self.n_targets_ = Y.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(rows, targets) predictions in property units."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty((len(X), self.n_targets_))
        for j, est in zip(self.columns_, self.estimators_):
            out[:, j] = np.ravel(est.predict(X))
        if self.composition:
            z = np.stack([np.ravel(e.predict(X)) for e in self.composition_estimators_], axis=1)
            out[:, list(self.composition)] = ilr_inverse(z)
        return out


class CVPlusRegressor(RegressorMixin, BaseEstimator):
    """A PropertyRegressor with CV+ prediction intervals (Barber et al. 2021).

    Fitted as `folds` PropertyRegressors on the K-fold training parts (out-of-fold residuals per
    property) plus one on every row, which makes the point predictions. `predict_interval` gives each
    property's 1-alpha CV+ interval from the fold models' predictions and the residuals.
    """

    def __init__(self, kind: RegressorKind = "plsr", skew_threshold: float | None = 1.0, max_components: int = 20,
                 seed: int = 0, composition: tuple[int, ...] = (), folds: int = 5, alpha: float = 0.1) -> None:
        self.kind = kind
        self.skew_threshold = skew_threshold
        self.max_components = max_components
        self.seed = seed
        self.composition = composition
        self.folds = folds
        self.alpha = alpha

    def _new(self) -> PropertyRegressor:
        return PropertyRegressor(self.kind, self.skew_threshold, self.max_components, self.seed, self.composition)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> CVPlusRegressor:
        """Fold models, out-of-fold residuals (NaN where a property is unmeasured) and the full model."""
        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
        self.fold_of_row_ = np.empty(len(X), dtype=np.int64)
        oof = np.full(Y.shape, np.nan)
        self.fold_models_ = []
        for f, (a, b) in enumerate(KFold(self.folds, shuffle=True, random_state=self.seed).split(X)):
            model = self._new().fit(X[a], Y[a])
            oof[b] = model.predict(X[b])
            self.fold_of_row_[b] = f
            self.fold_models_.append(model)
        self.residuals_ = np.abs(Y - oof)
        self.full_ = self._new().fit(X, Y)
        self.log_columns_ = self.full_.log_columns_
        self.n_targets_ = Y.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(rows, targets) point predictions of the model fitted on every row."""
        return self.full_.predict(X)

    def predict_interval(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper), each (rows, targets): the CV+ 1-alpha interval of every property."""
        folds = np.stack([m.predict(X) for m in self.fold_models_])       # (folds, rows, targets)
        lower, upper = np.full(folds.shape[1:], np.nan), np.full(folds.shape[1:], np.nan)
        for j in range(self.n_targets_):
            measured = ~np.isnan(self.residuals_[:, j])
            lower[:, j], upper[:, j] = cv_plus(folds[:, :, j], self.fold_of_row_[measured],
                                               self.residuals_[measured, j], self.alpha)
        return lower, upper


def composition_columns(names: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    """Indices of (clay, silt, sand) when all three are among `names`, else ()."""
    parts = ("clay", "silt", "sand")
    return tuple(list(names).index(p) for p in parts) if all(p in names for p in parts) else ()


def regressor_to_bytes(model: PropertyRegressor | CVPlusRegressor) -> bytes:
    """skops bytes of a fitted PropertyRegressor or CVPlusRegressor."""
    return sio.dumps(model)


TRUSTED_TYPES: tuple[str, ...] = (
    "misomap.models.spectral.regressors.CVPlusRegressor",
    "misomap.models.spectral.regressors.PropertyRegressor",
    "sklearn.metrics._regression.mean_squared_error",
    "sklearn.metrics._scorer._Scorer",
    "sklearn.model_selection._split.KFold",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
)
"""Exactly the types a regressor file may carry beyond skops' default-trusted ones (builtins,
numpy, scikit-learn estimators); anything else is refused before loading, as for the RF."""


def regressor_from_bytes(data: bytes, source: str = "<bytes>") -> PropertyRegressor | CVPlusRegressor:
    """Load skops bytes, refusing any type outside skops' defaults and TRUSTED_TYPES."""
    model = load_trusted(data, TRUSTED_TYPES, source, SpectralError, "regressor")
    if not isinstance(model, PropertyRegressor | CVPlusRegressor):
        raise SpectralError(f"expected a PropertyRegressor or CVPlusRegressor, {source} holds {type(model).__name__}")
    return model
