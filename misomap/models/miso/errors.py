"""Typed errors of the MISO model; each names the checkpoint, key, band or crop at fault."""

from misomap.core.errors import MisomapError


class WeightsError(MisomapError):
    """A checkpoint cannot serve this encoder: wrong keys, shapes or band set."""


class CropError(MisomapError):
    """Crops cannot be cut as asked (no valid pixels, bad geometry)."""


class TrainingError(MisomapError):
    """Training cannot start or resume (no labels, an incompatible checkpoint)."""
