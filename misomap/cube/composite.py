"""Masking and compositing of (time, band, y, x) float32 stacks; numpy only, NaN = nodata.

Every reducer ignores NaN observations per pixel, so a masked or uncovered scene never spreads
nodata into a pixel another scene sees clearly; a pixel no scene sees stays NaN.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def scl_mask(stack: np.ndarray, scl: np.ndarray, classes: Iterable[int]) -> np.ndarray:
    """Set to NaN every observation whose scene class is in `classes` or unknown (NaN)."""
    bad = np.isnan(scl) | np.isin(scl, np.asarray(list(classes), dtype=np.float32))
    return np.where(bad[:, None], np.float32(np.nan), stack)


def merge_duplicates(stack: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """One observation per acquisition: items of one datatake on overlapping tiles (`groups` of
    indices along time) become one layer taking, per pixel and band, the first item's valid value,
    so an overlap never counts one acquisition twice. Tiles of one datatake are one sensing of the
    same ground (resampled to different UTM grids), so filling a band from the next tile where the
    first has none (e.g. at a 10 m/20 m tile edge) keeps one real observation."""
    if all(len(g) == 1 for g in groups):
        return stack
    out = np.empty((len(groups), *stack.shape[1:]), np.float32)
    for k, group in enumerate(groups):
        layer = stack[group[0]].copy()
        for i in group[1:]:
            hole = np.isnan(layer)
            layer[hole] = stack[i][hole]
        out[k] = layer
    return out


def _nan_reduce(func, stack: np.ndarray) -> np.ndarray:
    """Reduce over time only where some observation is valid; pixels no scene sees stay NaN."""
    seen = ~np.isnan(stack).all(axis=0)
    out = np.full(stack.shape[1:], np.nan, np.float32)
    out[seen] = func(stack[:, seen], axis=0)
    return out


def median(stack: np.ndarray) -> np.ndarray:
    """Per-band median over time of the valid observations (one sort; NaN sorts last)."""
    ordered = np.sort(stack, axis=0)
    n = (~np.isnan(stack)).sum(axis=0)
    lo = np.take_along_axis(ordered, np.maximum((n - 1) // 2, 0)[None], axis=0)[0]
    hi = np.take_along_axis(ordered, (n // 2)[None].clip(max=stack.shape[0] - 1), axis=0)[0]
    out = ((lo + hi) / 2).astype(np.float32)
    out[n == 0] = np.nan
    return out


def geomedian(stack: np.ndarray, iterations: int = 60, tol: float = 1e-7) -> np.ndarray:
    """Geometric median over time of the band vectors (Weiszfeld), the composite MISO uses: it keeps
    band ratios of one real surface instead of mixing per-band medians of different dates.

    An observation counts only when all its bands are valid.
    """
    t, b, h, w = stack.shape
    x = stack.reshape(t, b, h * w).astype(np.float64)
    valid = ~np.isnan(x).any(axis=1)                      # (t, n)
    x = np.where(valid[:, None], x, 0.0)
    n_valid = valid.sum(axis=0)
    m = np.where(n_valid > 0, x.sum(axis=0) / np.maximum(n_valid, 1), np.nan)  # start at the mean
    for _ in range(iterations):
        dist = np.sqrt(((x - m[None]) ** 2).sum(axis=1))  # (t, n)
        wgt = np.where(valid, 1.0 / np.maximum(dist, 1e-12), 0.0)
        new = (wgt[:, None] * x).sum(axis=0) / np.maximum(wgt.sum(axis=0), 1e-300)
        new = np.where(n_valid > 0, new, np.nan)
        step = np.nanmax(np.abs(new - m)) if np.any(n_valid) else 0.0
        m = new
        if step < tol:
            break
    return m.reshape(b, h, w).astype(np.float32)


def mean_db(stack: np.ndarray) -> np.ndarray:
    """Radar: convert linear backscatter to dB per scene, then average the valid dB values."""
    with np.errstate(divide="ignore", invalid="ignore"):
        db = np.where(stack > 0, 10.0 * np.log10(stack), np.nan)
    return _nan_reduce(np.nanmean, db)


def mosaic(stack: np.ndarray) -> np.ndarray:
    """Static covariates: the first valid value along the (sorted) item axis."""
    out = np.full(stack.shape[1:], np.nan, np.float32)
    for layer in stack:
        hole = np.isnan(out)
        out[hole] = layer[hole]
    return out
