"""The training table: the cube sampled at pedon locations (the pixel under the point, optionally
window mean/sd), joined to the labels and saved as GeoParquet, with the shared folds beside it."""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import xarray as xr

from misomap.core.config_base import StorageConfig
from misomap.core.errors import MisomapError
from misomap.core.storage import Target
from misomap.cube.reader import cube_data, cube_grid, data_check, open_cube
from misomap.labels.config import FoldsConfig, LabelsConfig
from misomap.labels.folds import make_folds
from misomap.labels.pedons import CRS, read_geoparquet, read_labels, write_parquet

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("pedon_id", "permafrost", "soil_order", "region", "zone", "x", "y", "row", "col")


class TrainingTableError(MisomapError):
    """The cube cannot be sampled at the pedons; the message names the cube, band or pedons."""


@dataclass(frozen=True)
class TrainingPaths:
    """Where the training table and folds of a run live (`<workdir>/training/`)."""

    table: str
    folds: str

    @classmethod
    def of(cls, workdir: str) -> TrainingPaths:
        return cls(f"{workdir}/training/table.parquet", f"{workdir}/training/folds.parquet")


def open_cube_data(location: str, storage: StorageConfig) -> xr.DataArray:
    """The cube's `data` array (band, y, x), checked against docs/contracts.md section 2."""
    return cube_data(open_cube(location, storage), location)


def sample_cube(data: xr.DataArray, pedons: gpd.GeoDataFrame, window: int = 1) -> gpd.GeoDataFrame:
    """One row per pedon inside the cube with a valid pixel: labels, x/y, row/col, one column per
    band (the pixel value) and, for window > 1, `<band>_wmean`/`<band>_wsd` over the window.

    Pedons outside the cube or on an all-nodata pixel are dropped with a warning naming them."""
    grid = cube_grid(data)
    if not pyproj.CRS.from_user_input(grid.crs).equals(pyproj.CRS.from_user_input(CRS), ignore_axis_order=True):
        raise TrainingTableError(f"the cube's CRS ({pyproj.CRS.from_user_input(grid.crs).name}) is not the "
                                 f"labels' {CRS}: build the cube in {CRS} (cube.crs)")
    px, py = pedons.geometry.x.to_numpy(), pedons.geometry.y.to_numpy()
    row, col = grid.rowcol(px, py)
    inside = (row >= 0) & (row < grid.height) & (col >= 0) & (col < grid.width)
    if not inside.any():
        raise TrainingTableError(f"none of the {len(pedons)} pedons lies inside the cube bounds "
                                 f"{grid.bounds} ({CRS})")
    if (~inside).any():
        log.warning("%d pedon(s) outside the cube, dropped: %s", int((~inside).sum()),
                    list(pedons.loc[~inside, "pedon_id"][:5]))
    pedons, row, col = pedons[inside].reset_index(drop=True), row[inside], col[inside]
    h = window // 2
    offs = np.arange(-h, h + 1)
    rr = np.clip(row[:, None, None] + offs[None, :, None], 0, grid.height - 1)
    cc = np.clip(col[:, None, None] + offs[None, None, :], 0, grid.width - 1)
    rr, cc = np.broadcast_arrays(rr, cc)
    if (check := data_check(data)) is not None:  # every chunk read is checked against its record
        check.points(data, rr, cc)
    n, w2 = len(row), window * window
    picked = data.isel(y=xr.DataArray(rr.reshape(-1), dims="p"),
                       x=xr.DataArray(cc.reshape(-1), dims="p")).values  # (band, n*w2)
    vals = picked.reshape(len(data["band"]), n, w2).astype(np.float32)
    centre = vals[:, :, w2 // 2]
    nodata = ~np.isfinite(centre).any(axis=0)
    if nodata.any():
        log.warning("%d pedon(s) on nodata pixels, dropped: %s", int(nodata.sum()),
                    list(pedons.loc[nodata, "pedon_id"][:5]))
    bands = [str(b) for b in data["band"].values]
    table = pd.DataFrame({
        "pedon_id": pedons["pedon_id"].astype(str), "permafrost": pedons["permafrost"],
        "soil_order": pedons["soil_order"], "region": pedons["region"], "zone": pedons["zone"],
        "x": px[inside], "y": py[inside], "row": row, "col": col})
    feats = {b: centre[i] for i, b in enumerate(bands)}
    if window > 1:
        with warnings.catch_warnings():  # all-NaN windows give NaN, which is what we want
            warnings.simplefilter("ignore", RuntimeWarning)
            feats |= {f"{b}_wmean": np.nanmean(vals[i], axis=1) for i, b in enumerate(bands)}
            feats |= {f"{b}_wsd": np.nanstd(vals[i], axis=1) for i, b in enumerate(bands)}
    table = pd.concat([table, pd.DataFrame(feats)], axis=1)[~nodata].reset_index(drop=True)
    if table.empty:
        raise TrainingTableError("every pedon inside the cube lies on a nodata pixel")
    return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(table["x"], table["y"]), crs=CRS)


def feature_bands(table: pd.DataFrame) -> list[str]:
    """The per-pixel band columns of a training table (cube bands, in cube order)."""
    return [c for c in table.columns if c not in LABEL_COLUMNS and c != "geometry"
            and not c.endswith(("_wmean", "_wsd"))]


def build_training_table(labels: LabelsConfig, folds_cfg: FoldsConfig, cube: str, workdir: str,
                         storage: StorageConfig, seed: int) -> TrainingPaths:
    """Sample the cube at the labelled pedons, save the table and the folds (seeded) beside it."""
    paths = TrainingPaths.of(workdir)
    pedons = read_labels(labels, storage)
    table = sample_cube(open_cube_data(cube, storage), pedons, labels.window)
    write_parquet(paths.table, table, storage)
    folds = make_folds(table, folds_cfg, seed)
    write_parquet(paths.folds, folds, storage)
    log.info("training table: %d pedons x %d bands from %s -> %s; folds %s", len(table),
             len(feature_bands(table)), cube, paths.table, list(folds.columns[1:]))
    return paths


def read_training(workdir: str, storage: StorageConfig) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """The saved training table and folds of a run, rows aligned by pedon_id."""
    paths = TrainingPaths.of(workdir)
    table = read_geoparquet(paths.table, storage)
    folds = pd.read_parquet(io.BytesIO(Target(paths.folds, storage).read_bytes()))
    if set(folds["pedon_id"]) != set(table["pedon_id"]):
        raise TrainingTableError(f"{paths.folds} and {paths.table} list different pedons; "
                                 "rebuild both with `misomap train-rf`")
    folds = folds.set_index("pedon_id").loc[table["pedon_id"]].reset_index()
    return table, folds
