"""Read the pedon labels, MLRA-like regions and permafrost zones (docs/contracts.md section 1),
check them, and tag every pedon with its region and zone. Local paths or s3:// alike."""

from __future__ import annotations

import io
import logging

import geopandas as gpd
import pandas as pd

from misomap.core.classes import SOIL_ORDERS
from misomap.core.config_base import StorageConfig
from misomap.core.errors import MisomapError, MissingObjectError
from misomap.core.storage import Target
from misomap.labels.config import LabelsConfig

log = logging.getLogger(__name__)

CRS = "EPSG:3338"
PERMAFROST_LABELS = ("0", "1")  # absent, present (pedons.parquet values)
TARGETS: dict[str, tuple[str, ...]] = {"permafrost": PERMAFROST_LABELS, "soil_order": SOIL_ORDERS}
"""Each target and its class labels, as strings: the encoding every model's predictions use."""


class LabelsError(MisomapError):
    """The label files are missing or malformed; the message names the file, column or pedon."""


def read_geoparquet(location: str, storage: StorageConfig) -> gpd.GeoDataFrame:
    """A GeoParquet file as a GeoDataFrame."""
    try:
        return gpd.read_parquet(io.BytesIO(Target(location, storage).read_bytes()))
    except MissingObjectError as err:
        raise LabelsError(str(err)) from None
    except (ValueError, OSError) as err:
        raise LabelsError(f"{location} is not a readable GeoParquet file: {err}") from None


def write_parquet(location: str, table: pd.DataFrame, storage: StorageConfig) -> None:
    """Write a (Geo)DataFrame as (Geo)Parquet."""
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    Target(location, storage).write_bytes(buf.getvalue())


def _to_3338(gdf: gpd.GeoDataFrame, location: str) -> gpd.GeoDataFrame:
    if gdf.crs is None:
        raise LabelsError(f"{location} has no CRS; the contract says {CRS}")
    if gdf.crs.to_string() != CRS:
        log.warning("%s is in %s, reprojecting to %s", location, gdf.crs.to_string(), CRS)
        gdf = gdf.to_crs(CRS)
    return gdf


def check_pedons(gdf: gpd.GeoDataFrame, location: str) -> gpd.GeoDataFrame:
    """Validate columns and values; drop pedons with neither label (warning with the count)."""
    missing = [c for c in ("pedon_id", "permafrost", "soil_order", "geometry") if c not in gdf.columns]
    if missing:
        raise LabelsError(f"{location}: missing column(s) {missing}; have {list(gdf.columns)}")
    gdf = _to_3338(gdf, location)
    if not (gdf.geom_type == "Point").all():
        bad = gdf.loc[gdf.geom_type != "Point", "pedon_id"].iloc[0]
        raise LabelsError(f"{location}: pedon {bad!r} is not a Point")
    if gdf["pedon_id"].duplicated().any():
        raise LabelsError(f"{location}: duplicate pedon_id "
                          f"{gdf.loc[gdf['pedon_id'].duplicated(), 'pedon_id'].iloc[0]!r}")
    pf = pd.to_numeric(gdf["permafrost"], errors="coerce").astype("Int8")
    bad_pf = gdf["permafrost"].notna() & ~pf.isin([0, 1])
    if bad_pf.any():
        row = gdf[bad_pf].iloc[0]
        raise LabelsError(f"{location}: pedon {row['pedon_id']!r} has permafrost="
                          f"{row['permafrost']}; expected 0, 1 or null")
    so = gdf["soil_order"].astype("string")
    bad_so = so.notna() & ~so.isin(SOIL_ORDERS)
    if bad_so.any():
        row = gdf[bad_so].iloc[0]
        raise LabelsError(f"{location}: pedon {row['pedon_id']!r} has soil_order="
                          f"{row['soil_order']!r}; expected one of {SOIL_ORDERS} or null")
    out = gpd.GeoDataFrame({"pedon_id": gdf["pedon_id"].astype(str), "permafrost": pf,
                            "soil_order": so}, geometry=gdf.geometry.values, crs=CRS)
    unlabelled = out["permafrost"].isna() & out["soil_order"].isna()
    if unlabelled.any():
        log.warning("%s: %d pedon(s) have neither permafrost nor soil_order, dropped (e.g. %s)",
                    location, int(unlabelled.sum()), list(out.loc[unlabelled, "pedon_id"][:3]))
    return out[~unlabelled].reset_index(drop=True)


def _tag(pedons: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame, column: str,
         location: str) -> pd.Series:
    if column not in polygons.columns:
        raise LabelsError(f"{location}: missing column {column!r}; have {list(polygons.columns)}")
    polygons = _to_3338(polygons, location)[[column, "geometry"]]
    joined = gpd.sjoin(pedons[["geometry"]], polygons, how="left", predicate="within")
    tag = joined[~joined.index.duplicated()][column].reindex(pedons.index).astype("string")
    if tag.isna().any():
        log.warning("%d pedon(s) fall in no %s polygon of %s", int(tag.isna().sum()), column, location)
    return tag


def read_labels(config: LabelsConfig, storage: StorageConfig) -> gpd.GeoDataFrame:
    """Pedons with `pedon_id`, `permafrost` (Int8), `soil_order` (string), `region`, `zone`
    (string, <NA> where unknown or not configured) and Point geometry in EPSG:3338."""
    loc = config.location("pedons")
    if not loc:
        raise LabelsError("labels.pedons (or labels.world) is not set in the run configuration")
    pedons = check_pedons(read_geoparquet(loc, storage), loc)
    if pedons.empty:
        raise LabelsError(f"{loc}: no labelled pedon left")
    for which, column in (("regions", "region"), ("zones", "zone")):
        poly_loc = config.location(which)
        if poly_loc:
            pedons[column] = _tag(pedons, read_geoparquet(poly_loc, storage), column, poly_loc)
        else:
            pedons[column] = pd.Series(pd.NA, index=pedons.index, dtype="string")
    log.info("read %d labelled pedons from %s", len(pedons), loc)
    return pedons
