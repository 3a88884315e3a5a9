"""Classification metrics for permafrost (binary) and soil order (multi-class), defined even when a
fold lacks a class (NaN for what cannot be computed, plus a logged warning) so no fold crashes.
Pure numpy/scikit-learn; the evaluation job feeds it predictions of any model."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

log = logging.getLogger(__name__)


def _quiet_prf(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str],
               average: str | None) -> tuple:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average,
                                               zero_division=0)


def calibration_error(correct: np.ndarray, confidence: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the count-weighted mean |observed frequency − mean confidence|
    over equal-width confidence bins."""
    confidence = np.asarray(confidence, np.float64)
    idx = np.clip((confidence * bins).astype(int), 0, bins - 1)
    err = 0.0
    for b in np.unique(idx):
        m = idx == b
        err += m.sum() * abs(np.mean(correct[m]) - np.mean(confidence[m]))
    return float(err / max(len(confidence), 1))


def reliability(correct: np.ndarray, confidence: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability-diagram table: per equal-width confidence bin, n, mean confidence, observed."""
    confidence = np.asarray(confidence, np.float64)
    idx = np.clip((confidence * bins).astype(int), 0, bins - 1)
    df = pd.DataFrame({"bin": idx, "confidence": confidence, "observed": np.asarray(correct, np.float64)})
    out = df.groupby("bin").agg(n=("bin", "size"), confidence=("confidence", "mean"),
                                observed=("observed", "mean")).reset_index()
    out["bin_low"] = out["bin"] / bins
    return out.drop(columns="bin")


def binary_metrics(y_true: np.ndarray, prob: np.ndarray, positive: str = "1",
                   negative: str = "0", threshold: float = 0.5, where: str = "",
                   warn: bool = True) -> dict[str, float]:
    """Accuracy, balanced accuracy, per-class and macro precision/recall/F1, ROC-AUC, PR-AUC, Brier
    score and expected calibration error (ECE) of P(positive).

    `y_true` holds class labels as strings; ROC/PR-AUC and per-class recall are NaN (with a
    warning naming `where` unless `warn` is False) when a class is absent from `y_true`."""
    y_true = np.asarray(y_true).astype(str)
    prob = np.asarray(prob, dtype=np.float64)
    if len(y_true) == 0:
        raise ValueError(f"no predictions to score{' in ' + where if where else ''}")
    pos = y_true == positive
    y_pred = np.where(prob >= threshold, positive, negative)
    out: dict[str, float] = {"n": float(len(y_true)), "accuracy": accuracy_score(y_true, y_pred),
                             "brier": float(np.mean((prob - pos) ** 2)),
                             "ece": calibration_error(pos, prob)}
    prec, rec, f1, support = _quiet_prf(y_true, y_pred, [negative, positive], None)
    present = [c for c, n in zip((negative, positive), support) if n > 0]
    _, r, f, _ = _quiet_prf(y_true, y_pred, present, "macro")
    out["balanced_accuracy"], out["f1_macro"] = float(r), float(f)
    for i, cls in enumerate((negative, positive)):
        present = support[i] > 0
        out[f"precision_{cls}"] = float(prec[i]) if (y_pred == cls).any() else np.nan
        out[f"recall_{cls}"] = float(rec[i]) if present else np.nan
        out[f"f1_{cls}"] = float(f1[i]) if present else np.nan
    if pos.all() or not pos.any():
        absent = negative if pos.all() else positive
        if warn:
            log.warning("class %r absent%s: ROC-AUC, PR-AUC and its recall are undefined (NaN)",
                        absent, f" in {where}" if where else "")
        out["roc_auc"] = out["pr_auc"] = np.nan
    else:
        out["roc_auc"] = float(roc_auc_score(pos, prob))
        out["pr_auc"] = float(average_precision_score(pos, prob))
    return out


def multiclass_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str],
                       where: str = "", warn: bool = True) -> dict[str, float]:
    """Accuracy, balanced accuracy (= macro recall), macro and weighted precision/recall/F1 and
    per-class recall.

    Macro averages run over the classes present in `y_true` (a class absent from a fold has no
    recall to average); absent classes get NaN recall and, if `warn`, a warning naming `where`."""
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    if len(y_true) == 0:
        raise ValueError(f"no predictions to score{' in ' + where if where else ''}")
    present = [c for c in classes if (y_true == c).any()]
    absent = [c for c in classes if c not in present]
    if absent and warn:
        log.warning("class(es) %s absent%s: their recall is undefined (NaN), macro averages use "
                    "the %d present classes", absent, f" in {where}" if where else "", len(present))
    out: dict[str, float] = {"n": float(len(y_true)), "accuracy": accuracy_score(y_true, y_pred)}
    for avg in ("macro", "weighted"):
        p, r, f, _ = _quiet_prf(y_true, y_pred, present, avg)
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = float(p), float(r), float(f)
    out["balanced_accuracy"] = out["recall_macro"]
    _, rec, _, _ = _quiet_prf(y_true, y_pred, classes, None)
    for cls, r in zip(classes, rec):
        out[f"recall_{cls}"] = float(r) if cls in present else np.nan
    return out


def multiclass_calibration(y_true: np.ndarray, prob: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Multi-class Brier score (sum over every class of the target, 0 best, 2 worst) and the ECE
    of the top-class confidence; `prob` (n, len(classes))."""
    y_true = np.asarray(y_true).astype(str)
    onehot = (y_true[:, None] == np.asarray(classes)[None, :]).astype(np.float64)
    top = np.asarray(classes)[prob.argmax(1)]
    return {"brier": float(np.mean(np.sum((prob - onehot) ** 2, axis=1))),
            "ece": calibration_error(top == y_true, prob.max(1))}


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class, in the order of `classes`."""
    return confusion_matrix(np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str),
                            labels=classes)


def mean_sd(per_fold: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation over folds (rows) of each metric (columns), NaN-aware."""
    numeric = per_fold.select_dtypes("number")
    return pd.DataFrame({"mean": numeric.mean(skipna=True), "sd": numeric.std(ddof=1, skipna=True)})
