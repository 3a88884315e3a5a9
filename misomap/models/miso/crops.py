"""Training and evaluation crops cut from in-memory (band, y, x) arrays on a Grid.

Crops past the array's edge are padded with NaN (nodata); the model turns nodata into the band
mean. Each crop carries query points: labelled slots (the training points inside the crop, the
centre pedon first), random pseudo-points and a regular grid; pseudo and grid points have no label
and serve the contrastive losses. Query points over pixels without any valid band are flagged
`valid=False` and never count as labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from misomap.cube.grid import Grid
from misomap.models.miso.config import CropConfig
from misomap.models.miso.errors import CropError

MAX_TRIES = 50


@dataclass(frozen=True)
class Points:
    """Points in the grid's CRS with labels; -1 = no label."""

    x: np.ndarray
    y: np.ndarray
    permafrost: np.ndarray
    soil: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.x)
        for name in ("y", "permafrost", "soil"):
            if len(getattr(self, name)) != n:
                raise CropError(f"points: '{name}' has {len(getattr(self, name))} values, x has {n}")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx: np.ndarray) -> Points:
        """The points at positions `idx`."""
        return Points(self.x[idx], self.y[idx], self.permafrost[idx], self.soil[idx])


@dataclass(frozen=True)
class CropBatch:
    """B crops (NaN = nodata) and Q query points each: pix (col, row) in crop pixels, xy metres."""

    imagery: np.ndarray
    covariates: np.ndarray | None
    pix: np.ndarray
    xy: np.ndarray
    permafrost: np.ndarray
    soil: np.ndarray
    valid: np.ndarray


def read_window(array: np.ndarray, row0: int, col0: int, size: int) -> np.ndarray:
    """array[:, row0:row0+size, col0:col0+size], NaN where the window leaves the array."""
    c, h, w = array.shape
    out = np.full((c, size, size), np.nan, dtype=np.float32)
    r0, r1 = max(row0, 0), min(row0 + size, h)
    c0, c1 = max(col0, 0), min(col0 + size, w)
    if r1 > r0 and c1 > c0:
        out[:, r0 - row0:r1 - row0, c0 - col0:c1 - col0] = array[:, r0:r1, c0:c1]
    return out


class CropSampler:
    """Cuts crops from imagery (and covariates) aligned on `grid`; labels come from `points`."""

    def __init__(self, imagery: np.ndarray, covariates: np.ndarray | None, grid: Grid, points: Points,
                 cfg: CropConfig) -> None:
        if imagery.shape[1:] != grid.shape:
            raise CropError(f"imagery is {imagery.shape[1:]} pixels, the grid {grid.shape}")
        if covariates is not None and covariates.shape[1:] != grid.shape:
            raise CropError(f"covariates are {covariates.shape[1:]} pixels, the grid {grid.shape}")
        self.imagery, self.covariates, self.grid, self.points, self.cfg = imagery, covariates, grid, points, cfg
        self.size = cfg.size_px
        self.n_queries = cfg.label_slots + cfg.pseudo_points + cfg.grid**2
        self._pcol = (points.x - grid.xmin) / grid.resolution
        self._prow = (grid.ymax - points.y) / grid.resolution

    def _pixel_rc(self, points: Points) -> tuple[np.ndarray, np.ndarray]:
        return ((self.grid.ymax - points.y) / self.grid.resolution,
                (points.x - self.grid.xmin) / self.grid.resolution)

    def _cut(self, row0: int, col0: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        img = read_window(self.imagery, row0, col0, self.size)
        cov = None if self.covariates is None else read_window(self.covariates, row0, col0, self.size)
        valid = np.isfinite(img).any(0)
        if cov is not None:
            valid |= np.isfinite(cov).any(0)
        return img, cov, valid

    def _queries(self, row0: int, col0: int, valid_px: np.ndarray, centre: int | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        s, cfg = self.size, self.cfg
        pix = np.empty((self.n_queries, 2), dtype=np.float64)
        pf = np.full(self.n_queries, -1, dtype=np.int64)
        so = np.full(self.n_queries, -1, dtype=np.int64)
        inside = np.flatnonzero((self._pcol >= col0) & (self._pcol < col0 + s)
                                & (self._prow >= row0) & (self._prow < row0 + s))
        if centre is not None:
            inside = np.concatenate([[centre], rng.permutation(inside[inside != centre])])
        slots = inside[: cfg.label_slots]
        k = len(slots)
        pix[:k, 0], pix[:k, 1] = self._pcol[slots] - col0, self._prow[slots] - row0
        pf[:k], so[:k] = self.points.permafrost[slots], self.points.soil[slots]
        n_rand = cfg.label_slots - k + cfg.pseudo_points
        pix[k:k + n_rand] = rng.uniform(0, s, size=(n_rand, 2))
        g = (np.arange(cfg.grid) + 0.5) * s / cfg.grid
        gx, gy = np.meshgrid(g, g)
        pix[k + n_rand:, 0], pix[k + n_rand:, 1] = gx.ravel(), gy.ravel()
        return self._finish(pix, pf, so, row0, col0, valid_px)

    def _finish(self, pix: np.ndarray, pf: np.ndarray, so: np.ndarray, row0: int, col0: int,
                valid_px: np.ndarray) -> tuple[np.ndarray, ...]:
        r = np.clip(np.floor(pix[:, 1]).astype(int), 0, self.size - 1)
        c = np.clip(np.floor(pix[:, 0]).astype(int), 0, self.size - 1)
        valid = valid_px[r, c]
        pf, so = np.where(valid, pf, -1), np.where(valid, so, -1)
        res = self.grid.resolution
        xy = np.stack([self.grid.xmin + (col0 + pix[:, 0]) * res, self.grid.ymax - (row0 + pix[:, 1]) * res], -1)
        return pix.astype(np.float32), xy, pf, so, valid

    def _mirror(self, c: np.ndarray) -> np.ndarray:
        """Crop coordinates mirrored, c → size − c; a point on a pixel's left edge (in that pixel)
        lands just inside the mirrored pixel's right edge, so it reads the same pixel."""
        m = self.size - c
        return np.where(m == np.floor(m), np.nextafter(m, np.float32(-np.inf)), m)

    def _orient(self, crop: tuple, rng: np.random.Generator) -> tuple:
        """Under `dihedral`, the crop (img, cov, pix, …) in one of its 8 orientations, drawn from
        rng: transposed or not, then flipped left-right and/or up-down, pix moved to match."""
        if not self.cfg.dihedral:
            return crop
        img, cov, pix, *rest = crop
        transpose, flip_x, flip_y = rng.integers(0, 2, size=3)
        arrays, pix = [a for a in (img, cov) if a is not None], pix.copy()
        if transpose:
            arrays, pix = [a.transpose(0, 2, 1) for a in arrays], pix[:, ::-1].copy()
        if flip_x:
            arrays, pix[:, 0] = [a[:, :, ::-1] for a in arrays], self._mirror(pix[:, 0])
        if flip_y:
            arrays, pix[:, 1] = [a[:, ::-1, :] for a in arrays], self._mirror(pix[:, 1])
        arrays = [np.ascontiguousarray(a) for a in arrays]
        return (arrays[0], arrays[1] if cov is not None else None, pix, *rest)

    def _stack(self, crops: list[tuple]) -> CropBatch:
        img, cov, pix, xy, pf, so, valid = zip(*crops)
        return CropBatch(np.stack(img), None if cov[0] is None else np.stack(cov), np.stack(pix),
                         np.stack(xy), np.stack(pf), np.stack(so), np.stack(valid))

    def labelled(self, idx: np.ndarray, rng: np.random.Generator) -> CropBatch:
        """Jittered crops around the training points `idx`, with labelled slots and pseudo-points
        (each turned to a random orientation under `dihedral`)."""
        crops = []
        j = self.cfg.jitter_px
        for i in idx:
            dr, dc = rng.integers(-j, j + 1, size=2) if j else (0, 0)
            row0 = int(np.floor(self._prow[i])) - self.size // 2 + int(dr)
            col0 = int(np.floor(self._pcol[i])) - self.size // 2 + int(dc)
            img, cov, valid_px = self._cut(row0, col0)
            crops.append(self._orient((img, cov, *self._queries(row0, col0, valid_px, int(i), rng)), rng))
        return self._stack(crops)

    def unlabelled(self, n: int, rng: np.random.Generator) -> CropBatch:
        """Random crops anywhere with at least `min_valid_fraction` valid pixels; no labels."""
        crops = []
        h, w = self.grid.shape
        for _ in range(n):
            for _ in range(MAX_TRIES):
                row0 = int(rng.integers(-self.size // 2, max(h - self.size // 2, 1)))
                col0 = int(rng.integers(-self.size // 2, max(w - self.size // 2, 1)))
                img, cov, valid_px = self._cut(row0, col0)
                if valid_px.mean() >= self.cfg.min_valid_fraction:
                    break
            else:
                raise CropError(f"no crop of {self.size} px with ≥{self.cfg.min_valid_fraction:.0%} valid "
                                f"pixels in {MAX_TRIES} tries on the {h}×{w} grid: is it mostly nodata?")
            pix, xy, pf, so, valid = self._queries(row0, col0, valid_px, None, rng)
            crops.append(self._orient((img, cov, pix, xy, np.full_like(pf, -1), np.full_like(so, -1), valid), rng))
        return self._stack(crops)

    def centred(self, points: Points) -> CropBatch:
        """One crop per point, centred on it (no jitter), with the point as its only query."""
        rows, cols = self._pixel_rc(points)
        crops = []
        for k in range(len(points)):
            row0 = int(np.floor(rows[k])) - self.size // 2
            col0 = int(np.floor(cols[k])) - self.size // 2
            img, cov, valid_px = self._cut(row0, col0)
            pix = np.array([[cols[k] - col0, rows[k] - row0]])
            crops.append((img, cov, *self._finish(pix, points.permafrost[k:k + 1], points.soil[k:k + 1],
                                                  row0, col0, valid_px)))
        return self._stack(crops)
