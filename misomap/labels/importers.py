"""Pedon tables as soil scientists hold them → the project's pedon GeoParquet (docs/contracts.md §1),
with a report of every row dropped or changed and why. Sources of the layouts: docs/own-area.md.

Layouts:
- `kssl`: the NCSS/KSSL Lab Data Mart — `lab_combine_nasis_ncss` (one row per pedon: `pedon_key`,
  `latitude_decimal_degrees`, `longitude_decimal_degrees`, `corr_taxorder`/`SSL_taxorder`/
  `samp_taxorder`) and, for permafrost, `lab_layer` (`pedon_key`, `hzn_desgn`, `hzn_top`, `hzn_bot`),
  as two tables or as one joined (one row per layer) export.
- `miso`: the MISO reference repository's point data (JSON records or CSV): `id`, `lon`, `lat`,
  `tax_order`, `aksdb_pf1m_bin`; a value may be a list (several observations), used only when all
  agree, as the reference's `_collapse_value` does.
- `table`: any CSV/JSON/(Geo)Parquet through a column map (pedon_id, x, y, soil_order, permafrost).

Permafrost (1 = present within 100 cm) for `kssl`: a horizon whose designation carries the suffix
`f` (frozen soil, permafrost; `ff` dry permafrost) starting above 100 cm → 1; horizons described to
≥ 100 cm with none → 0; shallower descriptions without one → unknown; no horizons at all → 1 for
Gelisols (the Keys to Soil Taxonomy's first Gelisol criterion, permafrost within 100 cm), else unknown.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from pyproj.exceptions import CRSError

from misomap.core.classes import SOIL_ORDERS
from misomap.labels.pedons import CRS, LabelsError, check_pedons

log = logging.getLogger(__name__)

USDA_ORDERS = ("Alfisols", "Andisols", "Aridisols", "Entisols", "Gelisols", "Histosols", "Inceptisols",
               "Mollisols", "Oxisols", "Spodosols", "Ultisols", "Vertisols")
"""The twelve orders of Soil Taxonomy; the project maps seven of them (misomap.core.classes)."""
KSSL_ORDER_COLUMNS = ("corr_taxorder", "SSL_taxorder", "samp_taxorder")
"""Lab Data Mart order columns, most authoritative first: correlated, lab (SSL), sampled as."""
PERMAFROST_DEPTH_CM = 100.0
_FROZEN = re.compile(r"[A-Z][a-z]*f")
"""A master horizon letter followed by lowercase suffixes that include `f` (e.g. Oaf, Bgf, Cf, Wf)."""
_TRUE = {"1", "1.0", "true", "yes", "present", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "absent", "n", "f"}
REPORT_COLUMNS = ("file", "row", "pedon_id", "action", "reason")


@dataclass
class Candidates:
    """Pedon rows read from one layout, before the common checks: `file`, `row` (1-based data row),
    `pedon_id`, `x`, `y` (in `crs`), `order` (raw text), `permafrost` (Int8, <NA> unknown)."""

    frame: pd.DataFrame
    crs: str
    notes: list[dict[str, Any]] = field(default_factory=list)
    """Rows changed while reading (report entries)."""


@dataclass(frozen=True)
class ImportResult:
    """The pedons in the contract's layout and the report of every dropped or changed row."""

    pedons: gpd.GeoDataFrame
    report: pd.DataFrame
    read: int


def read_table(path: str) -> pd.DataFrame:
    """A CSV (.csv, .csv.gz, .txt), JSON records (.json) or (Geo)Parquet file as a DataFrame;
    GeoParquet points become `x`/`y` columns with the file's CRS in `attrs['crs']`."""
    p = Path(path)
    name = p.name.lower()
    try:
        if name.endswith((".parquet", ".geoparquet")):
            try:
                gdf = gpd.read_parquet(p)
            except ValueError:  # plain Parquet, no geo metadata
                return pd.read_parquet(p)
            if not (gdf.geom_type == "Point").all():
                raise LabelsError(f"{path}: geometries must be Points, found {sorted(set(gdf.geom_type))}")
            frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
            frame["x"], frame["y"] = gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy()
            frame.attrs["crs"] = gdf.crs.to_string() if gdf.crs else None
            return frame
        if name.endswith(".json"):
            records = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(records, list):
                raise LabelsError(f"{path}: expected a JSON list of records (one object per pedon)")
            return pd.DataFrame.from_records(records)
        return pd.read_csv(p, low_memory=False)
    except FileNotFoundError:
        raise LabelsError(f"pedon file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, pd.errors.ParserError) as err:
        raise LabelsError(f"{path} is not a readable table: {err}") from None


def _need(frame: pd.DataFrame, columns: tuple[str, ...], path: str, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LabelsError(f"{path}: no {what} column(s) {missing}; have {list(frame.columns)[:30]}")


def _rows(frame: pd.DataFrame) -> np.ndarray:
    return np.arange(1, len(frame) + 1)


def _flag(value: Any) -> Any:
    """A presence flag (1/0, true/false, yes/no, present/absent) as 1, 0 or <NA>."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return pd.NA
    text = str(value).strip().lower()
    return 1 if text in _TRUE else 0 if text in _FALSE else pd.NA


def kssl_permafrost(order: str | None, horizons: pd.DataFrame | None) -> tuple[Any, str | None]:
    """(permafrost 1/0/<NA>, note) for one pedon from its horizons (`hzn_desgn`, `hzn_top`,
    `hzn_bot`, cm) and its order; the rule is in the module docstring."""
    if horizons is None or horizons.empty:
        if order == "Gelisols":
            return 1, None
        return pd.NA, None
    top = pd.to_numeric(horizons["hzn_top"], errors="coerce")
    bot = pd.to_numeric(horizons["hzn_bot"], errors="coerce")
    desg = horizons["hzn_desgn"].fillna("").astype(str)
    frozen = desg.str.contains(_FROZEN) & (top < PERMAFROST_DEPTH_CM)
    if frozen.any():
        return 1, None
    deepest = float(np.nanmax(bot.to_numpy(dtype=float))) if bot.notna().any() else float("nan")
    if deepest >= PERMAFROST_DEPTH_CM:
        return 0, None
    return pd.NA, (f"horizons described to {deepest:g} cm (< {PERMAFROST_DEPTH_CM:g}) with no frozen (f) "
                   "horizon: permafrost unknown")


def read_kssl(paths: list[str]) -> Candidates:
    """Lab Data Mart tables: `lab_combine_nasis_ncss` (or a joined export) and optionally `lab_layer`."""
    tables = [(p, read_table(p)) for p in paths]
    pedon_tabs = [(p, t) for p, t in tables if "latitude_decimal_degrees" in t.columns
                  or "latitude_std_decimal_degrees" in t.columns]
    layer_tabs = [t for p, t in tables if "hzn_desgn" in t.columns]
    if len(pedon_tabs) != 1:
        raise LabelsError(f"kssl layout: expected one table with pedon coordinates (lab_combine_nasis_ncss: "
                          f"pedon_key, latitude_decimal_degrees, longitude_decimal_degrees) among {paths}, "
                          f"found {len(pedon_tabs)}")
    path, ped = pedon_tabs[0]
    lat = "latitude_std_decimal_degrees" if "latitude_std_decimal_degrees" in ped.columns else "latitude_decimal_degrees"
    lon = lat.replace("latitude", "longitude")
    _need(ped, ("pedon_key", lon), path, "Lab Data Mart")
    orders = [c for c in KSSL_ORDER_COLUMNS if c in ped.columns]
    if not orders:
        raise LabelsError(f"{path}: no taxonomic order column ({', '.join(KSSL_ORDER_COLUMNS)})")
    joined = "hzn_desgn" in ped.columns
    ped = ped.assign(_row=_rows(ped))
    if joined:  # one row per layer: the pedon's columns repeat on each
        ped = ped.drop_duplicates("pedon_key", keep="first")
    layers = pd.concat(layer_tabs, ignore_index=True) if layer_tabs else None
    if layers is not None:
        _need(layers, ("pedon_key", "hzn_desgn", "hzn_top", "hzn_bot"), "lab_layer", "horizon")
        by_pedon = dict(tuple(layers.groupby(layers["pedon_key"].astype(str))))
    else:
        by_pedon = {}
    notes, chosen, permafrost = [], [], []
    for _, r in ped.iterrows():
        pid = str(r["pedon_key"])
        values = {c: str(r[c]).strip() for c in orders if pd.notna(r[c]) and str(r[c]).strip()}
        first = next(iter(values.values()), None)
        if len({v.lower() for v in values.values()}) > 1:
            notes.append({"file": path, "row": int(r["_row"]), "pedon_id": pid, "action": "changed",
                          "reason": "taxonomic orders disagree (" + ", ".join(f"{k} {v}" for k, v in values.items())
                          + f"): took {next(iter(values))}"})
        chosen.append(first)
        pf, note = kssl_permafrost(_canonical(first), by_pedon.get(pid))
        if note:
            notes.append({"file": path, "row": int(r["_row"]), "pedon_id": pid, "action": "changed", "reason": note})
        permafrost.append(pf)
    frame = pd.DataFrame({"file": path, "row": ped["_row"].to_numpy(), "pedon_id": ped["pedon_key"].astype(str),
                          "x": pd.to_numeric(ped[lon], errors="coerce"), "y": pd.to_numeric(ped[lat], errors="coerce"),
                          "order": chosen, "permafrost": pd.array(permafrost, dtype="Int8")})
    return Candidates(frame.reset_index(drop=True), "EPSG:4326", notes)


def _collapse(value: Any) -> tuple[Any, bool]:
    """(value, ok): a list's value when all its elements agree (the reference's `_collapse_value`)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
        if not items:
            return None, True
        return (items[0], True) if all(v == items[0] for v in items) else (None, False)
    return value, True


def read_miso(paths: list[str]) -> Candidates:
    """The MISO reference's point data: `id`, `lon`, `lat`, `tax_order`, `aksdb_pf1m_bin`."""
    frames, notes = [], []
    for path in paths:
        t = read_table(path)
        _need(t, ("id", "lon", "lat"), path, "MISO point-data")
        if "tax_order" not in t.columns and "aksdb_pf1m_bin" not in t.columns:
            raise LabelsError(f"{path}: neither tax_order nor aksdb_pf1m_bin; have {list(t.columns)[:30]}")
        orders, pfs = [], []
        for i, r in enumerate(t.to_dict("records"), start=1):
            for col, out in (("tax_order", orders), ("aksdb_pf1m_bin", pfs)):
                value, ok = _collapse(r.get(col))
                if not ok:
                    notes.append({"file": path, "row": i, "pedon_id": str(r["id"]), "action": "changed",
                                  "reason": f"conflicting labels: {col} observations {r[col]} disagree; set unknown"})
                out.append(value)
        frames.append(pd.DataFrame({"file": path, "row": _rows(t), "pedon_id": t["id"].astype(str),
                                    "x": pd.to_numeric(t["lon"], errors="coerce"),
                                    "y": pd.to_numeric(t["lat"], errors="coerce"), "order": orders,
                                    "permafrost": pd.array([_flag(v) for v in pfs], dtype="Int8")}))
    return Candidates(pd.concat(frames, ignore_index=True), "EPSG:4326", notes)


def parse_columns(spec: str | None) -> dict[str, str]:
    """`pedon_id=site,x=lon,y=lat,soil_order=order,permafrost=pf` as {misomap name: input column}."""
    if not spec:
        raise LabelsError("the table layout needs --columns pedon_id=...,x=...,y=...[,soil_order=...][,permafrost=...]")
    pairs = dict(p.split("=", 1) for p in spec.split(",") if "=" in p)
    unknown = set(pairs) - {"pedon_id", "x", "y", "soil_order", "permafrost"}
    if unknown or len(pairs) != len(spec.split(",")):
        raise LabelsError(f"--columns {spec!r}: give name=column pairs for pedon_id, x, y, soil_order, permafrost")
    return {k.strip(): v.strip() for k, v in pairs.items()}


def read_mapped(paths: list[str], columns: dict[str, str], crs: str | None) -> Candidates:
    """Any table through a column map; GeoParquet points need no x/y entry."""
    frames, crss = [], set()
    for path in paths:
        t = read_table(path)
        cols = {**({"x": "x", "y": "y"} if t.attrs.get("crs") else {}), **columns}
        if "x" not in cols or "y" not in cols or cols["x"] not in t.columns or cols["y"] not in t.columns:
            raise LabelsError(f"{path}: no coordinate columns (x={cols.get('x')!r}, y={cols.get('y')!r}); have "
                              f"{list(t.columns)[:30]}: map them with --columns x=...,y=...")
        _need(t, tuple(cols[k] for k in cols if k not in ("x", "y")), path, "mapped")
        if not ({"soil_order", "permafrost"} & set(cols)):
            raise LabelsError(f"{path}: map at least one of soil_order, permafrost in --columns")
        crss.add(t.attrs.get("crs") or crs or "EPSG:4326")
        frames.append(pd.DataFrame({
            "file": path, "row": _rows(t), "pedon_id": t[cols["pedon_id"]].astype(str) if "pedon_id" in cols
            else pd.Series(_rows(t), dtype=str), "x": pd.to_numeric(t[cols["x"]], errors="coerce"),
            "y": pd.to_numeric(t[cols["y"]], errors="coerce"),
            "order": t[cols["soil_order"]] if "soil_order" in cols else None,
            "permafrost": pd.array([_flag(v) for v in t[cols["permafrost"]]], dtype="Int8")
            if "permafrost" in cols else pd.array([pd.NA] * len(t), dtype="Int8")}))
    if len(crss) != 1:
        raise LabelsError(f"input files are in different CRSs {sorted(crss)}: import them separately")
    return Candidates(pd.concat(frames, ignore_index=True), crss.pop())


def _canonical(order: Any) -> str | None:
    """An order name as Soil Taxonomy spells it ('gelisols', 'GELISOL' → 'Gelisols'), None if unknown."""
    if order is None or (isinstance(order, float) and math.isnan(order)) or order is pd.NA:
        return None
    text = str(order).strip().lower()
    text = text if text.endswith("s") else text + "s"
    return next((o for o in USDA_ORDERS if o.lower() == text), None)


def clean(c: Candidates, area: tuple[float, float, float, float] | None, area_crs: str) -> ImportResult:
    """The checks every layout shares: coordinates, reprojection, area, orders, labels, duplicates."""
    f = c.frame.copy()
    report = list(c.notes)
    keep = pd.Series(True, index=f.index)

    def drop(mask: Any, reason: Any) -> None:
        mask = pd.Series(np.asarray(mask, dtype=bool), index=f.index)
        for i in f.index[mask & keep]:
            text = reason(f.loc[i]) if callable(reason) else reason
            report.append({"file": f.at[i, "file"], "row": int(f.at[i, "row"]), "pedon_id": f.at[i, "pedon_id"],
                           "action": "dropped", "reason": text})
        keep.loc[mask] = False

    try:
        src = ProjCRS.from_user_input(c.crs)
    except CRSError:
        raise LabelsError(f"--crs {c.crs!r} is not a CRS pyproj knows (e.g. EPSG:4326)") from None
    drop(f["x"].isna() | f["y"].isna(), "missing coordinates")
    if src.is_geographic:
        drop((f["x"].abs() > 180) | (f["y"].abs() > 90) | ((f["x"] == 0) & (f["y"] == 0)),
             lambda r: f"impossible coordinates lon {r['x']}, lat {r['y']}")
    tr = Transformer.from_crs(src, CRS, always_xy=True)
    x, y = tr.transform(f["x"].to_numpy(dtype=float), f["y"].to_numpy(dtype=float))
    f["X"], f["Y"] = x, y
    drop(~(np.isfinite(f["X"]) & np.isfinite(f["Y"])),
         lambda r: f"coordinates {r['x']}, {r['y']} do not project from {c.crs} to {CRS}")
    if area is not None:
        ax, ay = Transformer.from_crs(CRS, area_crs, always_xy=True).transform(f["X"].to_numpy(), f["Y"].to_numpy())
        inside = (ax >= area[0]) & (ax <= area[2]) & (ay >= area[1]) & (ay <= area[3])
        drop(~inside, f"outside the area (grid bounds {list(area)} in {area_crs})")
    canon = f["order"].map(_canonical)
    for i in f.index[keep & f["order"].notna() & (f["order"].astype(str).str.strip() != "")]:
        raw, name = f.at[i, "order"], canon.at[i]
        if name is None or name not in SOIL_ORDERS:
            why = (f"order {name} is not one of the mapped classes {list(SOIL_ORDERS)}" if name else
                   f"unknown order {raw!r}")
            report.append({"file": f.at[i, "file"], "row": int(f.at[i, "row"]), "pedon_id": f.at[i, "pedon_id"],
                           "action": "changed", "reason": f"{why}: soil_order set unknown"})
    f["soil_order"] = canon.where(canon.isin(SOIL_ORDERS), None)
    conflict = (f["permafrost"] == 1) & f["soil_order"].notna() & (f["soil_order"] != "Gelisols")
    for i in f.index[keep & conflict.fillna(False)]:
        report.append({"file": f.at[i, "file"], "row": int(f.at[i, "row"]), "pedon_id": f.at[i, "pedon_id"],
                       "action": "changed", "reason": f"conflicting labels: permafrost within 100 cm but order "
                       f"{f.at[i, 'soil_order']} (permafrost within 100 cm makes a Gelisol): soil_order set unknown"})
        f.at[i, "soil_order"] = None
    drop(f["permafrost"].isna() & f["soil_order"].isna(), "no label left (neither permafrost nor soil order)")
    _duplicates(f, keep, drop)
    out = f[keep]
    gdf = gpd.GeoDataFrame({"pedon_id": out["pedon_id"].astype(str), "permafrost": out["permafrost"],
                            "soil_order": out["soil_order"].astype("string")},
                           geometry=gpd.points_from_xy(out["X"], out["Y"]), crs=CRS)
    gdf = check_pedons(gdf, "imported pedons")
    return ImportResult(gdf, pd.DataFrame(report, columns=list(REPORT_COLUMNS)), len(f))


def _duplicates(f: pd.DataFrame, keep: pd.Series, drop: Any) -> None:
    """Same id or same place (to the metre): identical labels keep the first row, differing ones drop all."""
    for key, what in ((["pedon_id"], "pedon id"), (["_xr", "_yr"], "location")):
        f["_xr"], f["_yr"] = f["X"].round(0), f["Y"].round(0)
        live = f[keep]
        groups = live.groupby(key, sort=False, dropna=False)
        sizes = groups["pedon_id"].transform("size")
        for _, g in live[sizes > 1].groupby(key, sort=False, dropna=False):
            labels = {(str(a), str(b)) for a, b in zip(g["permafrost"], g["soil_order"])}
            first = g.index[0]
            if len(labels) == 1:
                drop(f.index.isin(g.index[1:]), f"duplicate: same {what} and labels as row {f.at[first, 'row']} "
                     f"(pedon {f.at[first, 'pedon_id']}), kept that one")
            else:
                drop(f.index.isin(g.index), f"conflicting labels: rows {list(g['row'])} share this {what} "
                     "with different labels; all dropped")
