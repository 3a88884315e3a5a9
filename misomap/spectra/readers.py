"""Readers into the library's in-memory form: the Open Soil Spectral Library (OSSL v1.2) tables,
the NeoSpectra / KSSL paired NIR-MIR tables, and the LimeSoDa datasets.

Layouts (as published by soilspectroscopy/ossl-imports and the OSSL manual):
- OSSL v1.2 L0/L1 tables (`ossl_mir_L0_v1.2`, `ossl_visnir_L0_v1.2`, `ossl_soillab_L0_v1.2`): one row
  per layer keyed by `id.layer_uuid_txt`, metadata columns (`dataset.code_ascii_txt`,
  `scan.mir.model.name_utf8_txt`, ...), spectra in `scan_mir.<cm-1>_abs` (600..4000 every 2,
  absorbance) or `scan_visnir.<nm>_ref` (350..2500 every 2, reflectance fraction).
- NeoSpectra (`neospectra_nir_v1.2`, `neospectra_mir_v1.2`, `neospectra_soillab_v1.2`; KSSL samples):
  keyed by `id.sample_local_c`; the NIR table has one row per scan (`id.scan_local_c`, several
  handheld units per sample: the repeats) with `scan_nir.<nm>_ref` 1350..2550 every 2; the MIR table
  one row per sample with `scan_mir.<cm-1>_abs`; soil-lab columns such as `oc_usda.c729_w.pct`.
Rows sharing a sample id are scan repeats. Reflectance is a fraction; a table whose values exceed
1.5 is taken to be in percent. CSV (optionally .gz) and Parquet files are read.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd

from misomap.spectra.errors import LibraryFormatError, MissingPropertyError, SpectralValueError
from misomap.spectra.library import SensorSpectra, SpectralLibrary

log = logging.getLogger(__name__)

OSSL_PATTERNS: dict[str, tuple[str, Literal["absorbance", "reflectance"], Literal["cm-1", "nm"]]] = {
    "mir": (r"^scan_mir\.(\d+(?:\.\d+)?)_abs$", "absorbance", "cm-1"),
    "visnir": (r"^scan_visnir\.(\d+(?:\.\d+)?)_ref$", "reflectance", "nm"),
    "nir": (r"^scan_nir\.(\d+(?:\.\d+)?)_ref$", "reflectance", "nm"),
}
OSSL_ID_COLUMN = "id.layer_uuid_txt"
"""Sample key of the OSSL v1.2 global tables."""
NEOSPECTRA_ID_COLUMN = "id.sample_local_c"
"""Sample key of the NeoSpectra / KSSL tables (the NIR table's scan key is `id.scan_local_c`)."""
OSSL_PROPERTY_COLUMNS: dict[str, tuple[str, float]] = {
    "total_c": ("c.tot_usda.a622_w.pct", 1.0),
    "total_n": ("n.tot_usda.a623_w.pct", 1.0),
    "inorganic_c": ("caco3_usda.a54_w.pct", 0.12),   # carbonate C = 12/100 of CaCO3
    "organic_c": ("oc_usda.c729_w.pct", 1.0),
    "ph": ("ph.h2o_usda.a268_index", 1.0),
    "cec": ("cec_usda.a723_cmolc.kg", 1.0),
    "clay": ("clay.tot_usda.a334_w.pct", 1.0),
    "silt": ("silt.tot_usda.c62_w.pct", 1.0),
    "sand": ("sand.tot_usda.c60_w.pct", 1.0),
}
"""misomap property -> (OSSL soil-lab column, factor to misomap units)."""

PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    "total_c": (0.0, 60.0), "organic_c": (0.0, 60.0), "inorganic_c": (0.0, 12.0), "total_n": (0.0, 20.0),
    "ph": (0.0, 14.0), "cec": (0.0, 500.0), "clay": (0.0, 100.0), "silt": (0.0, 100.0), "sand": (0.0, 100.0),
    "organic_matter": (0.0, 100.0),
}
"""Physically possible values in misomap units (%, pH units, cmol(+)/kg); docs/operations.md gives
the sources. A measured value outside them is a unit or entry error, refused on import."""

LIMESODA_PROPERTIES = {"SOC_target": "organic_c", "SOM_target": "organic_matter", "pH_target": "ph",
                       "Clay_target": "clay"}
"""LimeSoDa target columns -> misomap property names (SOM sets report organic matter, not carbon)."""


def _as_fraction(values: np.ndarray, what: str) -> np.ndarray:
    if np.nanmax(values) > 1.5:
        log.info("%s: reflectance above 1.5 found, reading it as percent", what)
        return values / 100.0
    return values


def spectra_from_frame(frame: pd.DataFrame, sensor: str, id_column: str = OSSL_ID_COLUMN) -> SensorSpectra:
    """Spectra of `sensor` from an OSSL-style table; rows sharing an id become scan repeats."""
    if sensor not in OSSL_PATTERNS:
        raise LibraryFormatError(f"unknown OSSL sensor '{sensor}'; expected one of {list(OSSL_PATTERNS)}")
    pattern, quantity, unit = OSSL_PATTERNS[sensor]
    cols = [c for c in frame.columns if re.match(pattern, c)]
    if not cols:
        raise LibraryFormatError(f"no '{pattern}' columns for sensor '{sensor}' in the table")
    if id_column not in frame.columns:
        raise LibraryFormatError(f"sample id column '{id_column}' missing from the {sensor} table")
    axis = np.array([float(re.match(pattern, c).group(1)) for c in cols])
    source = frame.attrs.get("source", f"the {sensor} table")
    values = _numbers(frame[cols], source)
    scanned = ~np.isnan(values).all(axis=1)
    if not scanned.any():
        raise LibraryFormatError(f"{source} holds no {sensor} spectrum ({len(values)} rows, every '{cols[0]}'.. "
                                 "cell empty): give a table with spectra")
    if not scanned.all():
        log.info("%s table: %d of %d rows carry no %s spectrum (joined tables); skipped", sensor,
                 int((~scanned).sum()), len(values), sensor)
        frame, values = frame[scanned], values[scanned]
    if frame[id_column].isna().any():
        raise LibraryFormatError(f"{sensor} table: {int(frame[id_column].isna().sum())} rows have no "
                                 f"'{id_column}': every scan needs its sample id")
    ids = frame[id_column].astype(str).to_numpy()
    if quantity == "reflectance":
        values = _as_fraction(values, sensor)
    unique, first = np.unique(ids, return_index=True)
    unique = unique[np.argsort(first)]
    row_of = {s: i for i, s in enumerate(unique)}
    rep = pd.Series(ids).groupby(ids).cumcount().to_numpy()
    cube = np.full((len(unique), int(rep.max()) + 1, len(cols)), np.nan, dtype=np.float32)
    cube[[row_of[s] for s in ids], rep] = values
    return SensorSpectra(unique, axis, cube, quantity, unit)


def _numbers(frame: pd.DataFrame, source: str) -> np.ndarray:
    """The frame's cells as float32, empty cells NaN; LibraryFormatError naming the first cell that is
    not a number (row, column and text) or is infinite."""
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & frame.notna()
    values = numeric.to_numpy(dtype=np.float32)
    bad |= pd.DataFrame(np.isinf(values), index=frame.index, columns=frame.columns)
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise LibraryFormatError(f"{source}: row {row + 1}, column '{frame.columns[col]}' holds "
                                 f"{str(frame.iat[row, col])[:40]!r}, not a finite number: fix the table")
    return values


def read_table(source: str | Path | IO[str]) -> pd.DataFrame:
    """A CSV (optionally gzip-compressed) or Parquet table, naming the file when it cannot be read;
    the frame's `attrs["source"]` names the file in later messages."""
    name = str(getattr(source, "name", source))
    try:
        frame = pd.read_parquet(source) if name.endswith(".parquet") else pd.read_csv(source, low_memory=False)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise LibraryFormatError(f"cannot read table {name}: {type(err).__name__}: {err}") from None
    frame.attrs["source"] = name
    return frame


def read_ossl_csv(source: str | Path | IO[str], sensor: str, id_column: str = OSSL_ID_COLUMN) -> SensorSpectra:
    """Read an OSSL-style table (CSV or Parquet) of one sensor."""
    return spectra_from_frame(read_table(source), sensor, id_column)


def library_from_tables(spectra: dict[str, pd.DataFrame], soillab: pd.DataFrame | None = None,
                        properties: tuple[str, ...] = (), id_column: str = OSSL_ID_COLUMN,
                        paired_only: bool = False) -> SpectralLibrary:
    """A library from OSSL-layout tables: {sensor: table} (sensor mir, visnir or nir), and optionally
    a soil-lab table for `properties`. With `paired_only` (KSSL-style NIR/MIR pairs), NIR samples
    without a MIR scan are dropped (logged) so that every NIR sample has its MIR partner."""
    sensors = {name: spectra_from_frame(frame, name, id_column) for name, frame in spectra.items()}
    if paired_only and "nir" in sensors and "mir" in sensors:
        nir = sensors["nir"]
        keep = np.isin(nir.sample_id, sensors["mir"].sample_id)
        if not keep.all():
            log.warning("NIR: %d of %d samples have no MIR scan and are left out of the paired library",
                        int((~keep).sum()), keep.size)
        sensors["nir"] = nir.take(np.nonzero(keep)[0])
    if soillab is not None and properties:
        ids, values = properties_from_frame(soillab, properties, id_column)
    else:
        ids = np.unique(np.concatenate([s.sample_id for s in sensors.values()]))
        values, properties = np.zeros((len(ids), 0), dtype=np.float32), ()
    return SpectralLibrary(sensors, ids, values, tuple(properties), {"source": "OSSL-layout tables"})


def properties_from_frame(frame: pd.DataFrame, names: tuple[str, ...], id_column: str = OSSL_ID_COLUMN,
                          columns: dict[str, tuple[str, float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sample ids and (n, len(names)) properties from an OSSL soil-lab table."""
    columns = columns or OSSL_PROPERTY_COLUMNS
    unknown = [n for n in names if n not in columns or columns[n][0] not in frame.columns]
    if unknown:
        raise MissingPropertyError(
            f"soil-lab table lacks the column(s) for {unknown} "
            f"(expected {[columns[n][0] for n in unknown if n in columns]})")
    if id_column not in frame.columns:
        raise LibraryFormatError(f"sample id column '{id_column}' missing from the soil-lab table")
    source = frame.attrs.get("source", "the soil-lab table")
    table = frame.groupby(frame[id_column].astype(str), sort=False).first()
    values = _numbers(table[[columns[n][0] for n in names]], source) * np.array([columns[n][1] for n in names],
                                                                                   np.float32)
    for j, name in enumerate(names):
        lo, hi = PHYSICAL_RANGES.get(name, (-np.inf, np.inf))
        out = np.nonzero((values[:, j] < lo) | (values[:, j] > hi))[0]
        if out.size:
            raise SpectralValueError(
                f"{source}: {name} ('{columns[name][0]}') of sample {table.index[out[0]]} is {values[out[0], j]:g}, "
                f"outside its physical range {lo:g}..{hi:g} ({out.size} sample(s) in all): a unit or entry error; "
                "fix the table (ranges and sources: docs/operations.md)")
    return table.index.to_numpy().astype(str), values


@dataclass(frozen=True)
class LimeSoDaSet:
    """One LimeSoDa dataset: its spectra, properties in misomap names, and its predefined folds."""

    name: str
    spectra: SensorSpectra
    properties: np.ndarray
    property_names: tuple[str, ...]
    folds: np.ndarray


def read_limesoda(name: str) -> LimeSoDaSet:
    """Load a LimeSoDa dataset with spectra (`wn_*` MIR or `wl_*` vis-NIR columns, % reflectance)."""
    import LimeSoDa

    data = LimeSoDa.load_dataset(name)
    frame = data["Dataset"]
    wn = [c for c in frame.columns if c.startswith("wn_")]
    wl = [c for c in frame.columns if c.startswith("wl_")]
    if not (wn or wl):
        raise LibraryFormatError(f"LimeSoDa {name} carries no spectra (no wn_/wl_ columns)")
    cols, unit = (wn, "cm-1") if wn else (wl, "nm")
    axis = np.array([float(c.split("_", 1)[1]) for c in cols])
    values = _as_fraction(frame[cols].to_numpy(dtype=np.float32), f"LimeSoDa {name}")
    targets = [c for c in LIMESODA_PROPERTIES if c in frame.columns]
    ids = np.array([f"{name}-{i}" for i in frame.index])
    spectra = SensorSpectra(ids, axis, values[:, None, :], "reflectance", unit)
    return LimeSoDaSet(name, spectra, frame[targets].to_numpy(dtype=np.float32),
                       tuple(LIMESODA_PROPERTIES[c] for c in targets), np.asarray(data["Folds"]))
