"""`misomap embed-spectra`: embed a spectral library chunk by chunk into Zarr (misomap.spectral.embed)."""

from __future__ import annotations

from misomap.config import RunConfig
from misomap.jobs.train_spectral import spectral_run
from misomap.spectral.embed import EmbedSummary, embed_library


def embed_spectra(config: RunConfig) -> EmbedSummary:
    """Embed the run's library; resumable, finished chunks are skipped."""
    return embed_library(spectral_run(config))
