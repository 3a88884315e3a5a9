"""Agreement metrics for soil-property predictions: R2, RMSE, bias, RPIQ and Lin's CCC."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    keep = ~(np.isnan(t) | np.isnan(p))
    return t[keep], p[keep]


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination, 1 - SSE/SST."""
    t, p = _pair(y_true, y_pred)
    return float(1 - np.sum((t - p) ** 2) / np.sum((t - t.mean()) ** 2))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def bias(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean of prediction minus observation."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(p - t))


def rpiq(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Ratio of the observations' interquartile range to the RMSE."""
    t, _ = _pair(y_true, y_pred)
    q1, q3 = np.percentile(t, [25, 75])
    err = rmse(y_true, y_pred)
    return float("inf") if err == 0 else float((q3 - q1) / err)


def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Lin's concordance correlation coefficient: agreement with the 1:1 line."""
    t, p = _pair(y_true, y_pred)
    cov = np.mean((t - t.mean()) * (p - p.mean()))
    return float(2 * cov / (t.var() + p.var() + (t.mean() - p.mean()) ** 2))


METRICS = {"r2": r2, "rmse": rmse, "bias": bias, "rpiq": rpiq, "ccc": ccc}


def metrics_table(y_true: np.ndarray, y_pred: np.ndarray, names: tuple[str, ...] | list[str],
                  **labels: str) -> pd.DataFrame:
    """One row per property with n and every metric; extra keyword labels become columns."""
    rows = []
    for j, name in enumerate(names):
        t, p = _pair(y_true[:, j], y_pred[:, j])
        row = {**labels, "property": name, "n": int(t.size)}
        row.update({k: (f(t, p) if t.size > 1 else float("nan")) for k, f in METRICS.items()})
        rows.append(row)
    return pd.DataFrame(rows)
