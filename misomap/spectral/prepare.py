"""Spectra made ready for the spectral models: validated, resampled to the model axis, SNV; and the
training schedule and MIR VAE fit shared by train-spectral and the LimeSoDa evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from misomap.models.spectral import vae as vaemod
from misomap.spectra.config import AxisSpec, NIRSpec, SpectralConfig, VAESpec
from misomap.spectra.library import SensorSpectra
from misomap.spectra.preprocess import spectral_pipeline, validate_sensor


@dataclass(frozen=True)
class Prepared:
    """One sensor's spectra preprocessed: sample means and every scan repeat."""

    ids: np.ndarray
    means: np.ndarray
    scans: np.ndarray
    scan_rows: np.ndarray


def prepare(spectra: SensorSpectra, sensor: str, axis: AxisSpec, min_samples: int = 1) -> Prepared:
    """Validate, then resample -> log10(1/R) if reflectance -> SNV, for means and scans."""
    validate_sensor(spectra, sensor, min_samples)
    pipe = spectral_pipeline(spectra.axis, axis, spectra.quantity)
    scans, rows = spectra.scans()
    return Prepared(spectra.sample_id, pipe.fit_transform(spectra.mean()), pipe.fit_transform(scans), rows)


def schedule(spec: VAESpec | NIRSpec, n_rows: int, seed: int) -> vaemod.Schedule:
    """Epochs extended to at least `min_steps` optimiser steps for small training sets."""
    steps_per_epoch = max(1, math.ceil(n_rows / spec.batch_size))
    epochs = max(spec.epochs, math.ceil(spec.min_steps / steps_per_epoch))
    return vaemod.Schedule(epochs, spec.batch_size, spec.learning_rate, getattr(spec, "beta", 0.0), seed)


def train_vae_rows(prep: Prepared, rows: np.ndarray, sc: SpectralConfig, seed: int
                   ) -> tuple[vaemod.SpectralVAE, list[float]]:
    """The MIR VAE on every scan repeat of the given sample rows."""
    keep = np.isin(prep.scan_rows, rows)
    arch = vaemod.VAEArch(prep.scans.shape[1], sc.vae.latent_dim, sc.vae.hidden, sc.vae.linear)
    return fit_mir_vae(prep.scans[keep], prep.scan_rows[keep], arch, schedule(sc.vae, int(keep.sum()), seed))


def fit_mir_vae(scans: np.ndarray, rows: np.ndarray, arch: vaemod.VAEArch, sched: vaemod.Schedule
                ) -> tuple[vaemod.SpectralVAE, list[float]]:
    """The configured MIR encoder on in-memory scans: with a linear arch the PCA start and early stopping
    on held-out reconstruction (`fit_encoder`), otherwise the plain VAE for the scheduled epochs."""
    if arch.linear:
        fit = vaemod.fit_encoder(scans, rows, arch, sched)
        return fit.model, fit.history
    return vaemod.fit_vae(scans, rows, arch, sched)
