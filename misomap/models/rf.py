"""The Random Forest baseline, as the MISO reference: scikit-learn RandomForestClassifier on the
optical bands and terrain/climate covariates (radar where present, x/y optionally) at the pedon
pixel. Fitting, per-chunk prediction and skops (de)serialisation; never touches storage."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier

from misomap.core.errors import MisomapError
from misomap.core.inputs import required_bands
from misomap.models.baseline_config import RFConfig
from misomap.models.skops_io import load_trusted
from misomap.models.weighting import TrainingWeights, balance_weights

log = logging.getLogger(__name__)

TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)
"""Types a model file may carry beyond skops' default-trusted ones (builtins, numpy, sklearn
estimators). Anything else in a file is refused before it is loaded."""

XY_FEATURES = ("x", "y")


class RFModelError(MisomapError):
    """A Random Forest cannot be fitted, applied or loaded; the message says what is at fault."""


@dataclass(frozen=True)
class RFModel:
    """A fitted forest with the feature order and class labels (strings) it expects."""

    forest: RandomForestClassifier
    target: str
    features: tuple[str, ...]
    classes: tuple[str, ...]
    offsets: tuple[float, ...] = ()
    """Log-probability offsets per class (misomap.models.weighting), () = none."""
    fallback: RFModel | None = None
    """A forest on the required inputs only (misomap.core.inputs: no optical bands), applied where
    an optional input has no data; None = such pixels stay nodata."""

    def proba(self, X: np.ndarray) -> np.ndarray:
        """The forest's class probabilities with the decision offsets applied."""
        prob = self.forest.predict_proba(np.asarray(X, dtype=np.float32))
        if not self.offsets or not any(self.offsets):
            return prob
        q = prob * np.exp(np.asarray(self.offsets))[None]
        return q / q.sum(axis=1, keepdims=True)


def select_features(bands: list[str], config: RFConfig) -> list[str]:
    """The RF inputs among cube band names: every band but S2 scene classes, radar if enabled,
    then x/y if enabled (x/y are taken from pixel coordinates, not the cube)."""
    feats = [b for b in bands if not b.endswith("_scl") and (config.radar or not b.startswith("s1_"))]
    if not feats:
        raise RFModelError(f"no usable feature among bands {bands}")
    return feats + list(XY_FEATURES) if config.use_xy else feats


def fallback_features(features: list[str] | tuple[str, ...]) -> list[str]:
    """The features of the fallback forest: the required cube bands (misomap.core.inputs) and x/y
    if used; [] when nothing is optional (no fallback needed)."""
    cube = [f for f in features if f not in XY_FEATURES]
    required = required_bands(cube)
    if len(required) == len(cube):
        return []
    return required + [f for f in features if f in XY_FEATURES]


def with_fallback(model: RFModel, fallback: RFModel) -> RFModel:
    """`model` carrying `fallback` for pixels lacking an optional input (its classes are mapped onto
    the model's when applied)."""
    if fallback.target != model.target:
        raise RFModelError(f"the fallback forest predicts {fallback.target}, the model {model.target}")
    return replace(model, fallback=fallback)


def fit_rf(X: np.ndarray, y: np.ndarray, features: list[str], target: str, config: RFConfig,
           seed: int, weights: TrainingWeights = TrainingWeights()) -> RFModel:
    """Fit one forest; `y` holds class labels (cast to str so every model shares one encoding);
    `weights` evens out the classes: inverse-frequency class weights and/or each pedon weighted by
    its class share^−β as a sample weight."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).astype(str)
    if X.shape != (len(y), len(features)):
        raise RFModelError(f"{target}: X has shape {X.shape}, expected ({len(y)}, {len(features)})")
    if not np.isfinite(X).all():
        bad = features[int(np.where(~np.isfinite(X).all(axis=0))[0][0])]
        raise RFModelError(f"{target}: non-finite training values in feature {bad!r}; "
                           "drop nodata pedons before fitting")
    if len(np.unique(y)) < 2:
        raise RFModelError(f"{target}: training labels hold a single class {np.unique(y)}")
    forest = RandomForestClassifier(
        n_estimators=config.n_estimators, max_depth=config.max_depth,
        min_samples_leaf=config.min_samples_leaf, max_features=config.max_features,
        class_weight="balanced" if weights.balanced else None, n_jobs=config.n_jobs, random_state=seed)
    # Fit on integer codes: scikit-learn's class weighting fails on digit-like string labels.
    classes, codes = np.unique(y, return_inverse=True)
    forest.fit(X, codes, sample_weight=balance_weights(codes, weights.balance) if weights.balance else None)
    return RFModel(forest, target, tuple(features), tuple(str(c) for c in classes))


def predict_proba(model: RFModel, X: np.ndarray, classes: list[str] | None = None) -> np.ndarray:
    """Class probabilities (n, len(classes)); classes unseen in training get probability 0."""
    prob = model.proba(X)
    if classes is None:
        return prob
    out = np.zeros((len(prob), len(classes)), dtype=np.float64)
    for j, cls in enumerate(model.classes):
        if cls in classes:
            out[:, classes.index(cls)] = prob[:, j]
    return out


def predict_chunk(model: RFModel, block: np.ndarray, bands: list[str], x: np.ndarray,
                  y: np.ndarray) -> np.ndarray:
    """Probabilities (n_classes, ny, nx) float32 for one cube block (band, ny, nx) whose band
    order is `bands` and pixel centres `x`, `y`; where a feature is nodata, the fallback forest's
    (if any and its features have data), else NaN. Reusable by any map job."""
    out = _predict_features(model, block, bands, x, y)
    if model.fallback is not None:
        todo = np.isnan(out[0])
        if todo.any():
            filled = _predict_features(model.fallback, block, bands, x, y)[:, todo]
            fb = list(model.fallback.classes)
            mapped = np.stack([filled[fb.index(c)] if c in fb else np.zeros_like(filled[0])
                               for c in model.classes])
            with np.errstate(invalid="ignore", divide="ignore"):  # NaN stays NaN
                out[:, todo] = mapped / mapped.sum(axis=0, keepdims=True)
    return out


def _predict_features(model: RFModel, block: np.ndarray, bands: list[str], x: np.ndarray,
                      y: np.ndarray) -> np.ndarray:
    """`predict_chunk` of one forest: NaN where any of its features is nodata."""
    _, ny, nx = block.shape
    cube_feats = [f for f in model.features if f not in XY_FEATURES]
    missing = [f for f in cube_feats if f not in bands]
    if missing:
        raise RFModelError(f"{model.target}: the cube lacks feature band(s) {missing}")
    idx = [bands.index(f) for f in cube_feats]
    cols = [block[idx].reshape(len(idx), -1)]
    if len(cube_feats) < len(model.features):
        xx, yy = np.meshgrid(np.asarray(x, np.float32), np.asarray(y, np.float32))
        coord = {"x": xx.ravel(), "y": yy.ravel()}
        cols.append(np.stack([coord[f] for f in model.features if f in XY_FEATURES]))
    X = np.concatenate(cols).T.astype(np.float32, copy=False)
    out = np.full((len(model.classes), ny * nx), np.nan, dtype=np.float32)
    valid = np.isfinite(X).all(axis=1)
    if valid.any():
        out[:, valid] = model.proba(X[valid]).T
    return out.reshape(len(model.classes), ny, nx)


def _as_dict(model: RFModel) -> dict:
    out = {"forest": model.forest, "target": model.target, "features": list(model.features),
           "classes": list(model.classes), "offsets": [float(v) for v in model.offsets]}
    if model.fallback is not None:
        out["fallback"] = _as_dict(model.fallback)
    return out


def _from_dict(obj: dict) -> RFModel:
    fallback = obj.get("fallback")
    return RFModel(obj["forest"], obj["target"], tuple(obj["features"]), tuple(obj["classes"]),
                   tuple(float(v) for v in obj.get("offsets", ())),
                   _from_dict(fallback) if fallback is not None else None)


def dumps_model(model: RFModel) -> bytes:
    """Serialise with skops (no pickle), the fallback forest nested in the same file."""
    return sio.dumps(_as_dict(model))


def loads_model(data: bytes, source: str = "<bytes>") -> RFModel:
    """Load a skops file, refusing any type outside skops' defaults and TRUSTED_TYPES."""
    obj = load_trusted(data, TRUSTED_TYPES, source, RFModelError, "model")
    fallback = obj.get("fallback") if isinstance(obj, dict) else None
    if not (isinstance(obj, dict) and isinstance(obj.get("forest"), RandomForestClassifier)) or \
            (fallback is not None and not (isinstance(fallback, dict)
                                           and isinstance(fallback.get("forest"), RandomForestClassifier))):
        raise RFModelError(f"{source} is a skops file but not a misomap Random Forest")
    return _from_dict(obj)
