"""Task heads, their losses (BCE or focal for permafrost, CE for soil order; -1 = no label) and
predictive entropy as the uncertainty of a map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from misomap.models.miso.config import SOIL_ORDERS, LossConfig

TASK_OUTPUTS = {"permafrost": 1, "soil_order": len(SOIL_ORDERS)}


class Heads(nn.Module):
    """One linear head per configured task."""

    def __init__(self, dim: int, tasks: list[str]) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({t: nn.Linear(dim, TASK_OUTPUTS[t]) for t in tasks})

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        out = {t: h(z) for t, h in self.heads.items()}
        if "permafrost" in out:
            out["permafrost"] = out["permafrost"].squeeze(-1)
        return out


def probabilities(logits: dict[str, Tensor]) -> dict[str, Tensor]:
    """Permafrost P(present) (…,) and soil-order class probabilities (…, 7)."""
    out = {}
    if "permafrost" in logits:
        out["permafrost"] = torch.sigmoid(logits["permafrost"].float())
    if "soil_order" in logits:
        out["soil_order"] = torch.softmax(logits["soil_order"].float(), dim=-1)
    return out


def entropy(probs: dict[str, Tensor]) -> dict[str, Tensor]:
    """Predictive entropy in nats per task: 0 = certain, ln 2 / ln 7 = uninformed."""
    out = {}
    if "permafrost" in probs:
        p = probs["permafrost"].clamp(1e-7, 1 - 1e-7)
        out["permafrost"] = -(p * p.log() + (1 - p) * (1 - p).log())
    if "soil_order" in probs:
        q = probs["soil_order"].clamp_min(1e-9)
        out["soil_order"] = -(q * q.log()).sum(-1)
    return out


class TaskLoss(nn.Module):
    """Masked supervised losses; class weights are buffers set from the training labels."""

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("pos_weight", torch.tensor(1.0))
        self.register_buffer("soil_weight", torch.ones(len(SOIL_ORDERS)))

    def fit_weights(self, permafrost: Tensor, soil: Tensor, balance: float = 0.0) -> None:
        """Class weights from the training labels (-1 ignored): inverse class frequency under
        `class_weights: balanced`; else, for `balance` β > 0, each label weighs its class's share of
        the task's labels to the power −β — per label, every labelled query of a crop alike, so
        the weights are exactly the RF's sample weights (`models.weighting.balance_weights`)."""
        power = 1.0 if self.cfg.class_weights == "balanced" else balance
        if not power:
            return
        pf = permafrost[permafrost >= 0]
        if pf.numel():
            pos = pf.sum().clamp_min(1)
            self.pos_weight.fill_(float(((pf.numel() - pos).clamp_min(1) / pos) ** power))
        so = soil[soil >= 0]
        if so.numel():
            counts = torch.bincount(so, minlength=len(SOIL_ORDERS)).double()
            w = torch.where(counts > 0, (counts / so.numel()).clamp_min(1e-12) ** -power, 0.0)
            self.soil_weight.copy_((w / w[so].mean()).float())

    def forward(self, logits: dict[str, Tensor], permafrost: Tensor, soil: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if "permafrost" in logits:
            m = permafrost >= 0
            x, y = logits["permafrost"][m].float(), permafrost[m].float()
            if y.numel() == 0:
                out["permafrost"] = logits["permafrost"].sum() * 0.0
            elif self.cfg.permafrost_loss == "focal":
                bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
                p_t = torch.exp(-bce)
                alpha = torch.where(y > 0, self.pos_weight / (1 + self.pos_weight), 1 / (1 + self.pos_weight))
                out["permafrost"] = (alpha * (1 - p_t) ** self.cfg.focal_gamma * bce).mean()
            else:
                out["permafrost"] = F.binary_cross_entropy_with_logits(x, y, pos_weight=self.pos_weight)
        if "soil_order" in logits:
            m = soil >= 0
            if m.any():
                out["soil_order"] = F.cross_entropy(logits["soil_order"][m].float(), soil[m],
                                                    weight=self.soil_weight)
            else:
                out["soil_order"] = logits["soil_order"].sum() * 0.0
        return out
