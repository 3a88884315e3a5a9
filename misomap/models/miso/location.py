"""Space2Vec grid-cell location encoder: multi-scale sinusoids along three directions 120° apart
of EPSG:3338 coordinates scaled to [-1, 1], then a residual MLP."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from misomap.models.miso.config import LocationConfig


class GridCellFeatures(nn.Module):
    """sin/cos of <p, a_j> / λ_s for 3 unit vectors a_j and geometric scales λ_s (6·S features)."""

    def __init__(self, num_scales: int, min_wavelength: float, max_wavelength: float) -> None:
        """Wavelengths in the units of the coordinates the forward pass receives."""
        super().__init__()
        s = torch.arange(num_scales, dtype=torch.float64)
        ratio = max_wavelength / min_wavelength
        lambdas = min_wavelength * ratio ** (s / max(num_scales - 1, 1))
        angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=torch.float64)
        dirs = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # (3, 2)
        self.register_buffer("proj", (dirs[:, None, :] / lambdas[None, :, None]).reshape(-1, 2).float())
        self.out_dim = 6 * num_scales

    def forward(self, p: Tensor) -> Tensor:
        phase = p @ self.proj.T
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)


class ResidualBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.body(x))


class LocationEncoder(nn.Module):
    """EPSG:3338 metres → a `out_dim` embedding; `bounds` map coordinates to [-1, 1]."""

    def __init__(self, cfg: LocationConfig, bounds: tuple[float, float, float, float], out_dim: int) -> None:
        super().__init__()
        xmin, ymin, xmax, ymax = bounds
        if xmax <= xmin or ymax <= ymin:
            raise ValueError(f"location bounds {bounds} are empty")
        self.register_buffer("centre", torch.tensor([(xmin + xmax) / 2, (ymin + ymax) / 2], dtype=torch.float64))
        self.register_buffer("half_span", torch.tensor([(xmax - xmin) / 2, (ymax - ymin) / 2], dtype=torch.float64))
        # scaled coordinates span 2 units along each axis: wavelengths as fractions of the extent
        self.features = GridCellFeatures(cfg.num_scales, 2 * cfg.min_wavelength, 2 * cfg.max_wavelength)
        self.mlp = nn.Sequential(nn.Linear(self.features.out_dim, cfg.hidden), nn.GELU(),
                                 *[ResidualBlock(cfg.hidden) for _ in range(cfg.layers)],
                                 nn.Linear(cfg.hidden, out_dim))

    def scale(self, xy: Tensor) -> Tensor:
        """EPSG:3338 metres (float64 keeps metre precision) → [-1, 1] within the bounds."""
        return ((xy.double() - self.centre) / self.half_span).float()

    def forward(self, xy: Tensor) -> Tensor:
        return self.mlp(self.features(self.scale(xy)))
