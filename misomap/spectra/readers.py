"""Readers into the library's in-memory form: OSSL-style CSV exports and the LimeSoDa datasets.

OSSL column names: MIR `scan_mir.<cm-1>_abs` (600..4000 every 2), vis-NIR `scan_visnir.<nm>_ref`
and NeoSpectra `scan_nir.<nm>_ref` (1350..2550 every 2). Rows sharing a sample id are scan repeats.
Reflectance is stored as a fraction; a file whose values exceed 1.5 is taken to be in percent.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd

from misomap.spectra.errors import LibraryFormatError, MissingPropertyError
from misomap.spectra.library import SensorSpectra

log = logging.getLogger(__name__)

OSSL_PATTERNS: dict[str, tuple[str, Literal["absorbance", "reflectance"], Literal["cm-1", "nm"]]] = {
    "mir": (r"^scan_mir\.(\d+(?:\.\d+)?)_abs$", "absorbance", "cm-1"),
    "visnir": (r"^scan_visnir\.(\d+(?:\.\d+)?)_ref$", "reflectance", "nm"),
    "nir": (r"^scan_nir\.(\d+(?:\.\d+)?)_ref$", "reflectance", "nm"),
}
OSSL_ID_COLUMN = "id.layer_uuid_txt"
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
    ids = frame[id_column].astype(str).to_numpy()
    values = frame[cols].to_numpy(dtype=np.float32)
    if quantity == "reflectance":
        values = _as_fraction(values, sensor)
    unique, first = np.unique(ids, return_index=True)
    unique = unique[np.argsort(first)]
    row_of = {s: i for i, s in enumerate(unique)}
    rep = pd.Series(ids).groupby(ids).cumcount().to_numpy()
    cube = np.full((len(unique), int(rep.max()) + 1, len(cols)), np.nan, dtype=np.float32)
    cube[[row_of[s] for s in ids], rep] = values
    return SensorSpectra(unique, axis, cube, quantity, unit)


def read_ossl_csv(source: str | Path | IO[str], sensor: str, id_column: str = OSSL_ID_COLUMN) -> SensorSpectra:
    """Read an OSSL-style CSV export of one sensor."""
    return spectra_from_frame(pd.read_csv(source), sensor, id_column)


def properties_from_frame(frame: pd.DataFrame, names: tuple[str, ...], id_column: str = OSSL_ID_COLUMN,
                          columns: dict[str, tuple[str, float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sample ids and (n, len(names)) properties from an OSSL soil-lab table."""
    columns = columns or OSSL_PROPERTY_COLUMNS
    unknown = [n for n in names if n not in columns or columns[n][0] not in frame.columns]
    if unknown:
        raise MissingPropertyError(
            f"soil-lab table lacks the column(s) for {unknown} "
            f"(expected {[columns[n][0] for n in unknown if n in columns]})")
    table = frame.groupby(frame[id_column].astype(str), sort=False).first()
    values = np.stack([table[columns[n][0]].to_numpy(dtype=np.float32) * columns[n][1] for n in names], 1)
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
