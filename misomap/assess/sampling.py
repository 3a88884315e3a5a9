"""Probability samples of a map's pixels: strata, allocation and the draw.

A design is a set of strata (map classes, one stratum for a simple random sample, or agreement
and disagreement between two maps; crossed with zones when given), a sample size per stratum, and
a simple random draw without replacement inside each stratum. Every point carries its stratum's
pixel count and sample size, so its inclusion probability n_h / N_h is known exactly and any
estimator of `misomap.assess.estimators` can weigh it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, get_args

import geopandas as gpd
import numpy as np

from misomap.assess.maps import AssessError, MapLayer

log = logging.getLogger(__name__)

Design = Literal["stratified", "random", "disagreement"]
Allocation = Literal["proportional", "equal", "optimal"]
MIN_PER_STRATUM = 2
"""Every stratum gets at least two points (or all its pixels): its variance needs two."""


@dataclass(frozen=True)
class SampleSpec:
    """How to draw: total size, design, allocation, the floor per stratum and the seed."""

    n: int
    design: Design = "stratified"
    allocation: Allocation = "proportional"
    min_per_stratum: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.design not in get_args(Design):
            raise AssessError(f"--design {self.design!r}: choose one of {list(get_args(Design))}")
        if self.allocation not in get_args(Allocation):
            raise AssessError(f"--allocation {self.allocation!r}: choose one of {list(get_args(Allocation))}")
        if self.n < 2 or self.min_per_stratum < 0:
            raise AssessError(f"--n must be at least 2 and --min-per-class at least 0 (got {self.n}, "
                              f"{self.min_per_stratum})")


@dataclass(frozen=True)
class Strata:
    """Stratum code per pixel (-1 outside the sampled population), stratum names, and the expected
    standard deviation per stratum that the optimal (Neyman) allocation weighs by."""

    codes: np.ndarray
    names: tuple[str, ...]
    spread: np.ndarray

    @property
    def pixels(self) -> np.ndarray:
        """Pixels per stratum (N_h)."""
        return np.bincount(self.codes[self.codes >= 0].ravel(), minlength=len(self.names))


def _compact(codes: np.ndarray, names: list[str], spread: np.ndarray) -> Strata:
    """Drop strata without pixels and renumber the rest."""
    counts = np.bincount(codes[codes >= 0].ravel(), minlength=len(names))
    keep = np.flatnonzero(counts > 0)
    remap = np.full(len(names) + 1, -1, np.int32)
    remap[keep] = np.arange(len(keep))
    return Strata(remap[codes], tuple(names[i] for i in keep), spread[keep])


def _neyman_spread(accuracy: np.ndarray) -> np.ndarray:
    """sqrt(U(1-U)) of an anticipated user's accuracy U, kept off 0 and 1."""
    u = np.clip(np.nan_to_num(accuracy, nan=0.5), 0.01, 0.99)
    return np.sqrt(u * (1 - u))


def build_strata(layer: MapLayer, design: Design, confidence: np.ndarray | None = None,
                 other: MapLayer | None = None, zones: tuple[np.ndarray, tuple[str, ...]] | None = None) -> Strata:
    """The strata of a design on `layer`'s pixels: its map classes (`stratified`), all mapped pixels
    (`random`), or where `other` agrees / disagrees with it (`disagreement`); crossed with `zones`.
    `confidence` (each pixel's probability of its mapped class) sets the anticipated user's accuracy
    of each map-class stratum for the optimal allocation; disagreement strata weigh 0 (agree: both
    maps are right or wrong together, the accuracy difference is 0 there) and 1 (disagree)."""
    valid = layer.valid
    if design == "stratified":
        base = np.where(valid, layer.codes.astype(np.int32), -1)
        names = list(layer.classes)
    elif design == "random":
        base = np.where(valid, 0, -1).astype(np.int32)
        names = ["all"]
    else:
        if other is None:
            raise AssessError("--design disagreement needs the second map (--versus MAP_B)")
        if other.codes.shape != layer.codes.shape or other.grid != layer.grid:
            raise AssessError(f"{other.url} is not on the grid of {layer.url}: a disagreement design needs "
                              "two maps of the same grid")
        both = valid & other.valid
        base = np.where(both, (layer.codes != other.codes).astype(np.int32), -1)
        names = ["agree", "disagree"]
    if design == "disagreement":
        spread = np.array([0.0, 1.0])
    elif confidence is not None:
        sums = np.bincount(base[base >= 0], weights=confidence[base >= 0], minlength=len(names))
        counts = np.bincount(base[base >= 0], minlength=len(names))
        spread = _neyman_spread(sums / np.maximum(counts, 1))
    else:
        spread = np.ones(len(names))
    if zones is not None:
        zcodes, znames = zones
        codes = np.where((base >= 0) & (zcodes >= 0), zcodes * len(names) + base, -1).astype(np.int32)
        names = [f"{z}/{b}" for z in znames for b in names]
        spread = np.tile(spread, len(znames))
        return _compact(codes, names, spread)
    return _compact(base, names, spread)


def _round_to(raw: np.ndarray, total: int, cap: np.ndarray) -> np.ndarray:
    """Integers summing to `total`, each at most its cap, by largest remainder."""
    out = np.minimum(np.floor(raw).astype(np.int64), cap)
    order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    while out.sum() < total:
        room = [i for i in order if out[i] < cap[i]]
        for i in room[: total - out.sum()]:
            out[i] += 1
    return out


def allocate(pixels: np.ndarray, n: int, allocation: Allocation, min_per_stratum: int,
             spread: np.ndarray) -> np.ndarray:
    """Sample size per stratum: proportional to N_h, equal, or optimal (Neyman: N_h·S_h); every
    stratum gets at least max(min_per_stratum, 2) points (all its pixels when it has fewer), none
    more than its pixels; the sizes sum to n."""
    pixels = np.asarray(pixels, np.int64)
    if n > pixels.sum():
        raise AssessError(f"--n {n} is larger than the map: it has {pixels.sum()} sampleable pixels")
    floor = np.minimum(max(min_per_stratum, MIN_PER_STRATUM), pixels)
    if floor.sum() > n:
        raise AssessError(f"--n {n} cannot give each of the {len(pixels)} strata its minimum of "
                          f"{max(min_per_stratum, MIN_PER_STRATUM)} points ({floor.sum()} needed): raise --n or "
                          "lower --min-per-class")
    weight = {"proportional": pixels.astype(float), "equal": np.ones(len(pixels)),
              "optimal": pixels * np.asarray(spread, float)}[allocation]
    fixed = np.zeros(len(pixels), bool)
    size = np.zeros(len(pixels), float)
    while (~fixed).any():
        free = ~fixed
        budget = n - size[fixed].sum()
        w = weight[free] if weight[free].sum() > 0 else pixels[free].astype(float)
        size[free] = budget * w / w.sum()
        low = free & (size < floor)
        high = free & (size > pixels)
        if not (low.any() or high.any()):
            break
        size[low], size[high] = floor[low], pixels[high]
        fixed |= low | high
    out = np.where(fixed, size, 0).astype(np.int64)
    out[~fixed] = _round_to(size[~fixed], n - out[fixed].sum(), pixels[~fixed])
    return out


def draw(strata: Strata, sizes: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A simple random sample without replacement of `sizes[h]` pixels in each stratum h: the flat
    pixel indices (row-major) and their strata, ordered by stratum and position. Same seed, same
    strata: same points."""
    flat = strata.codes.ravel()
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], np.arange(len(strata.names) + 1))
    rng = np.random.default_rng(seed)
    picks, which = [], []
    for h, k in enumerate(sizes):
        members = order[starts[h]: starts[h + 1]]
        picks.append(np.sort(members[rng.choice(len(members), int(k), replace=False)]))
        which.append(np.full(int(k), h, np.int32))
    return np.concatenate(picks), np.concatenate(which)


def sample_map(layer: MapLayer, strata: Strata, spec: SampleSpec, other: MapLayer | None = None,
               zones: tuple[np.ndarray, tuple[str, ...]] | None = None) -> gpd.GeoDataFrame:
    """Draw the sample and describe every point: pixel centre, row/col, stratum with its N_h and n_h,
    inclusion probability, the design's number of strata, zone, and the design (layer, map digest(s), design, allocation, seed)."""
    pixels = strata.pixels
    sizes = allocate(pixels, spec.n, spec.allocation, spec.min_per_stratum, strata.spread)
    index, which = draw(strata, sizes, spec.seed)
    rows, cols = np.divmod(index, layer.grid.width)
    x, y = layer.grid.x_coords()[cols], layer.grid.y_coords()[rows]
    names = np.array(strata.names, dtype=object)
    table = {
        "point_id": np.arange(len(index)), "stratum": names[which], "stratum_pixels": pixels[which],
        "stratum_n": sizes[which], "inclusion_probability": sizes[which] / pixels[which],
        "design_strata": len(strata.names),
        "row": rows, "col": cols, "layer": layer.layer, "design": spec.design,
        "allocation": spec.allocation, "seed": spec.seed, "map_digest": layer.digest,
    }
    if other is not None:
        table["versus_digest"] = other.digest
    if zones is not None:
        table["zone"] = np.array(zones[1], dtype=object)[zones[0].ravel()[index]]
    log.info("drew %d points in %d strata (%s, %s allocation, seed %d)", len(index), len(sizes), spec.design,
             spec.allocation, spec.seed)
    return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(x, y), crs=layer.grid.crs)
