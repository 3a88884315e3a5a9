"""Symmetric InfoNCE: matching rows of two embedding sets are positives, all other rows negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Mean of the a→b and b→a cross-entropies over cosine similarities / temperature.

    a, b: (N, D), row i of a pairs with row i of b. Fewer than 2 rows give 0 (no negatives).
    """
    if a.shape != b.shape:
        raise ValueError(f"embedding shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.shape[0] < 2:
        return a.sum() * 0.0
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
