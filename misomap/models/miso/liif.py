"""LIIF-style implicit queries: features at any continuous point of an encoder's stage maps.

For each stage, the 4 nearest feature cells, the query's offset from each cell centre and the
query cell size (both in that stage's cell units) go through a per-stage MLP; the 4 answers are
blended by the area of the opposite rectangle; stages are summed and layer-normed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def cell_centres(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(1, 2, h, w) normalised (x, y) centres of a feature map's cells, align_corners=False."""
    ys = -1 + (2 * torch.arange(h, device=device, dtype=dtype) + 1) / h
    xs = -1 + (2 * torch.arange(w, device=device, dtype=dtype) + 1) / w
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy]).unsqueeze(0)


def _sample(grid_map: Tensor, coords: Tensor) -> Tensor:
    """Nearest-cell values of a (B, C, h, w) map at (B, Q, 2) normalised coords → (B, Q, C)."""
    out = F.grid_sample(grid_map, coords.unsqueeze(1), mode="nearest", align_corners=False)
    return out[:, :, 0, :].permute(0, 2, 1)


class StageQuery(nn.Module):
    """The LIIF query of one stage map."""

    def __init__(self, in_channels: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels + 4, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, feat: Tensor, coords: Tensor, cell: Tensor) -> Tensor:
        """feat (B, C, h, w); coords (B, Q, 2) normalised (x, y); cell (B, Q, 2) query size."""
        b, _, h, w = feat.shape
        scale = torch.tensor([w, h], device=feat.device, dtype=coords.dtype)
        centres = cell_centres(h, w, feat.device, coords.dtype).expand(b, -1, -1, -1)
        eps = 1e-6
        preds, areas = [], []
        for vx in (-1, 1):
            for vy in (-1, 1):
                shift = torch.tensor([vx / w + eps * vx, vy / h + eps * vy], device=feat.device,
                                     dtype=coords.dtype)
                c = (coords + shift).clamp(-1 + eps, 1 - eps)
                q_feat = _sample(feat, c)
                rel = (coords - _sample(centres, c)) * scale
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
