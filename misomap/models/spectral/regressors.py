"""Downstream regressors for soil properties: PLSR (the chemometrics baseline) and an MLP.

One model per property, each fitted on the rows where that property was measured; skewed
properties are modelled as log(1+x). Persisted with skops (trusted types only), never pickle.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import skops.io as sio
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from misomap.spectra.errors import SpectralError

log = logging.getLogger(__name__)

RegressorKind = Literal["plsr", "mlp"]
PLS_GRID = (1, 2, 3, 4, 6, 8, 10, 12, 15, 20, 25, 30)


def base_estimator(kind: RegressorKind, n_rows: int, n_features: int, max_components: int,
                   log_target: bool, seed: int) -> BaseEstimator:
    """PLSR with its number of components chosen by inner 3-fold CV, or a small scaled MLP."""
    if kind == "plsr":
        limit = max(1, min(max_components, n_features, (2 * n_rows) // 3 - 1))
        grid = [k for k in PLS_GRID if k <= limit] or [1]
        model = GridSearchCV(PLSRegression(scale=True), {"n_components": grid},
                             cv=KFold(3, shuffle=True, random_state=seed), scoring="neg_mean_squared_error")
    elif kind == "mlp":
        model = make_pipeline(StandardScaler(), MLPRegressor(
            hidden_layer_sizes=(64,), alpha=1e-2, learning_rate_init=1e-3, max_iter=400,
            early_stopping=n_rows >= 50, n_iter_no_change=10, random_state=seed))
    else:
        raise SpectralError(f"unknown regressor kind {kind!r}; use 'plsr' or 'mlp'")
    target_scaler = StandardScaler()
    if log_target:
        target_scaler = Pipeline([("log1p", FunctionTransformer(np.log1p, np.expm1, check_inverse=False)),
                                  ("scale", StandardScaler())])
    return TransformedTargetRegressor(regressor=model, transformer=target_scaler)


class PropertyRegressor(RegressorMixin, BaseEstimator):
    """One `kind` regressor per target column, fitted where the column is not NaN."""

    def __init__(self, kind: RegressorKind = "plsr", log_columns: tuple[int, ...] = (),
                 max_components: int = 20, seed: int = 0) -> None:
        self.kind = kind
        self.log_columns = log_columns
        self.max_components = max_components
        self.seed = seed

    def fit(self, X: np.ndarray, Y: np.ndarray) -> PropertyRegressor:
        """Fit every column; a column with fewer than 5 measured rows is refused."""
        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
        self.estimators_ = []
        for j in range(Y.shape[1]):
            rows = ~np.isnan(Y[:, j])
            if rows.sum() < 5:
                raise SpectralError(f"target column {j} has only {int(rows.sum())} measured rows; need >= 5")
            est = clone(base_estimator(self.kind, int(rows.sum()), X.shape[1], self.max_components,
                                       j in self.log_columns, self.seed))
            self.estimators_.append(est.fit(X[rows], Y[rows, j]))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(rows, targets) predictions in property units."""
        X = np.asarray(X, dtype=np.float64)
        return np.stack([np.ravel(e.predict(X)) for e in self.estimators_], axis=1)


def regressor_to_bytes(model: PropertyRegressor) -> bytes:
    """skops bytes of a fitted PropertyRegressor."""
    return sio.dumps(model)


TRUSTED_TYPES: tuple[str, ...] = (
    "misomap.models.spectral.regressors.PropertyRegressor", "sklearn.metrics._regression.mean_squared_error",
    "sklearn.metrics._scorer._Scorer", "sklearn.model_selection._split.KFold",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer")
"""Exactly the types a PropertyRegressor file carries beyond skops' defaults; anything else is refused."""


def regressor_from_bytes(data: bytes) -> PropertyRegressor:
    """Load skops bytes, trusting only skops' defaults and TRUSTED_TYPES."""
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as err:  # noqa: BLE001 - skops raises various errors on a corrupt archive
        raise SpectralError(f"not a readable skops regressor file ({type(err).__name__}: {err})") from None
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise SpectralError(f"refusing to load a regressor with untrusted types {refused}")
    model = sio.loads(data, trusted=list(TRUSTED_TYPES))
    if not isinstance(model, PropertyRegressor):
        raise SpectralError(f"expected a PropertyRegressor, the file holds {type(model).__name__}")
    return model
