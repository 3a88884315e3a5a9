"""The stacked candidate of the published map: per target, a logistic regression on the logits of
two models' class probabilities (the RF's and MISO's), fitted on out-of-fold predictions only.

Stored as plain numbers (classes, coefficients, intercepts), so the map predictor applies it with
numpy and nothing is unpickled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

EPS = 1e-4
"""Probabilities are clipped to [EPS, 1 - EPS] before the logit (a forest gives exact 0 and 1)."""


def stack_features(*probs: np.ndarray) -> np.ndarray:
    """(n, features) from each model's (n, classes) probabilities: the log-odds of P(class 1) for a
    binary target, the log-probabilities of every class otherwise (softmax logits up to a shift)."""
    cols = []
    for p in probs:
        p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
        cols.append(np.log(p[:, 1:] / p[:, :1]) if p.shape[1] == 2 else np.log(p))
    return np.concatenate(cols, axis=1)


@dataclass(frozen=True)
class Stack:
    """A fitted per-target stack: `classes` of the target in order, `coef` (k, features) and
    `intercept` (k,), k = 1 for a binary target (the log-odds of the second class)."""

    classes: tuple[str, ...]
    coef: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]

    def proba(self, features: np.ndarray) -> np.ndarray:
        """(n, len(classes)) probabilities; rows with a non-finite feature give NaN."""
        z = features @ np.asarray(self.coef).T + np.asarray(self.intercept)
        if len(self.classes) == 2:
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            out = np.stack([1 - p1, p1], axis=1)
        else:
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            out = e / e.sum(axis=1, keepdims=True)
        out[~np.isfinite(features).all(axis=1)] = np.nan
        return out

    def as_dict(self) -> dict[str, list]:
        return {"classes": list(self.classes), "coef": [list(r) for r in self.coef],
                "intercept": list(self.intercept)}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> Stack:
        return cls(tuple(data["classes"]), tuple(tuple(float(v) for v in r) for r in data["coef"]),
                   tuple(float(v) for v in data["intercept"]))


def fit_stack(features: np.ndarray, y: np.ndarray, classes: tuple[str, ...], seed: int) -> Stack | None:
    """An unweighted logistic regression (the models' default class rule) of `y` (class names) on `features`; None when the rows
    hold fewer than two classes. A class absent from the rows gets a very low intercept, so it is
    never predicted (as an RF never predicts a class it never saw)."""
    y = np.asarray(y).astype(str)
    present = [c for c in classes if (y == c).any()]
    if len(present) < 2:
        return None
    lr = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    lr.fit(features, y)
    fitted = [str(c) for c in lr.classes_]
    if len(classes) == 2:
        sign = 1.0 if fitted[1] == classes[1] else -1.0
        return Stack(classes, (tuple(sign * lr.coef_[0]),), (float(sign * lr.intercept_[0]),))
    coef = np.zeros((len(classes), features.shape[1]))
    intercept = np.full(len(classes), -30.0)
    rows = lr.coef_ if len(fitted) > 2 else np.stack([-lr.coef_[0] / 2, lr.coef_[0] / 2])
    icpt = lr.intercept_ if len(fitted) > 2 else np.array([-lr.intercept_[0] / 2, lr.intercept_[0] / 2])
    for j, name in enumerate(fitted):
        k = classes.index(name)
        coef[k], intercept[k] = rows[j], icpt[j]
    return Stack(classes, tuple(tuple(r) for r in coef), tuple(intercept))
