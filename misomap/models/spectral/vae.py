"""The MIR VAE: a small MLP variational autoencoder whose latent mean is the spectral embedding.

Scan repeats are the augmentation: each scan is encoded and decoded towards its sample's mean
spectrum, so the latent space learns to ignore repeat-to-repeat noise, baseline and scatter.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VAEArch:
    """Shape of a SpectralVAE."""

    n_channels: int
    latent_dim: int = 32
    hidden: tuple[int, ...] = (256, 128)


@dataclass(frozen=True)
class Schedule:
    """Optimisation settings shared by the spectral networks."""

    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 1e-3
    beta: float = 1e-3
    seed: int = 0


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with GELU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class SpectralVAE(nn.Module):
    """Encoder to (mu, logvar), decoder back to spectra; inputs standardised by stored statistics."""

    def __init__(self, arch: VAEArch) -> None:
        super().__init__()
        self.arch = arch
        self.register_buffer("mean", torch.zeros(arch.n_channels))
        self.register_buffer("scale", torch.ones(arch.n_channels))
        self.encoder = mlp([arch.n_channels, *arch.hidden])
        self.to_stats = nn.Linear(arch.hidden[-1], 2 * arch.latent_dim)
        self.decoder = mlp([arch.latent_dim, *reversed(arch.hidden), arch.n_channels])

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Spectra in the units the network sees."""
        return (x - self.mean) / self.scale

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of spectra x (preprocessed units)."""
        h = nn.functional.gelu(self.encoder(self.standardise(x)))
        mu, logvar = self.to_stats(h).chunk(2, dim=-1)
        return mu, logvar.clamp(-10, 10)

    def decode_standardised(self, z: torch.Tensor) -> torch.Tensor:
        """Decoded spectra, standardised units."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoded spectra, preprocessed units."""
        return self.decoder(z) * self.scale + self.mean

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reparameterised reconstruction (standardised units), mu, logvar."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode_standardised(z), mu, logvar


def fit_vae(scans: np.ndarray, sample_of_scan: np.ndarray, arch: VAEArch, schedule: Schedule
            ) -> tuple[SpectralVAE, list[float]]:
    """Train on every scan, each reconstructed towards its sample's mean spectrum.

    Returns the model (eval mode) and the mean loss per epoch.
    """
    torch.manual_seed(schedule.seed)
    x = torch.as_tensor(scans, dtype=torch.float32)
    samples, inverse = np.unique(sample_of_scan, return_inverse=True)
    target_mean = np.zeros((len(samples), scans.shape[1]), dtype=np.float64)
    np.add.at(target_mean, inverse, scans)
    target_mean /= np.bincount(inverse)[:, None]
    target = torch.as_tensor(target_mean[inverse], dtype=torch.float32)
    model = SpectralVAE(arch)
    model.mean.copy_(x.mean(0))
    model.scale.copy_(x.std(0).clamp_min(1e-6))
    target_std = model.standardise(target)
    opt = torch.optim.AdamW(model.parameters(), lr=schedule.learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=schedule.epochs)
    gen = torch.Generator().manual_seed(schedule.seed)
    history: list[float] = []
    model.train()
    for _ in tqdm(range(schedule.epochs), desc="MIR VAE", unit="epoch", leave=False):
        total = 0.0
        for idx in torch.randperm(len(x), generator=gen).split(schedule.batch_size):
            recon, mu, logvar = model(x[idx])
            rec = nn.functional.mse_loss(recon, target_std[idx])
            kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
            loss = rec + schedule.beta * kl
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += rec.item() * len(idx)
        sched.step()
        history.append(total / len(x))
    log.info("MIR VAE: %d scans of %d samples, reconstruction MSE (standardised) %.4f -> %.4f",
             len(x), len(samples), history[0], history[-1])
    return model.eval(), history


@torch.no_grad()
def embed(model: SpectralVAE, spectra: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Latent means (rows, latent_dim) of preprocessed spectra, float32."""
    x = torch.as_tensor(spectra, dtype=torch.float32)
    return torch.cat([model.encode(b)[0] for b in x.split(batch)]).numpy()


@torch.no_grad()
def reconstruct(model: SpectralVAE, spectra: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Spectra decoded from their latent means (preprocessed units)."""
    x = torch.as_tensor(spectra, dtype=torch.float32)
    return torch.cat([model.decode(model.encode(b)[0]) for b in x.split(batch)]).numpy()


def arch_dict(arch: VAEArch) -> dict:
    """JSON-ready architecture."""
    return asdict(arch)


def vae_from_arch(arch: dict) -> SpectralVAE:
    """An untrained SpectralVAE from a stored architecture."""
    return SpectralVAE(VAEArch(arch["n_channels"], arch["latent_dim"], tuple(arch["hidden"])))
