"""Decision offsets for MISO (the `threshold` class-weighting rule): fitted on validation predictions,
applied to predictions, and baked into the heads' biases so every inference path applies them."""

from __future__ import annotations

import numpy as np
import torch

from misomap.models.miso.config import SOIL_ORDERS
from misomap.models.miso.crops import Points
from misomap.models.miso.model import MisoModel
from misomap.models.weighting import DecisionOffsets, class_priors, fit_permafrost_offset, fit_soil_offsets


def fit_offsets(pred: dict[str, np.ndarray], points: Points, train_points: Points) -> DecisionOffsets:
    """Decision offsets fitted on validation predictions `pred` at `points` (the `threshold` rule)."""
    ok = pred["valid"]
    pf = so = None
    if "permafrost" in pred:
        m = ok & (points.permafrost >= 0)
        pf = fit_permafrost_offset(points.permafrost[m], pred["permafrost"][m])
    if "soil_order" in pred:
        m = ok & (points.soil >= 0)
        so = fit_soil_offsets(points.soil[m], pred["soil_order"][m],
                              class_priors(train_points.soil, len(SOIL_ORDERS)))
    return DecisionOffsets(pf or 0.0, so or ())

def apply_offsets(pred: dict[str, np.ndarray], offsets: DecisionOffsets) -> dict[str, np.ndarray]:
    """Predictions with the decision offsets applied (entropies recomputed from them)."""
    out = dict(pred)
    if "permafrost" in pred:
        p = offsets.apply_permafrost(pred["permafrost"])
        q = np.clip(p, 1e-7, 1 - 1e-7)
        out["permafrost"], out["permafrost_entropy"] = p, -(q * np.log(q) + (1 - q) * np.log(1 - q))
    if "soil_order" in pred:
        p = offsets.apply_soil_order(pred["soil_order"])
        out["soil_order"] = p
        out["soil_order_entropy"] = -(p * np.log(np.clip(p, 1e-9, None))).sum(-1)
    return out

def bake_offsets(model: MisoModel, offsets: DecisionOffsets) -> None:
    """Add the decision offsets to the heads' biases, so every inference path applies them."""
    with torch.no_grad():
        heads = model.heads.heads
        if "permafrost" in heads:
            heads["permafrost"].bias += offsets.permafrost
        if "soil_order" in heads and offsets.soil_order:
            bias = heads["soil_order"].bias
            bias += torch.tensor(offsets.soil_order, dtype=bias.dtype, device=bias.device)
