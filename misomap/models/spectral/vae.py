"""The MIR VAE: a small variational autoencoder whose latent mean is the spectral embedding.

Scan repeats are the augmentation: each scan is encoded and decoded towards its sample's mean
spectrum, so the latent space learns to ignore repeat-to-repeat noise, baseline and scatter.

With `VAEArch.linear` the encoder and decoder each have a linear path initialised from the PCA of
the training spectra (whitened, so the latent prior N(0, 1) fits) plus a nonlinear MLP residual that
starts at zero: training starts at PCA's reconstruction and can only be kept where it improves on
held-out spectra (`fit_encoder`: KL annealing and early stopping on held-out reconstruction).
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
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
    linear: bool = False
    """Linear (PCA-initialised) encoder/decoder paths plus zero-initialised nonlinear residuals."""


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
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
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
        if arch.linear:
            self.lin_enc = nn.Linear(arch.n_channels, arch.latent_dim)
            self.lin_dec = nn.Linear(arch.latent_dim, arch.n_channels)
            with torch.no_grad():           # residuals start at zero; posterior noise starts small
                for layer in (self.decoder[-1], self.to_stats):
                    layer.weight.zero_()
                    layer.bias.zero_()
                self.to_stats.bias[arch.latent_dim:] = -8.0

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Spectra in the units the network sees."""
        return (x - self.mean) / self.scale

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of spectra x (preprocessed units)."""
        xs = self.standardise(x)
        h = nn.functional.gelu(self.encoder(xs))
        mu, logvar = self.to_stats(h).chunk(2, dim=-1)
        if self.arch.linear:
            mu = mu + self.lin_enc(xs)
        return mu, logvar.clamp(-10, 10)

    def decode_standardised(self, z: torch.Tensor) -> torch.Tensor:
        """Decoded spectra, standardised units."""
        out = self.decoder(z)
        return out + self.lin_dec(z) if self.arch.linear else out

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoded spectra, preprocessed units."""
        return self.decode_standardised(z) * self.scale + self.mean

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
              desc: str = "MIR VAE", validate: Callable[[SpectralVAE], float] | None = None,
              patience: int = 0, kl_warmup: float = 0.0, weight_decay: float = 1e-4
              ) -> tuple[SpectralVAE, list[float]]:
    """Optimise `model` (fresh or pretrained: fine-tuning) for schedule.epochs epochs of `batches`.

    Loss: MSE of the reconstruction to the scan's sample mean (standardised) + beta * KL, the KL
    weight rising linearly from 0 over the first `kl_warmup` fraction of the epochs. With `validate`
    (held-out reconstruction error, lower is better) the best state is kept, the untrained one
    included, and training stops after `patience` epochs without improvement (0: never early).
    Returns the model (eval mode) and the mean reconstruction loss per epoch.
    """
    torch.manual_seed(schedule.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=schedule.learning_rate, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=schedule.epochs)
    history: list[float] = []
    best, best_state, since = math.inf, None, 0
    if validate is not None:
        best, best_state = validate(model.eval()), copy.deepcopy(model.state_dict())
    model.train()
    total_steps = None if batches_per_epoch is None else batches_per_epoch * schedule.epochs
    warm = max(1.0, kl_warmup * schedule.epochs)
    with tqdm(total=total_steps, desc=desc, unit="batch", leave=False, mininterval=2) as bar:
        for epoch in range(schedule.epochs):
            beta = schedule.beta * min(1.0, (epoch + 1) / warm) if kl_warmup > 0 else schedule.beta
            total, rows = 0.0, 0
            for scans, targets in batches(epoch):
                x = torch.as_tensor(scans, dtype=torch.float32)
                target = model.standardise(torch.as_tensor(targets, dtype=torch.float32))
                recon, mu, logvar = model(x)
                rec = nn.functional.mse_loss(recon, target)
                kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
                loss = rec + beta * kl
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += rec.item() * len(x)
                rows += len(x)
                bar.update(1)
            sched.step()
            history.append(total / max(rows, 1))
            if validate is not None:
                score = validate(model.eval())
                model.train()
                if score < best:
                    best, best_state, since = score, copy.deepcopy(model.state_dict()), 0
                else:
                    since += 1
                    if patience and since >= patience:
                        break
    if best_state is not None:
        model.load_state_dict(best_state)
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
    otherwise a new model standardised on `scans` (with a linear arch, started at their PCA). Returns the model (eval mode) and the loss per epoch.
    """
    if init is not None:
        model = copy.deepcopy(init)
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        model = new_vae(arch, scans.mean(0), scans.std(0))
        if arch.linear:
            _, inv = np.unique(sample_of_scan, return_inverse=True)
            means = np.zeros((inv.max() + 1, scans.shape[1]))
            np.add.at(means, inv, scans)
            init_from_pca(model, means / np.bincount(inv)[:, None])
    batches = in_memory_batches(scans, sample_of_scan, schedule.batch_size, schedule.seed)
    model, history = train_vae(model, batches, schedule, -(-len(scans) // schedule.batch_size))
    log.info("MIR VAE: %d scans of %d samples, reconstruction MSE (standardised) %.4f -> %.4f",
             len(scans), len(np.unique(sample_of_scan)), history[0], history[-1])
    return model, history


def pca_basis(x_std: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(components (k, channels), variances (k,)) of standardised spectra, centred on their mean."""
    xc = x_std - x_std.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    var = np.zeros(k)
    comps = np.zeros((k, x_std.shape[1]))
    m = min(k, len(s))
    var[:m], comps[:m] = s[:m] ** 2 / max(len(xc) - 1, 1), vt[:m]
    return comps, var


@torch.no_grad()
def init_from_pca(model: SpectralVAE, spectra: np.ndarray) -> SpectralVAE:
    """Set the linear paths to the whitened PCA of `spectra` (preprocessed units): the latent means
    are unit-variance principal-component scores and the decoder starts as PCA's reconstruction."""
    if not model.arch.linear:
        raise ValueError("init_from_pca needs a VAEArch with linear=True")
    xs = model.standardise(torch.as_tensor(spectra, dtype=torch.float32)).numpy().astype(np.float64)
    comps, var = pca_basis(xs, model.arch.latent_dim)
    sd = np.sqrt(np.maximum(var, 1e-12))
    centre = xs.mean(0)
    model.lin_enc.weight.copy_(torch.as_tensor(comps / sd[:, None], dtype=torch.float32))
    model.lin_enc.bias.copy_(torch.as_tensor(-(comps @ centre) / sd, dtype=torch.float32))
    model.lin_dec.weight.copy_(torch.as_tensor((comps * sd[:, None]).T, dtype=torch.float32))
    model.lin_dec.bias.copy_(torch.as_tensor(centre, dtype=torch.float32))
    return model


@torch.no_grad()
def reconstruction_mse(model: SpectralVAE, spectra: np.ndarray) -> float:
    """Mean squared error of spectra decoded from their latent means, in the model's standardised units."""
    x = torch.as_tensor(spectra, dtype=torch.float32)
    return float(torch.mean((model.decode_standardised(model.encode(x)[0]) - model.standardise(x)) ** 2))


def pca_reconstruction_mse(fit: np.ndarray, spectra: np.ndarray, k: int, mean: np.ndarray,
                           scale: np.ndarray) -> float:
    """The same error for PCA with k components fitted on `fit` (both standardised by mean/scale)."""
    f, x = (fit - mean) / scale, (spectra - mean) / scale
    comps, _ = pca_basis(f, k)
    xc = x - f.mean(0)
    return float(np.mean((xc - xc @ comps.T @ comps) ** 2))


@dataclass(frozen=True)
class EncoderFit:
    """A fitted encoder with its held-out reconstruction error next to PCA's at the same latent size."""

    model: SpectralVAE
    history: list[float]
    holdout_mse: float
    holdout_pca_mse: float
    epochs: int


def fit_encoder(scans: np.ndarray, sample_of_scan: np.ndarray, arch: VAEArch, schedule: Schedule,
                holdout: float = 0.15, patience: int = 20, kl_warmup: float = 0.3) -> EncoderFit:
    """Pretrain on an unlabelled pool, choosing the training length on held-out reconstruction only.

    A `holdout` fraction of the samples (all their scans) is set aside; with a linear arch the model
    starts as the whitened PCA of the other samples' mean spectra; training keeps the state with the
    lowest held-out reconstruction error (the PCA start included). Never sees a property value.
    """
    ids = np.unique(sample_of_scan)
    rng = np.random.default_rng(schedule.seed)
    held = rng.choice(ids, size=max(1, round(holdout * len(ids))), replace=False)
    is_held = np.isin(sample_of_scan, held)
    fit_scans, fit_rows = scans[~is_held], sample_of_scan[~is_held]
    model = new_vae(arch, fit_scans.mean(0), fit_scans.std(0))
    _, inv = np.unique(fit_rows, return_inverse=True)
    fit_means = np.zeros((inv.max() + 1, scans.shape[1]))
    np.add.at(fit_means, inv, fit_scans)
    fit_means /= np.bincount(inv)[:, None]
    _, hinv = np.unique(sample_of_scan[is_held], return_inverse=True)
    held_means = np.zeros((hinv.max() + 1, scans.shape[1]))
    np.add.at(held_means, hinv, scans[is_held])
    held_means /= np.bincount(hinv)[:, None]
    if arch.linear:
        init_from_pca(model, fit_means)
    batches = in_memory_batches(fit_scans, fit_rows, schedule.batch_size, schedule.seed)
    model, history = train_vae(model, batches, schedule, -(-len(fit_scans) // schedule.batch_size),
                               validate=lambda m: reconstruction_mse(m, held_means), patience=patience,
                               kl_warmup=kl_warmup, weight_decay=0.0 if arch.linear else 1e-4)
    err = reconstruction_mse(model, held_means)
    pca = pca_reconstruction_mse(fit_means, held_means, arch.latent_dim, model.mean.numpy(), model.scale.numpy())
    log.info("encoder: %d pool samples (%d held out), held-out reconstruction MSE %.5f (PCA-%d %.5f), %d epochs",
             len(ids), len(held), err, arch.latent_dim, pca, len(history))
    return EncoderFit(model, history, err, pca, len(history))


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
    return SpectralVAE(VAEArch(arch["n_channels"], arch["latent_dim"], tuple(arch["hidden"]),
                               bool(arch.get("linear", False))))
