"""The MIR VAE: a small MLP variational autoencoder whose latent mean is the spectral embedding.

Scan repeats are the augmentation: each scan is encoded and decoded towards its sample's mean
spectrum, so the latent space learns to ignore repeat-to-repeat noise, baseline and scatter.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Iterator
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


BatchSource = Callable[[int], Iterable[tuple[np.ndarray, np.ndarray]]]
"""For epoch e, minibatches of (scans, target spectra) in preprocessed units (targets: each scan's
sample mean). In memory or streamed from storage by the caller: models never touch storage."""


def new_vae(arch: VAEArch, mean: np.ndarray, scale: np.ndarray) -> SpectralVAE:
    """An untrained VAE standardising inputs with the given per-channel mean and scale."""
    model = SpectralVAE(arch)
    model.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
    model.scale.copy_(torch.as_tensor(scale, dtype=torch.float32).clamp_min(1e-6))
    return model


def train_vae(model: SpectralVAE, batches: BatchSource, schedule: Schedule, batches_per_epoch: int | None = None,
              desc: str = "MIR VAE") -> tuple[SpectralVAE, list[float]]:
    """Optimise `model` (fresh or pretrained: fine-tuning) for schedule.epochs epochs of `batches`.

    Loss: MSE of the reconstruction to the scan's sample mean (standardised) + beta * KL.
    Returns the model (eval mode) and the mean reconstruction loss per epoch.
    """
    torch.manual_seed(schedule.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=schedule.learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=schedule.epochs)
    history: list[float] = []
    model.train()
    total_steps = None if batches_per_epoch is None else batches_per_epoch * schedule.epochs
    with tqdm(total=total_steps, desc=desc, unit="batch", leave=False, mininterval=2) as bar:
        for epoch in range(schedule.epochs):
            total, rows = 0.0, 0
            for scans, targets in batches(epoch):
                x = torch.as_tensor(scans, dtype=torch.float32)
                target = model.standardise(torch.as_tensor(targets, dtype=torch.float32))
                recon, mu, logvar = model(x)
                rec = nn.functional.mse_loss(recon, target)
                kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
                loss = rec + schedule.beta * kl
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += rec.item() * len(x)
                rows += len(x)
                bar.update(1)
            sched.step()
            history.append(total / max(rows, 1))
    return model.eval(), history


def in_memory_batches(scans: np.ndarray, sample_of_scan: np.ndarray, batch_size: int, seed: int) -> BatchSource:
    """Shuffled minibatches of scans with their sample's mean spectrum as target (repeats as augmentation)."""
    _, inverse = np.unique(sample_of_scan, return_inverse=True)
    mean = np.zeros((inverse.max() + 1, scans.shape[1]), dtype=np.float64)
    np.add.at(mean, inverse, scans)
    targets = (mean / np.bincount(inverse)[:, None]).astype(np.float32)[inverse]

    def batches(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = np.random.default_rng([seed, epoch]).permutation(len(scans))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield scans[idx], targets[idx]

    return batches


def fit_vae(scans: np.ndarray, sample_of_scan: np.ndarray, arch: VAEArch, schedule: Schedule,
            init: SpectralVAE | None = None) -> tuple[SpectralVAE, list[float]]:
    """Train on every scan, each reconstructed towards its sample's mean spectrum.

    With `init`, a copy of that pretrained model is fine-tuned (its standardisation kept);
    otherwise a new model standardised on `scans`. Returns the model (eval mode) and the loss per epoch.
    """
    if init is not None:
        model = copy.deepcopy(init)
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        model = new_vae(arch, scans.mean(0), scans.std(0))
    batches = in_memory_batches(scans, sample_of_scan, schedule.batch_size, schedule.seed)
    model, history = train_vae(model, batches, schedule, -(-len(scans) // schedule.batch_size))
    log.info("MIR VAE: %d scans of %d samples, reconstruction MSE (standardised) %.4f -> %.4f",
             len(scans), len(np.unique(sample_of_scan)), history[0], history[-1])
    return model, history


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
