"""The Random Forest's cross-validation: out-of-fold predictions on every fold scheme under the
shared class-weighting rule (decision offsets fitted on a validation split carved inside each
training part), from the evaluation and rf sections only."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm import tqdm

from misomap.evaluation.config import EvaluationConfig
from misomap.labels.folds import FoldsError, carve_validation, scheme_columns
from misomap.labels.pedons import TARGETS
from misomap.models.baseline_config import RFConfig
from misomap.models.rf import RFModel, RFModelError, fit_rf, predict_proba
from misomap.models.weighting import TrainingWeights, class_priors, fit_permafrost_offset, fit_soil_offsets

log = logging.getLogger(__name__)


def target_rows(table: pd.DataFrame, target: str, features: list[str]) -> pd.DataFrame:
    """Rows with a label for `target` and finite values in every feature (dropped ones logged)."""
    rows = table[table[target].notna()]
    values = np.isfinite(rows[features].to_numpy(dtype=np.float64))
    finite = values.all(axis=1)
    if (~finite).any():
        per_band = {f: int(n) for f, n in zip(features, (~values).sum(axis=0)) if n}
        log.warning("%s: %d labelled pedon(s) have nodata in some feature band, left out "
                    "(e.g. %s); nodata count per band: %s", target, int((~finite).sum()),
                    list(rows.loc[~finite, "pedon_id"][:5]), per_band)
    rows = rows[finite]
    if target == "permafrost":
        rows = rows.assign(permafrost=rows["permafrost"].astype(int))
    return rows.assign(label=rows[target].astype(str))


def forest_weights(ev: EvaluationConfig) -> TrainingWeights:
    """The shared rules' weighting of a forest's training pedons (CV folds and the final model)."""
    return TrainingWeights(ev.class_weighting == "balanced", ev.class_balance)


def fit_fold(X: np.ndarray, y: np.ndarray, xy: np.ndarray, f_arr: np.ndarray, fold: int,
             features: list[str], target: str, ev: EvaluationConfig, rf: RFConfig, seed: int) -> RFModel:
    """The forest of one test fold under the shared class-weighting rule, the one fold procedure of
    the RF's cross-validation and of nested validation: `threshold` first fits on the training part
    less a carved validation split, fits the decision offsets there, then refits on the whole
    training part and keeps the offsets."""
    train = (f_arr >= 0) & (f_arr != fold)
    model = fit_rf(X[train], y[train], features, target, rf, seed, forest_weights(ev))
    if ev.class_weighting != "threshold":
        return model
    fit, val = carve_validation(f_arr, fold, ev.val_fraction, seed, xy)
    inner = fit_rf(X[fit], y[fit], features, target, rf, seed, forest_weights(ev))
    fitted = dict(zip(inner.classes, class_offsets(inner, X[val], y[val], y[fit])))
    return replace(model, offsets=tuple(fitted.get(c, 0.0) for c in model.classes))


def class_offsets(model: RFModel, X: np.ndarray, y: np.ndarray, y_train: np.ndarray) -> tuple[float, ...]:
    """Per-class decision offsets (model.classes order) fitted on validation rows X, y."""
    prob = model.proba(X)
    classes = list(model.classes)
    known = np.isin(y, classes)
    codes = np.array([classes.index(v) for v in y[known]], dtype=int)
    if model.target == "permafrost":
        pos = classes.index("1")
        b = fit_permafrost_offset(codes == pos, prob[known, pos])
        return tuple(b if c == "1" else 0.0 for c in classes)
    priors = class_priors(np.array([classes.index(v) for v in y_train]), len(classes))
    return fit_soil_offsets(codes, prob[known], priors) or (0.0,) * len(classes)


def cross_validate(rows: pd.DataFrame, folds: pd.DataFrame, target: str, features: list[str],
                   ev: EvaluationConfig, rf: RFConfig, seed: int, fallback: list[str] | None = None
                   ) -> tuple[pd.DataFrame, list[dict[str, float]], list[dict[str, float]]]:
    """Out-of-fold predictions of `target` for every scheme in `folds` (predictions layout of
    misomap.evaluation.scores), each fold's decision offsets by class, and those of the fold's
    fallback forest. With `fallback` (the features of misomap.models.rf.fallback_features), `rows`
    may lack optional features: each fold also fits a forest on `fallback` over all its training
    rows, which predicts the test rows lacking a feature (as the map does at such pixels); without
    it every row must have every feature. A fold whose training part has one class is skipped with
    a warning."""
    classes = list(TARGETS[target])
    fold_of = folds.set_index("pedon_id").loc[rows["pedon_id"]]
    X = rows[features].to_numpy(dtype=np.float32)
    full = np.isfinite(X).all(axis=1)
    if fallback is None and not full.all():
        raise RFModelError(f"{target}: {int((~full).sum())} row(s) lack a feature and no fallback is given")
    Xf = rows[fallback].to_numpy(dtype=np.float32) if fallback else X
    y = rows["label"].to_numpy()
    xy = rows[["x", "y"]].to_numpy(dtype=np.float64)
    out, offsets, fb_offsets = [], [], []
    jobs = [(s, f) for s in scheme_columns(folds) for f in sorted(set(fold_of[s]) - {-1})]
    for scheme, fold in tqdm(jobs, desc=f"RF CV {target}", leave=False):
        f_arr = fold_of[scheme].to_numpy()
        test = f_arr == fold
        if not test.any():
            continue
        t0 = time.perf_counter()
        try:
            model = fit_fold(X[full], y[full], xy[full], f_arr[full], fold, features, target, ev, rf, seed)
            fb = fit_fold(Xf, y, xy, f_arr, fold, fallback, target, ev, rf, seed) \
                if fallback and (test & ~full).any() else None
        except (RFModelError, FoldsError) as err:
            log.warning("%s %s fold %d skipped: %s", target, scheme, fold, err)
            continue
        offsets.append(dict(zip(model.classes, model.offsets)))
        prob = np.zeros((int(test.sum()), len(classes)))
        tf = full[test]
        prob[tf] = predict_proba(model, X[test & full], classes)
        if fb is not None:
            fb_offsets.append(dict(zip(fb.classes, fb.offsets)))
            prob[~tf] = predict_proba(fb, Xf[test & ~full], classes)
        pred = pd.DataFrame({"pedon_id": rows["pedon_id"].to_numpy()[test], "target": target,
                             "scheme": scheme, "fold": fold, "y_true": y[test],
                             "y_pred": np.asarray(classes)[prob.argmax(axis=1)],
                             "train_seconds": time.perf_counter() - t0})
        out.append(pd.concat([pred, pd.DataFrame(prob, columns=[f"p_{c}" for c in classes])], axis=1))
    return pd.concat(out, ignore_index=True), offsets, fb_offsets


def nested_predictions(rows: pd.DataFrame, folds: pd.DataFrame, target: str, features: list[str],
                       ev: EvaluationConfig, rf: RFConfig, seed: int,
                       plan: list[tuple[str, int, list[int]]]) -> pd.DataFrame:
    """The forest's predictions on the inner folds of each test fold (`plan`: scheme, test fold,
    inner fold ids), each by `fit_fold` on the training part less the inner fold: the evaluation
    layout (`fold` the test fold) plus `inner_fold`. The test fold's pedons are never fitted on or
    predicted."""
    classes = list(TARGETS[target])
    fold_of = folds.set_index("pedon_id").loc[rows["pedon_id"]]
    X = rows[features].to_numpy(dtype=np.float32)
    y = rows["label"].to_numpy()
    xy = rows[["x", "y"]].to_numpy(dtype=np.float64)
    ids = rows["pedon_id"].astype(str).to_numpy()
    out = []
    for scheme, fold, inner_ids in plan:
        col = fold_of[scheme].to_numpy()
        inner = np.where(col == fold, -1, col)  # the training part alone, folds as they are
        for g in inner_ids:
            held = inner == g
            model = fit_fold(X, y, xy, inner, g, features, target, ev, rf, seed)
            prob = predict_proba(model, X[held], classes)
            pred = pd.DataFrame({"pedon_id": ids[held], "target": target, "scheme": scheme, "fold": fold,
                                 "inner_fold": g, "y_true": y[held],
                                 "y_pred": np.asarray(classes)[prob.argmax(axis=1)]})
            out.append(pd.concat([pred, pd.DataFrame(prob, columns=[f"p_{c}" for c in classes])], axis=1))
    return pd.concat(out, ignore_index=True)
