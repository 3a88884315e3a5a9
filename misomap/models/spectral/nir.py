"""NIR encoder trained into the frozen MIR latent space; decoding its latent through the frozen MIR
decoder converts NIR spectra into MIR spectra (NIR -> MIR)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from misomap.models.spectral.vae import Schedule, SpectralVAE, mlp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NIRArch:
    """Shape of a NIREncoder."""

    n_channels: int
    latent_dim: int
    hidden: tuple[int, ...] = (256, 128)


class NIREncoder(nn.Module):
    """MLP from standardised NIR spectra to a MIR-latent vector."""

    def __init__(self, arch: NIRArch) -> None:
        super().__init__()
        self.arch = arch
        self.register_buffer("mean", torch.zeros(arch.n_channels))
        self.register_buffer("scale", torch.ones(arch.n_channels))
        self.net = mlp([arch.n_channels, *arch.hidden, arch.latent_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Latent vector of preprocessed NIR spectra."""
        return self.net((x - self.mean) / self.scale)


def fit_nir_encoder(nir_scans: np.ndarray, mir_targets: np.ndarray, vae: SpectralVAE, arch: NIRArch,
                    schedule: Schedule, reconstruction_weight: float = 1.0) -> tuple[NIREncoder, list[float]]:
    """Train on NIR scans paired row by row with their sample's preprocessed MIR mean spectrum.

    Loss: MSE to the frozen VAE's latent mean of the MIR spectrum, plus `reconstruction_weight`
    times the MSE between the frozen decoder's output and that MIR spectrum (standardised units).
    """
    if len(nir_scans) != len(mir_targets):
        raise ValueError(f"{len(nir_scans)} NIR scans but {len(mir_targets)} MIR targets")
    torch.manual_seed(schedule.seed)
    for p in vae.parameters():
        p.requires_grad_(False)
    vae.eval()
    x = torch.as_tensor(nir_scans, dtype=torch.float32)
    mir = torch.as_tensor(mir_targets, dtype=torch.float32)
    with torch.no_grad():
        z_target = vae.encode(mir)[0]
        mir_std = vae.standardise(mir)
    enc = NIREncoder(arch)
    enc.mean.copy_(x.mean(0))
    enc.scale.copy_(x.std(0).clamp_min(1e-6))
    opt = torch.optim.AdamW(enc.parameters(), lr=schedule.learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=schedule.epochs)
    gen = torch.Generator().manual_seed(schedule.seed)
    history: list[float] = []
    enc.train()
    for _ in tqdm(range(schedule.epochs), desc="NIR encoder", unit="epoch", leave=False):
        total = 0.0
        for idx in torch.randperm(len(x), generator=gen).split(schedule.batch_size):
            z = enc(x[idx])
            loss = nn.functional.mse_loss(z, z_target[idx])
            if reconstruction_weight:
                loss = loss + reconstruction_weight * nn.functional.mse_loss(
                    vae.decode_standardised(z), mir_std[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        history.append(total / len(x))
    log.info("NIR encoder: %d scans, loss %.4f -> %.4f", len(x), history[0], history[-1])
    return enc.eval(), history


@torch.no_grad()
def nir_to_mir(encoder: NIREncoder, vae: SpectralVAE, nir: np.ndarray, batch: int = 4096
               ) -> tuple[np.ndarray, np.ndarray]:
    """(MIR-latent embeddings, converted MIR spectra in preprocessed units) of NIR spectra."""
    x = torch.as_tensor(nir, dtype=torch.float32)
    zs = torch.cat([encoder(b) for b in x.split(batch)])
    return zs.numpy(), torch.cat([vae.decode(b) for b in zs.split(batch)]).numpy()


def arch_dict(arch: NIRArch) -> dict:
    """JSON-ready architecture."""
    return asdict(arch)


def nir_from_arch(arch: dict) -> NIREncoder:
    """An untrained NIREncoder from a stored architecture."""
    return NIREncoder(NIRArch(arch["n_channels"], arch["latent_dim"], tuple(arch["hidden"])))
