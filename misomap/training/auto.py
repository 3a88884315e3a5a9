"""The published map's model chosen per target by nested spatial validation (`map.model: auto`).

Candidates: `rf`, `miso`, and `stack` (a class-balanced logistic regression on the logits of the
RF's and MISO's out-of-fold probabilities, misomap.models.stack). For every test fold, both models
are fitted again inside its training part on the inner folds MISO's design choice uses
(`misomap.labels.folds.inner_folds`, the one fold procedure of each model: rf_cv.fit_fold,
miso_cv.fit_fold); the inner folds' predictions score each candidate with the criterion of MISO's
design (macro recall of the target: balanced accuracy for permafrost), the stack cross-fitted across
the inner folds. Each test fold is predicted by the candidate with the best mean inner score (the
stack fitted on the training part's inner predictions only), so the scored predictions are the whole
procedure's, choice included. The map takes, per target, the candidate with the best mean inner
score over the test folds of the map scheme; a published stack is fitted on the cross-validated
(out-of-fold) predictions of both models, the training part of the final models. Test folds and
truth rasters never take part in a choice."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from misomap.core.errors import MisomapError
from misomap.labels.pedons import TARGETS
from misomap.models.stack import Stack, fit_stack, stack_features

log = logging.getLogger(__name__)

CANDIDATES = ("rf", "miso", "stack")
"""In order of preference on a tie: the simpler model first."""
KEYS = ["target", "scheme", "fold"]


class AutoError(MisomapError):
    """The published map's model cannot be chosen (missing or leaking predictions)."""


def macro_recall(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in `y` (NaN when `y` is empty): the design criterion."""
    classes = np.unique(y)
    return float(np.mean([(pred[y == c] == c).mean() for c in classes])) if len(classes) else float("nan")


def _prob_cols(target: str) -> list[str]:
    return [f"p_{c}" for c in TARGETS[target]]


def paired(frame: pd.DataFrame, target: str, keys: list[str]) -> pd.DataFrame:
    """The RF's and MISO's rows of `target` side by side on the pedons both predicted (a pedon on a
    nodata pixel is left out by one of them; the candidates are compared on the same pedons):
    columns `keys`, pedon_id, y_true, rf_p_<class>…, miso_p_<class>…"""
    cols = _prob_cols(target)
    sub = frame[frame["target"] == target]
    parts = []
    for model in ("rf", "miso"):
        rows = sub[sub["model"] == model]
        if rows.empty:
            raise AutoError(f"no {model} predictions of {target}: both models are needed to choose")
        parts.append(rows[[*keys, "pedon_id", "y_true", *cols]].astype({"y_true": str})
                     .rename(columns={c: f"{model}_{c}" for c in cols}))
    return parts[0].merge(parts[1], on=[*keys, "pedon_id", "y_true"], how="inner")


def _features(rows: pd.DataFrame, target: str) -> np.ndarray:
    cols = _prob_cols(target)
    return stack_features(rows[[f"rf_{c}" for c in cols]].to_numpy(), rows[[f"miso_{c}" for c in cols]].to_numpy())


def _cross_fitted_stack(rows: pd.DataFrame, target: str, seed: int) -> np.ndarray:
    """The stack's out-of-fold probabilities on `rows`: fitted on the other inner folds, so it is
    scored on a whole held-out inner fold as RF and MISO are (needs two or more inner folds)."""
    classes = TARGETS[target]
    X, y = _features(rows, target), rows["y_true"].to_numpy()
    out = np.full((len(rows), len(classes)), np.nan)
    groups = rows["inner_fold"].to_numpy()
    for fit, held in GroupKFold(n_splits=len(set(groups))).split(X, y, groups):
        stack = fit_stack(X[fit], y[fit], classes, seed)
        if stack is not None:
            out[held] = stack.proba(X[held])
    return out


def inner_scores(inner: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Every candidate's score on every inner fold: rows target, scheme, fold (the test fold),
    inner_fold, candidate, score, pedons."""
    rows = []
    for target in TARGETS:
        if not (inner["target"] == target).any():
            continue
        both = paired(inner, target, [*KEYS[1:], "inner_fold"])
        cols = _prob_cols(target)
        for (scheme, fold), part in both.groupby(["scheme", "fold"]):
            part = part.reset_index(drop=True)
            probs = {"rf": part[[f"rf_{c}" for c in cols]].to_numpy(),
                     "miso": part[[f"miso_{c}" for c in cols]].to_numpy()}
            if part["inner_fold"].nunique() >= 2:  # else the stack cannot be scored spatially: no candidate
                probs["stack"] = _cross_fitted_stack(part, target, seed)
            names = np.asarray(TARGETS[target])
            for g in sorted(set(part["inner_fold"])):
                m = (part["inner_fold"] == g).to_numpy()
                y = part["y_true"].to_numpy()[m]
                for cand, p in probs.items():
                    ok = np.isfinite(p[m]).all(axis=1)
                    score = macro_recall(y[ok], names[p[m][ok].argmax(axis=1)]) if ok.any() else float("nan")
                    rows.append({"target": target, "scheme": scheme, "fold": int(fold), "inner_fold": int(g),
                                 "candidate": cand, "score": score, "pedons": int(m.sum())})
    return pd.DataFrame(rows)


def choose(scores: pd.DataFrame, map_scheme: str,
           candidates: tuple[str, ...] = CANDIDATES) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Per target and test fold, the candidate with the best mean inner score (ties to the earlier
    in `candidates`), with its margin over the runner-up; and per target the map's choice: the best
    mean over the test folds of `map_scheme` ({target: {model, margin, scores}})."""
    mean = (scores[scores["candidate"].isin(candidates)]
            .groupby([*KEYS, "candidate"])["score"].mean().unstack("candidate"))
    scored = [c for c in candidates if c in mean.columns and mean[c].notna().all()]
    if not scored:
        raise AutoError(f"no candidate of {list(candidates)} has an inner score on every test fold (the stack "
                        "needs map.auto.inner_folds >= 2)")
    if len(scored) < len(candidates):
        log.warning("candidates without an inner score on every test fold are left out: %s (the stack needs "
                    "map.auto.inner_folds >= 2)", sorted(set(candidates) - set(scored)))
    mean = mean[scored]
    per_fold = mean.assign(chosen=mean.idxmax(axis=1), margin=_margin(mean)).reset_index()
    on_map = mean[mean.index.get_level_values("scheme") == map_scheme]
    if on_map.empty:
        raise AutoError(f"map.auto.scheme {map_scheme!r} has no inner scores; schemes with some: "
                        f"{sorted(set(mean.index.get_level_values('scheme')))}")
    choice = {}
    for target, part in on_map.groupby(level="target"):
        avg = part.mean()
        choice[str(target)] = {"model": str(avg.idxmax()), "margin": float(_margin(avg.to_frame().T).iloc[0]),
                               "scores": {k: float(v) for k, v in avg.items()},
                               "folds": len(part)}
    return per_fold, choice


def _margin(mean: pd.DataFrame) -> pd.Series:
    """Best minus second-best score per row (NaN with a single candidate)."""
    top = np.sort(mean.to_numpy(), axis=1)
    second = top[:, -2] if top.shape[1] > 1 else np.full(len(top), np.nan)
    return pd.Series(top[:, -1] - second, index=mean.index)


def _check_training_part(rows: pd.DataFrame, folds: pd.DataFrame, scheme: str, fold: int) -> None:
    """Refuse stack rows from the test fold itself (leakage)."""
    test = set(folds.loc[folds[scheme] == fold, "pedon_id"].astype(str))
    leak = sorted(set(rows["pedon_id"].astype(str)) & test)
    if leak:
        raise AutoError(f"{scheme} fold {fold}: {len(leak)} inner prediction(s) lie in the test fold "
                        f"itself (e.g. {leak[:3]}); inner folds must come from the training part")


def auto_predictions(per_fold: pd.DataFrame, inner: pd.DataFrame, outer: pd.DataFrame,
                     folds: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, dict[tuple, list[str]]]:
    """The procedure's test-fold predictions (evaluation layout plus `candidate`): each test fold
    predicted by its chosen candidate, a stack fitted on that fold's inner predictions only. Also
    the pedons each stack was fitted on, by (target, scheme, fold)."""
    parts, fitted_on = [], {}
    for target in sorted(set(per_fold["target"])):
        names, cols = np.asarray(TARGETS[target]), _prob_cols(target)
        test_rows = paired(outer, target, KEYS[1:])
        train_rows = paired(inner, target, [*KEYS[1:], "inner_fold"])
        for row in per_fold[per_fold["target"] == target].itertuples():
            test = test_rows[(test_rows["scheme"] == row.scheme) & (test_rows["fold"] == row.fold)]
            if row.chosen == "stack":
                fit = train_rows[(train_rows["scheme"] == row.scheme) & (train_rows["fold"] == row.fold)]
                _check_training_part(fit, folds, row.scheme, row.fold)
                stack = fit_stack(_features(fit, target), fit["y_true"].to_numpy(), TARGETS[target], seed)
                if stack is None:
                    raise AutoError(f"{target} {row.scheme} fold {row.fold}: the stack's inner rows hold one class")
                fitted_on[(target, row.scheme, int(row.fold))] = fit["pedon_id"].astype(str).tolist()
                p = stack.proba(_features(test, target))
            else:
                p = test[[f"{row.chosen}_{c}" for c in cols]].to_numpy()
            frame = pd.DataFrame({"pedon_id": test["pedon_id"].to_numpy(), "target": target,
                                  "scheme": row.scheme, "fold": int(row.fold), "y_true": test["y_true"].to_numpy(),
                                  "y_pred": names[p.argmax(axis=1)], "candidate": row.chosen})
            parts.append(pd.concat([frame, pd.DataFrame(p, columns=cols)], axis=1))
    return pd.concat(parts, ignore_index=True), fitted_on


def map_stack(outer: pd.DataFrame, target: str, scheme: str, seed: int) -> Stack:
    """The published stack of `target`: fitted on both models' out-of-fold predictions on `scheme`
    (every pedon there was held out from the models that predicted it)."""
    rows = paired(outer, target, KEYS[1:])
    rows = rows[rows["scheme"] == scheme]
    stack = fit_stack(_features(rows, target), rows["y_true"].to_numpy(), TARGETS[target], seed)
    if stack is None:
        raise AutoError(f"{target}: the out-of-fold rows on {scheme} hold one class; no stack can be fitted")
    return stack
