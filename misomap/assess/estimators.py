"""Design-based estimators of accuracy and area from a stratified random sample.

One estimator serves every design: Stehman (2014), "Estimating area and map accuracy for stratified
random sampling when the strata are different from the map classes" (IJRS 35:4923). Each figure is a
population total Y = Σ_h N_h ȳ_h of a per-point indicator, or a ratio R = Y / X of two such totals,
with variances

    V(Ŷ) = Σ_h N_h² s²_yh / n_h,        V(R̂) = Σ_h N_h² s²_eh / n_h / X̂²,   e = y − R̂ x,

(s² with n_h − 1, no finite-population correction, as in Olofsson et al. 2014). When the strata are
the map classes these reduce exactly to Olofsson et al. (2014, RSE 148:42) eqs. 2-10 (error matrix
p̂_ij = W_i n_ij / n_i·, area p̂_·k, user's, producer's and overall accuracy with their standard
errors); when they are not (zones, a simple random sample, a disagreement design, another map's
classes) the same formulas stay unbiased, which the map-class formulas would not.

Intervals (95%): accuracies and areas are proportions, given Wilson score intervals at the
effective sample size n_eff = p̂(1 − p̂) / SE² (the design's own variance; the plain point count
when p̂ is 0 or 1), which keep inside [0, 1] and cover better than p̂ ± 1.96 SE near the edges; an
accuracy difference between two maps is given the normal interval d̂ ± 1.96 SE.

Points whose reference is "outside the population" (code -1, e.g. open water on a land map) count
toward no class: areas stay totals over the whole map, accuracies are ratios over assessed points.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy.stats import binomtest

Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class Interval:
    """An estimate, its standard error and its 95% interval."""

    value: float
    se: float
    low: float
    high: float

    def as_dict(self, key: str) -> dict[str, float | list[float]]:
        """`key`, `key_se` and `key_ci95` [low, high] (NaN for figures the sample cannot estimate)."""
        return {key: self.value, f"{key}_se": self.se, f"{key}_ci95": [self.low, self.high]}


@dataclass(frozen=True)
class StratifiedSample:
    """What the estimators need of a sample: each point's stratum (code) and each stratum's pixel
    count N_h."""

    stratum: np.ndarray
    pixels: np.ndarray

    @property
    def n_h(self) -> np.ndarray:
        """Sample points per stratum."""
        return np.bincount(self.stratum, minlength=len(self.pixels))

    @property
    def population(self) -> float:
        """N: pixels in the sampled population."""
        return float(np.sum(self.pixels))

    def _s2_over_n(self, values: np.ndarray) -> np.ndarray:
        """s²_h / n_h per stratum (0 for a stratum sampled whole, or with no point)."""
        n_h = self.n_h
        sums = np.bincount(self.stratum, weights=values, minlength=len(self.pixels))
        mean = np.divide(sums, n_h, out=np.zeros(len(n_h)), where=n_h > 0)
        dev = values - mean[self.stratum]
        ss = np.bincount(self.stratum, weights=dev * dev, minlength=len(self.pixels))
        ok = (n_h > 1) & (n_h < self.pixels)
        return np.divide(ss, n_h * (n_h - 1.0), out=np.zeros(len(n_h)), where=ok)

    def total(self, y: np.ndarray) -> tuple[float, float]:
        """Ŷ = Σ_h N_h ȳ_h and its standard error."""
        n_h = self.n_h
        sums = np.bincount(self.stratum, weights=y, minlength=len(self.pixels))
        mean = np.divide(sums, n_h, out=np.zeros(len(n_h)), where=n_h > 0)
        var = float(np.sum(self.pixels.astype(float) ** 2 * self._s2_over_n(y)))
        return float(np.sum(self.pixels * mean)), float(np.sqrt(var))

    def ratio(self, y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
        """R̂ = Ŷ / X̂ and its standard error (linearised); NaN when X̂ is 0."""
        ty, _ = self.total(y)
        tx, _ = self.total(x)
        if tx <= 0:
            return float("nan"), float("nan")
        r = ty / tx
        var = float(np.sum(self.pixels.astype(float) ** 2 * self._s2_over_n(y - r * x))) / tx**2
        return r, float(np.sqrt(var))


def wilson(p: float, se: float, points: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion at the effective sample size p(1-p)/SE² (`points`
    when p is 0 or 1 or SE is 0)."""
    if not np.isfinite(p) or points <= 0:
        return float("nan"), float("nan")
    n = p * (1 - p) / se**2 if (se > 0 and 0 < p < 1) else float(points)
    z2 = Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def proportion(sample: StratifiedSample, y: np.ndarray, x: np.ndarray) -> Interval:
    """A ratio estimate of a proportion (y ≤ x, both indicators) with its Wilson interval."""
    r, se = sample.ratio(y, x)
    low, high = wilson(r, se, int(np.count_nonzero(x)))
    return Interval(r, se, low, high)


@dataclass(frozen=True)
class ClassFigures:
    """One class: its mapped area, error-adjusted area (km²) and share of the assessed area, user's
    and producer's accuracy, and the sample points mapped as / labelled as it."""

    name: str
    map_km2: float
    area_km2: Interval
    share: Interval
    users: Interval
    producers: Interval
    points_mapped: int
    points_reference: int


@dataclass(frozen=True)
class Figures:
    """One class layer (or one zone of it): points used, overall accuracy, per-class figures, and the
    error matrix as estimated area shares (rows map, columns reference) and as point counts."""

    points: int
    assessed_km2: float
    overall: Interval
    classes: list[ClassFigures]
    matrix: np.ndarray
    counts: np.ndarray


def estimate(sample: StratifiedSample, mapped: np.ndarray, reference: np.ndarray, n_classes: int,
             class_names: tuple[str, ...], pixel_km2: float, map_pixels: np.ndarray,
             domain: np.ndarray | None = None) -> Figures:
    """Accuracy and area of one class layer from its sample: `mapped` and `reference` class codes per
    point (reference -1: outside the population), `map_pixels` the map's pixel count per class (in
    the domain), `domain` an optional 0/1 weight per point restricting every figure to a zone."""
    dom = np.ones(len(mapped)) if domain is None else np.asarray(domain, float)
    inside = (reference >= 0) * dom
    correct = (mapped == reference) * inside
    overall = proportion(sample, correct, inside)
    n_all = len(mapped)
    total_km2 = sample.population * pixel_km2
    assessed, _ = sample.total(inside)
    classes, matrix = [], np.full((n_classes, n_classes), np.nan)
    for k in range(n_classes):
        is_map = (mapped == k) * inside
        is_ref = (reference == k) * dom
        hit = is_map * (reference == k)
        t, se = sample.total(is_ref)
        p = t / sample.population
        low, high = wilson(p, se / sample.population, n_all)
        area = Interval(t * pixel_km2, se * pixel_km2, low * total_km2, high * total_km2)
        for j in range(n_classes):
            matrix[k, j] = sample.ratio(is_map * (reference == j), inside)[0]
        classes.append(ClassFigures(class_names[k], float(map_pixels[k]) * pixel_km2, area,
                                    proportion(sample, is_ref, inside), proportion(sample, hit, is_map),
                                    proportion(sample, hit, is_ref), int(np.count_nonzero(is_map)),
                                    int(np.count_nonzero(is_ref))))
    in_pts = inside > 0
    counts = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(counts, (mapped[in_pts], reference[in_pts]), 1)
    return Figures(int(np.count_nonzero(in_pts)), assessed * pixel_km2, overall, classes, matrix, counts)


@dataclass(frozen=True)
class Comparison:
    """Two maps on one sample: each one's overall accuracy, their difference (A − B) with a normal
    interval, and the exact McNemar test on the points where exactly one of them is right."""

    overall_a: Interval
    overall_b: Interval
    difference: Interval
    only_a_right: int
    only_b_right: int
    mcnemar_p: float


def compare(sample: StratifiedSample, mapped_a: np.ndarray, mapped_b: np.ndarray,
            reference: np.ndarray) -> Comparison:
    """Overall accuracy of maps A and B on the same sample and their difference; the exact McNemar
    test (two-sided binomial on the discordant points) treats the points as given, not weighted."""
    inside = (reference >= 0).astype(float)
    right_a = (mapped_a == reference) * inside
    right_b = (mapped_b == reference) * inside
    d, se = sample.ratio(right_a - right_b, inside)
    diff = Interval(d, se, d - Z95 * se, d + Z95 * se)
    b = int(np.count_nonzero((right_a > 0) & (right_b == 0)))
    c = int(np.count_nonzero((right_a == 0) & (right_b > 0) & (inside > 0)))
    p = float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    return Comparison(proportion(sample, right_a, inside), proportion(sample, right_b, inside), diff, b, c, p)
