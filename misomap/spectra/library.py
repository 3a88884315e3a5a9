"""The spectral-library format on Zarr v3 (local path or s3://) and its in-memory form.

Layout (one group):
    zarr.json                attrs: misomap_spectral_library (format version), sensors
    samples/sample_id        str (n,)          samples that carry properties
    samples/properties       float32 (n, p)    NaN = not measured; attrs: names
    <sensor>/sample_id       str (m,)          one row per sample scanned by this sensor
    <sensor>/axis            float64 (w,)      wavenumber (cm-1) or wavelength (nm)
    <sensor>/spectra         float32 (m, r, w) r scan repeats, NaN rows = repeat absent;
                             attrs: quantity (absorbance | reflectance), unit (cm-1 | nm)
Sensors are named freely (``mir``, ``nir``, ``visnir``); rows are chunked by sample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import zarr

from misomap.core.storage import is_remote
from misomap.spectra.errors import LibraryFormatError, MissingPropertyError, SampleIdMismatchError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
Quantity = Literal["absorbance", "reflectance"]
AxisUnit = Literal["cm-1", "nm"]


@dataclass(frozen=True)
class SensorSpectra:
    """Spectra of one sensor: (sample, repeat, channel) with NaN rows for absent repeats."""

    sample_id: np.ndarray
    axis: np.ndarray
    values: np.ndarray
    quantity: Quantity
    unit: AxisUnit

    def __post_init__(self) -> None:
        n, w = len(self.sample_id), len(self.axis)
        if self.values.ndim != 3 or self.values.shape[0] != n or self.values.shape[2] != w:
            raise LibraryFormatError(
                f"spectra shape {self.values.shape} does not match {n} sample ids x repeats x {w} channels")

    def mean(self) -> np.ndarray:
        """Mean over the scan repeats present: (sample, channel)."""
        present = ~np.isnan(self.values).all(axis=2)
        counts = np.maximum(present.sum(axis=1), 1)[:, None]
        return (np.where(present[:, :, None], self.values, 0.0).sum(axis=1) / counts).astype(np.float32)

    def scans(self) -> tuple[np.ndarray, np.ndarray]:
        """All repeats present as rows (scan, channel), and the sample row each came from."""
        present = ~np.isnan(self.values).all(axis=2)
        rows, reps = np.nonzero(present)
        return self.values[rows, reps], rows

    def take(self, rows: np.ndarray) -> SensorSpectra:
        """The given sample rows."""
        return SensorSpectra(self.sample_id[rows], self.axis, self.values[rows], self.quantity, self.unit)


@dataclass(frozen=True)
class SpectralLibrary:
    """Spectra per sensor plus the measured properties of the samples."""

    sensors: dict[str, SensorSpectra]
    sample_id: np.ndarray
    properties: np.ndarray
    property_names: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def targets(self, names: tuple[str, ...] | list[str], ids: np.ndarray) -> np.ndarray:
        """Property values (len(ids), len(names)) for the given sample ids; NaN where unmeasured."""
        missing = [n for n in names if n not in self.property_names]
        if missing:
            raise MissingPropertyError(
                f"library lacks propert{'y' if len(missing) == 1 else 'ies'} {missing}; "
                f"it has {list(self.property_names)}: measure them or drop them from spectral.properties")
        cols = [self.property_names.index(n) for n in names]
        index = {s: i for i, s in enumerate(self.sample_id)}
        absent = [s for s in ids if s not in index]
        if absent:
            raise SampleIdMismatchError(
                f"{len(absent)} spectra have no property row, e.g. sample ids {absent[:5]}")
        return self.properties[np.array([index[s] for s in ids], dtype=int)][:, cols]


def pair_rows(reference_ids: np.ndarray, other_ids: np.ndarray, what: str = "NIR vs MIR") -> np.ndarray:
    """Row index into `reference_ids` of every id in `other_ids`; every one must be found, once."""
    index = {s: i for i, s in enumerate(reference_ids)}
    if len(index) != len(reference_ids):
        raise SampleIdMismatchError(f"{what}: duplicate sample ids in the reference sensor")
    missing = [s for s in other_ids if s not in index]
    if missing:
        raise SampleIdMismatchError(
            f"{what}: {len(missing)} of {len(other_ids)} sample ids have no partner, e.g. {missing[:5]}; "
            "the paired spectra must come from the same samples")
    if len(set(other_ids)) != len(other_ids):
        raise SampleIdMismatchError(f"{what}: duplicate sample ids in the paired sensor")
    return np.array([index[s] for s in other_ids], dtype=int)


def open_library_group(url: str, storage_options: dict[str, Any] | None, mode: str = "r") -> zarr.Group:
    """Open the library group at a local path or s3:// URL."""
    opts = storage_options if is_remote(url) else None
    try:
        group = zarr.open_group(store=url, mode=mode, storage_options=opts, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
        raise LibraryFormatError(f"no spectral library at {url}: {err}") from None
    if mode == "r" and "misomap_spectral_library" not in group.attrs:
        raise LibraryFormatError(f"{url} is a Zarr group but not a misomap spectral library "
                                 "(attribute misomap_spectral_library missing)")
    return group


def write_library(lib: SpectralLibrary, url: str, storage_options: dict[str, Any] | None = None,
                  chunk_rows: int = 512) -> None:
    """Write `lib` to a new Zarr v3 group (replacing what was there)."""
    root = open_library_group(url, storage_options, mode="w")
    root.attrs.update({"misomap_spectral_library": FORMAT_VERSION, "sensors": sorted(lib.sensors),
                       **lib.attrs})
    samples = root.create_group("samples")
    _write(samples, "sample_id", lib.sample_id.astype(str), (max(1, len(lib.sample_id)),))
    props = _write(samples, "properties", lib.properties.astype(np.float32),
                   (max(1, len(lib.sample_id)), max(1, len(lib.property_names))))
    props.attrs["names"] = list(lib.property_names)
    for name, sensor in lib.sensors.items():
        g = root.create_group(name)
        rows = max(1, min(chunk_rows, len(sensor.sample_id)))
        _write(g, "sample_id", sensor.sample_id.astype(str), (rows,))
        _write(g, "axis", sensor.axis.astype(np.float64), (len(sensor.axis),))
        arr = _write(g, "spectra", sensor.values.astype(np.float32), (rows, *sensor.values.shape[1:]))
        arr.attrs.update({"quantity": sensor.quantity, "unit": sensor.unit})
    log.info("wrote spectral library %s: %d samples, sensors %s", url, len(lib.sample_id),
             {k: v.values.shape for k, v in lib.sensors.items()})


def _write(group: zarr.Group, name: str, data: np.ndarray, chunks: tuple[int, ...]) -> zarr.Array:
    fill = "" if data.dtype.kind in "UOT" else None
    arr = group.create_array(name, shape=data.shape, dtype=str if fill == "" else data.dtype,
                             chunks=chunks, fill_value=fill)
    if data.size:
        arr[...] = data
    return arr


def _ids(values: np.ndarray) -> np.ndarray:
    """Sample ids as a plain numpy str array (zarr returns numpy's variable-width StringDType)."""
    return np.array(values.tolist(), dtype=str)


def sensor_rows(group: zarr.Group, sensor: str) -> int:
    """Number of samples scanned by `sensor`."""
    return int(_sensor_group(group, sensor)["sample_id"].shape[0])


def read_sensor(group: zarr.Group, sensor: str, start: int = 0, stop: int | None = None) -> SensorSpectra:
    """Rows [start, stop) of one sensor (the whole sensor by default)."""
    g = _sensor_group(group, sensor)
    spectra = g["spectra"]
    for key in ("quantity", "unit"):
        if key not in spectra.attrs:
            raise LibraryFormatError(f"sensor '{sensor}': spectra lack the '{key}' attribute")
    stop = spectra.shape[0] if stop is None else stop
    return SensorSpectra(_ids(g["sample_id"][start:stop]), np.asarray(g["axis"][:]),
                         np.asarray(spectra[start:stop]), spectra.attrs["quantity"], spectra.attrs["unit"])


def _sensor_group(group: zarr.Group, sensor: str) -> zarr.Group:
    available = list(group.attrs.get("sensors", []))
    if sensor not in available:
        raise LibraryFormatError(f"spectral library has no sensor '{sensor}'; it has {available}")
    g = group[sensor]
    for part in ("sample_id", "axis", "spectra"):
        if part not in g:
            raise LibraryFormatError(f"sensor '{sensor}' lacks its '{part}' array")
    return g


def read_library(url: str, storage_options: dict[str, Any] | None = None) -> SpectralLibrary:
    """Read a whole library into memory (training; embedding reads chunk by chunk instead)."""
    root = open_library_group(url, storage_options)
    samples = root["samples"]
    names = tuple(samples["properties"].attrs.get("names", []))
    sensors = {name: read_sensor(root, name) for name in root.attrs["sensors"]}
    attrs = {k: v for k, v in root.attrs.items() if k not in ("misomap_spectral_library", "sensors")}
    return SpectralLibrary(sensors, _ids(samples["sample_id"][:]),
                           np.asarray(samples["properties"][:]), names, attrs)
