"""`misomap train-spectral`: fit, score, save and report the spectral family (misomap.spectral.training)."""

from __future__ import annotations

from misomap.config import RunConfig
from misomap.spectral.store import SpectralRun
from misomap.spectral.training import TrainResult, train


def spectral_run(config: RunConfig) -> SpectralRun:
    """The part of the run the spectral wing reads."""
    return SpectralRun(config.spectral, config.storage, str(config.workdir), config.seed, config.gateway)


def train_spectral(config: RunConfig) -> TrainResult:
    """Train, evaluate, save and report the spectral models of the run."""
    return train(spectral_run(config))
