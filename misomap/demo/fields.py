"""Seeded random fields and small raster helpers shared by the world's generators."""

from __future__ import annotations

import zlib

import numpy as np
from scipy import ndimage


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """An independent generator per (seed, component), so adding one component never shifts another."""
    keys = [zlib.crc32(n.encode()) for n in names]
    return np.random.default_rng([seed, *keys])


def gaussian_field(rng: np.random.Generator, shape: tuple[int, int], scale_px: float,
                   beta: float = 3.0) -> np.ndarray:
    """A zero-mean, unit-variance random field with features around `scale_px` pixels.

    Spectral synthesis: white noise filtered by a power law (exponent `beta`) cut below the scale.
    """
    h, w = shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    k = np.sqrt(kx**2 + ky**2)
    k0 = 1.0 / max(scale_px, 1.0)
    amp = (k**2 + k0**2) ** (-beta / 4)
    amp[0, 0] = 0.0
    noise = np.fft.rfft2(rng.standard_normal(shape))
    f = np.fft.irfft2(noise * amp, s=shape)
    return ((f - f.mean()) / (f.std() + 1e-12)).astype(np.float32)


def smooth(a: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing with reflected edges (context at `sigma_px` pixels)."""
    return ndimage.gaussian_filter(a.astype(np.float32), sigma_px, mode="reflect")


def normalise(a: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by min and max."""
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo + 1e-12)).astype(np.float32)


def sigmoid(a: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-a))).astype(np.float32)


def upsample2(a: np.ndarray, order: int = 1) -> np.ndarray:
    """Double the resolution (pixel centres kept consistent); order 0 for classes, 1 for values."""
    return ndimage.zoom(a, 2, order=order, mode="nearest", grid_mode=True).astype(a.dtype)


def voronoi_edges(rng: np.random.Generator, shape: tuple[int, int], cell_px: float) -> np.ndarray:
    """Distance (px) to the nearest polygon edge of a jittered-grid Voronoi tessellation.

    Used for ice-wedge polygon troughs: low values on the edges, ~cell/2 at polygon centres.
    """
    h, w = shape
    ny, nx = int(np.ceil(h / cell_px)) + 2, int(np.ceil(w / cell_px)) + 2
    gy, gx = np.meshgrid(np.arange(ny) - 1.0, np.arange(nx) - 1.0, indexing="ij")
    sy = (gy + rng.uniform(0.15, 0.85, gy.shape)) * cell_px
    sx = (gx + rng.uniform(0.15, 0.85, gx.shape)) * cell_px
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = np.floor(yy / cell_px).astype(int) + 1, np.floor(xx / cell_px).astype(int) + 1
    d = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            iy, ix = np.clip(cy + dy, 0, ny - 1), np.clip(cx + dx, 0, nx - 1)
            d.append(np.hypot(yy - sy[iy, ix], xx - sx[iy, ix]))
    d = np.sort(np.stack(d), axis=0)
    return ((d[1] - d[0]) / 2).astype(np.float32)
