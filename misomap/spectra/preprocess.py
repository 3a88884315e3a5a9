"""Spectral preprocessing as scikit-learn transformers: checks, resampling to a common grid,
log10(1/R), SNV and Savitzky-Golay (chemotools), and which targets are skewed enough for log(1+x)."""

from __future__ import annotations

import numpy as np
from chemotools.derivative import SavitzkyGolay
from chemotools.scatter import StandardNormalVariate
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from misomap.spectra.config import AxisSpec
from misomap.spectra.errors import SampleIdMismatchError, SpectralGridError, SpectralValueError
from misomap.spectra.library import SensorSpectra

MIN_CHANNELS = 16
"""A model axis narrower than this many channels is refused (too little overlap to learn from)."""


def axis_values(spec: AxisSpec) -> np.ndarray:
    """The channel positions of a regular axis."""
    return spec.start + spec.step * np.arange(spec.size, dtype=np.float64)


PHYSICAL_LIMIT = 1e3
"""No soil spectrum's absorbance (log10 1/R, at most a few units) or reflectance (0..1, or 0..100
in percent) comes near this: a value beyond it is a fill value or a unit mix-up, not a spectrum."""


def validate_sensor(spectra: SensorSpectra, sensor: str, min_samples: int = 1) -> None:
    """Refuse what no model can use, naming the samples at fault: fewer than `min_samples` samples,
    duplicate sample ids, NaN gaps inside a scan, a sample with no scan, infinite or physically
    impossible values (e.g. a 1e30 fill) and non-positive reflectance."""
    values = spectra.values
    n = len(spectra.sample_id)
    if n < min_samples:
        raise SpectralValueError(
            f"{sensor}: {n} sample{'' if n == 1 else 's'} in the library but at least {min_samples} are needed "
            "to fit a model: add spectra or point spectral.library at the full library")
    ids, counts = np.unique(spectra.sample_id, return_counts=True)
    if (counts > 1).any():
        dup = ids[counts > 1]
        raise SampleIdMismatchError(
            f"{sensor}: {dup.size} sample ids occur on more than one row, e.g. {dup[:5].tolist()}: "
            "scan repeats of one sample belong on one row (the repeat axis); rename or merge those rows")
    absent = np.isnan(values).all(axis=2)
    partial = np.isnan(values).any(axis=2) & ~absent
    bad = np.nonzero(partial.any(axis=1) | absent.all(axis=1))[0]
    if bad.size:
        raise SpectralValueError(
            f"{sensor}: {bad.size} samples have NaN channels or no scan at all, e.g. sample ids "
            f"{spectra.sample_id[bad[:5]].tolist()}: drop them or fill the gaps before use")
    inf = np.nonzero(np.isinf(values).any(axis=(1, 2)))[0]
    if inf.size:
        raise SpectralValueError(
            f"{sensor}: {inf.size} samples have infinite values, e.g. sample ids "
            f"{spectra.sample_id[inf[:5]].tolist()}: fix or drop those scans")
    huge = np.nonzero((np.abs(np.nan_to_num(values)) > PHYSICAL_LIMIT).any(axis=(1, 2)))[0]
    if huge.size:
        raise SpectralValueError(
            f"{sensor}: {huge.size} samples have values beyond ±{PHYSICAL_LIMIT:g}, no absorbance or "
            "reflectance (even in percent) reaches that, e.g. sample ids "
            f"{spectra.sample_id[huge[:5]].tolist()}: a fill value or a unit mix-up? fix or drop those scans")
    if spectra.quantity == "reflectance":
        neg = np.nonzero((np.nan_to_num(values, nan=1.0) <= 0).any(axis=(1, 2)))[0]
        if neg.size:
            raise SpectralValueError(
                f"{sensor}: {neg.size} samples have zero or negative reflectance, e.g. sample ids "
                f"{spectra.sample_id[neg[:5]].tolist()}: check the dark/white reference of those scans")


def common_axis(ranges: dict[str, tuple[float, float]], bounds: AxisSpec) -> AxisSpec:
    """The model axis: `bounds` narrowed to the intersection of every input's measured range,
    on the bounds' grid (start rounded up, stop rounded down). Instruments differ; a set is refused
    only when the intersection leaves fewer than MIN_CHANNELS channels."""
    lo = max([bounds.start, *(a for a, _ in ranges.values())])
    hi = min([bounds.stop, *(b for _, b in ranges.values())])
    start = bounds.start + bounds.step * np.ceil((lo - bounds.start) / bounds.step - 1e-9)
    stop = bounds.start + bounds.step * np.floor((hi - bounds.start) / bounds.step + 1e-9)
    if stop - start < bounds.step * (MIN_CHANNELS - 1):
        spans = ", ".join(f"{k} {a:g}..{b:g}" for k, (a, b) in ranges.items())
        raise SpectralGridError(
            f"no usable overlap between the model axis {bounds.start:g}..{bounds.stop:g} and the spectra "
            f"({spans}): the common range {lo:g}..{hi:g} has fewer than {MIN_CHANNELS} channels; use spectra of "
            "the same sensor family or change spectral.mir_axis / nir_axis")
    return AxisSpec(start=float(start), stop=float(stop), step=bounds.step)


def check_unit(spectra: SensorSpectra, unit: str, sensor: str) -> None:
    """Refuse spectra on another kind of axis (wavelength nm vs wavenumber cm-1): their numbers may
    overlap while the channels mean different things."""
    if spectra.unit != unit:
        raise SpectralGridError(f"{sensor}: spectra on a {spectra.unit} axis but the model axis is in {unit}: "
                                f"put {'MIR' if unit == 'cm-1' else 'NIR'} spectra under this sensor")


def axis_range(axis: np.ndarray) -> tuple[float, float]:
    """(lowest, highest) position of a measured axis, in either order."""
    return float(np.min(axis)), float(np.max(axis))


class Resample(TransformerMixin, BaseEstimator):
    """Linear interpolation from `source_axis` (any order) onto `target_axis`.

    A target outside the measured range is refused rather than extrapolated.
    """

    def __init__(self, source_axis: np.ndarray, target_axis: np.ndarray) -> None:
        self.source_axis = source_axis
        self.target_axis = target_axis

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> Resample:
        """Check the grids and precompute interpolation indices and weights."""
        src = np.asarray(self.source_axis, dtype=np.float64)
        tgt = np.asarray(self.target_axis, dtype=np.float64)
        if X.shape[1] != src.size:
            raise SpectralGridError(f"spectra have {X.shape[1]} channels but the axis has {src.size}")
        order = np.argsort(src)
        s = src[order]
        tol = 0.5 * float(np.min(np.diff(s))) if s.size > 1 else 0.0
        if tgt.min() < s[0] - tol or tgt.max() > s[-1] + tol:
            raise SpectralGridError(
                f"spectra cover {s[0]:g}..{s[-1]:g} but the model grid needs {tgt.min():g}..{tgt.max():g}: "
                "use spectra that cover the model's axis or change spectral.mir_axis / nir_axis")
        t = np.clip(tgt, s[0], s[-1])
        hi = np.clip(np.searchsorted(s, t, side="left"), 1, s.size - 1)
        lo = hi - 1
        w = (t - s[lo]) / (s[hi] - s[lo])
        self.order_, self.lo_, self.hi_, self.weight_ = order, lo, hi, w.astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Spectra on the target axis."""
        Xs = np.asarray(X, dtype=np.float32)[:, self.order_]
        return Xs[:, self.lo_] * (1 - self.weight_) + Xs[:, self.hi_] * self.weight_


class ReflectanceToAbsorbance(TransformerMixin, BaseEstimator):
    """log10(1/R) for reflectance given as a fraction."""

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> ReflectanceToAbsorbance:
        """Stateless."""
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apparent absorbance; refuses non-positive reflectance."""
        X = np.asarray(X, dtype=np.float32)
        if (X <= 0).any():
            rows = np.nonzero((X <= 0).any(axis=1))[0]
            raise SpectralValueError(f"non-positive reflectance in rows {rows[:5].tolist()}")
        return -np.log10(X)


def spectral_pipeline(source_axis: np.ndarray, target: AxisSpec, quantity: str,
                      savgol_window: int | None = None) -> Pipeline:
    """Resample -> (log10(1/R) for reflectance) -> SNV -> optional Savitzky-Golay 1st derivative."""
    steps: list[tuple[str, TransformerMixin]] = [("resample", Resample(source_axis, axis_values(target)))]
    if quantity == "reflectance":
        steps.append(("absorbance", ReflectanceToAbsorbance()))
    steps.append(("snv", StandardNormalVariate()))
    if savgol_window:
        steps.append(("savgol", SavitzkyGolay(window_length=savgol_window, polyorder=2, deriv=1)))
    return Pipeline(steps)


def preprocess(spectra: np.ndarray, source_axis: np.ndarray, target: AxisSpec, quantity: str) -> np.ndarray:
    """Spectra (rows, channels) on `target`, as SNV-corrected absorbance (float32)."""
    return spectral_pipeline(source_axis, target, quantity).fit_transform(spectra).astype(np.float32)
