"""LIIF-style implicit queries: features at any continuous point of an encoder's stage maps.

For each stage, the 4 nearest feature cells, the query's offset from each cell centre and the
query cell size (both in that stage's cell units) go through a per-stage MLP; the 4 answers are
blended by the area of the opposite rectangle; stages are summed and layer-normed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _neighbours(coords: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Indices of the cells left/right of normalised coords along one axis of n cells (clamped)."""
    f = torch.floor((coords + 1) / 2 * n - 0.5)
    return f.clamp(0, n - 1).long(), (f + 1).clamp(0, n - 1).long()


class StageQuery(nn.Module):
    """The LIIF query of one stage map."""

    def __init__(self, in_channels: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels + 4, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, feat: Tensor, coords: Tensor, cell: Tensor) -> Tensor:
        """feat (B, C, h, w); coords (B, Q, 2) normalised (x, y), align_corners=False; cell (B, Q, 2)
        the query's size in the same units."""
        b, c, h, w = feat.shape
        scale = torch.tensor([w, h], device=feat.device, dtype=coords.dtype)
        flat = feat.flatten(2)
        xs, ys = _neighbours(coords[..., 0], w), _neighbours(coords[..., 1], h)
        preds, areas = [], []
        for yi in ys:
            for xi in xs:
                q_feat = torch.gather(flat, 2, (yi * w + xi).unsqueeze(1).expand(-1, c, -1)).transpose(1, 2)
                centre = torch.stack([(2 * xi + 1) / w - 1, (2 * yi + 1) / h - 1], dim=-1).to(coords.dtype)
                rel = (coords - centre) * scale
                preds.append(self.mlp(torch.cat([q_feat, rel, cell * scale], dim=-1)))
                areas.append((rel[..., 0] * rel[..., 1]).abs() + 1e-9)
        total = torch.stack(areas).sum(0)
        areas = [areas[3], areas[2], areas[1], areas[0]]  # each corner weighs by its opposite area
        return sum(p * (a / total).unsqueeze(-1) for p, a in zip(preds, areas))


class LiifQuery(nn.Module):
    """Queries every stage and sums them into one layer-normed `out_dim` embedding per point."""

    def __init__(self, stage_channels: list[int], hidden: int, out_dim: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(StageQuery(c, hidden, out_dim) for c in stage_channels)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, feats: list[Tensor], coords: Tensor, cell: Tensor) -> Tensor:
        return self.norm(sum(q(f, coords, cell) for q, f in zip(self.stages, feats)))
