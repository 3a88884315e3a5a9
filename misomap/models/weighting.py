"""Class weighting, one rule for every model (`evaluation.class_weighting`):

- `none`: unweighted training, the plain decision (P ≥ 0.5, most probable class);
- `balanced`: class-balanced training (RF `class_weight="balanced"`, MISO weighted losses);
- `threshold`: unweighted training, then logit offsets fitted on the validation split carved from
  the training part only: a permafrost threshold and a soil-order prior correction
  (log p_c − α·log π_c), each chosen to maximise macro F1 on validation.

Beside the rule, `evaluation.class_balance` (β) evens out what training sees, for every model
alike: each pedon weighs (its class's share of the task's training labels)^−β — the RF's sample
weights, MISO's per-label loss weights (`balance_weights`, `TaskLoss.fit_weights`). β = 0.5 is
square-root balancing: a pedon of a class 100× rarer weighs 10× more, not 100×.

The offsets are applied to the probabilities themselves (`DecisionOffsets.apply`), so the maps,
the 0.5/argmax rule downstream and the calibration figures all see the adjusted model.
Pure numpy; never touches storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.metrics import f1_score

ClassWeighting = Literal["none", "balanced", "threshold"]
THRESHOLDS = np.round(np.arange(0.1, 0.91, 0.025), 3)
PRIOR_POWERS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class TrainingWeights:
    """How one fit evens out the classes: `balanced` = inverse-frequency class weights
    (`class_weighting: balanced`), `balance` = β of `class_balance` (`balance_weights`)."""

    balanced: bool = False
    balance: float = 0.0


@dataclass(frozen=True)
class DecisionOffsets:
    """Logit offsets: `permafrost` added to the permafrost logit, `soil_order` (one per class) to
    the soil-order log-probabilities. Zero offsets leave a model unchanged."""

    permafrost: float = 0.0
    soil_order: tuple[float, ...] = ()

    def apply_permafrost(self, p: np.ndarray) -> np.ndarray:
        """P(permafrost) with the offset: the fitted threshold becomes 0.5."""
        if self.permafrost == 0.0:
            return p
        q = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
        return (1 / (1 + np.exp(-(np.log(q / (1 - q)) + self.permafrost)))).astype(np.asarray(p).dtype)

    def apply_soil_order(self, prob: np.ndarray, axis: int = -1) -> np.ndarray:
        """Soil-order probabilities (classes along `axis`) with the offsets, renormalised."""
        if not self.soil_order or not any(self.soil_order):
            return prob
        shape = [1] * prob.ndim
        shape[axis] = len(self.soil_order)
        w = np.exp(np.asarray(self.soil_order, np.float64)).reshape(shape)
        q = np.asarray(prob, np.float64) * w
        return (q / q.sum(axis=axis, keepdims=True)).astype(np.asarray(prob).dtype)

    def as_dict(self) -> dict:
        return {"permafrost": self.permafrost, "soil_order": list(self.soil_order)}

    @classmethod
    def from_dict(cls, d: dict | None) -> DecisionOffsets:
        d = d or {}
        return cls(float(d.get("permafrost", 0.0)), tuple(float(v) for v in d.get("soil_order", ())))


def _macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(y, pred, labels=np.unique(y), average="macro", zero_division=0))


def fit_permafrost_offset(y: np.ndarray, p: np.ndarray) -> float:
    """The offset −logit(t) of the threshold t maximising macro F1 of (y, p ≥ t); 0 if y is empty
    or one class (ties go to the threshold closest to 0.5)."""
    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:
        return 0.0
    scores = [(_macro_f1(y, (p >= t).astype(int)), -abs(t - 0.5), t) for t in THRESHOLDS]
    t = max(scores)[2]
    return float(-np.log(t / (1 - t)))


def fit_soil_offsets(y: np.ndarray, prob: np.ndarray, priors: np.ndarray) -> tuple[float, ...]:
    """Offsets −α·log π (π the training priors, α in PRIOR_POWERS) maximising macro F1 on (y, prob);
    y holds class indices. No offsets (α = 0) wins ties."""
    y = np.asarray(y).astype(int)
    if len(y) == 0:
        return ()
    logp = np.log(np.clip(np.asarray(priors, np.float64), 1e-3, None))
    best = max(PRIOR_POWERS, key=lambda a: (_macro_f1(y, (np.log(np.clip(prob, 1e-12, None)) - a * logp)
                                                      .argmax(-1)), -a))
    return tuple(float(v) for v in -best * logp) if best else ()


def class_priors(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Class shares of integer labels (-1 ignored), for the prior correction."""
    labels = np.asarray(labels)
    labels = labels[labels >= 0]
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def balance_weights(labels: np.ndarray, power: float) -> np.ndarray:
    """Per-sample training weights of one task, mean 1 over the labelled samples: a sample's class
    share of the labels (integer labels, < 0 = unlabelled, weight 0) to the power −`power`.
    `power` 0 gives every labelled sample weight 1."""
    lab = np.asarray(labels)
    ok = lab >= 0
    w = np.zeros(len(lab))
    if ok.any():
        _, inverse, counts = np.unique(lab[ok], return_inverse=True, return_counts=True)
        w[ok] = (counts / counts.sum())[inverse] ** -power
        w[ok] /= w[ok].mean()
    return w


def median_offsets(offsets: list[DecisionOffsets]) -> DecisionOffsets:
    """The element-wise median of per-fold offsets: the rule the final (map) model applies."""
    if not offsets:
        return DecisionOffsets()
    pf = float(np.median([o.permafrost for o in offsets]))
    n = max(len(o.soil_order) for o in offsets)
    if n == 0:
        return DecisionOffsets(pf)
    so = np.median([o.soil_order or (0.0,) * n for o in offsets], axis=0)
    return DecisionOffsets(pf, tuple(float(v) for v in so))
