"""Labelled sample points: reading them, checking them against the map, and turning them into what
the estimators take.

The convention: the sample's GeoParquet (from `misomap assess sample`) gets one label column per
class layer assessed, filled by whoever visited the points with the class name: `label` for the
layer the sample was drawn on, `label_<layer>` for any layer (e.g. `label_soil_order_class`). The
value `none` marks a point outside the mapped population (open water on a land map): it counts
toward no class. Pedon files (`pedon_id`, `permafrost` 0/1, `soil_order`; docs/contracts.md §1) are
read too, but they are no probability sample: their figures are naive (each pedon weighs as if the
pedons were a simple random sample of the map).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from misomap.assess.estimators import StratifiedSample
from misomap.assess.maps import AssessError, MapLayer
from misomap.core.config_base import StorageConfig
from misomap.core.errors import MissingObjectError
from misomap.core.storage import Target
from misomap.mapping.layers import NODATA

log = logging.getLogger(__name__)

LABEL = "label"
NO_CLASS = "none"
DESIGN_COLUMNS = ("stratum", "stratum_pixels", "inclusion_probability", "design_strata", "map_digest", "layer")
PEDON_LABELS = {"permafrost_class": "permafrost", "soil_order_class": "soil_order"}
"""Which pedon column labels which map layer (docs/contracts.md §1)."""


@dataclass(frozen=True)
class LabelledPoints:
    """A labelled sample (or a pedon file) and whether it is a probability sample."""

    path: str
    table: gpd.GeoDataFrame

    @property
    def naive(self) -> bool:
        """True when the points carry no design (pedons, convenience points): figures are naive."""
        return "inclusion_probability" not in self.table.columns

    @property
    def sampled_layer(self) -> str | None:
        """The layer the sample was drawn on (its `label` column's layer)."""
        return None if self.naive else str(self.table["layer"].iloc[0])

    def label_column(self, layer: str) -> str | None:
        """The column holding `layer`'s labels, if any."""
        names = [f"{LABEL}_{layer}"] + ([LABEL] if layer == self.sampled_layer else [])
        names += [PEDON_LABELS[layer]] if self.naive and layer in PEDON_LABELS else []
        return next((c for c in names if c in self.table.columns and self.table[c].notna().any()), None)

    def check_digests(self, *maps: MapLayer) -> None:
        """Refuse a sample drawn for other maps: its map digest (and a disagreement design's second
        digest) must be among the digests of the maps assessed."""
        if self.naive:
            return
        digests = {m.digest for m in maps}
        drawn = {str(v) for c in ("map_digest", "versus_digest") if c in self.table for v in self.table[c].unique()}
        if not drawn & digests or (len(maps) > 1 and len(drawn) > 1 and not drawn <= digests):
            raise AssessError(f"{self.path} was drawn for another map (digest {min(drawn)[:16]}…, "
                              f"the map{'s have' if len(maps) > 1 else ' has'} "
                              f"{', '.join(sorted(d[:16] + '…' for d in digests))}): draw a sample of this map "
                              "with `misomap assess sample`")

    def locate(self, layer: MapLayer) -> tuple[np.ndarray, np.ndarray]:
        """The map's class code and the flat pixel index at every point; refuses points outside the
        map or on its nodata."""
        geom = self.table.geometry.to_crs(layer.grid.crs)
        row, col, inside = layer.rowcol(geom.x.to_numpy(), geom.y.to_numpy())
        if not inside.all():
            raise AssessError(f"{self.path}: point {self._id(np.flatnonzero(~inside)[0])} lies outside the map "
                              f"{layer.url}")
        codes = layer.codes[row, col]
        if (codes == NODATA).any():
            bad = np.flatnonzero(codes == NODATA)
            raise AssessError(f"{self.path}: point {self._id(bad[0])} (and {len(bad) - 1} more) lies on nodata of "
                              f"{layer.layer} in {layer.url}: it is outside the mapped population")
        return codes.astype(np.int64), row * layer.grid.width + col

    def _id(self, i: int) -> str:
        row = self.table.iloc[i]
        return str(row["point_id"] if "point_id" in row else row.get("pedon_id", i))

    def reference(self, layer: str, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Reference class codes of `layer` (-1 for `none`) and which points carry a label; a design
        sample must be labelled at every point, a pedon file may leave some out."""
        column = self.label_column(layer)
        if column is None:
            raise AssessError(f"{self.path} has no label column for {layer} (`label_{layer}`)")
        values = self.table[column]
        if column == PEDON_LABELS.get(layer) and layer == "permafrost_class":
            values = pd.to_numeric(values, errors="coerce").map({0: classes[0], 1: classes[1]})
        present = values.notna().to_numpy()
        if not self.naive and not present.all():
            raise AssessError(f"{self.path}: {int((~present).sum())} point(s) have no {column}, e.g. point "
                              f"{self._id(np.flatnonzero(~present)[0])}: label every point (`{NO_CLASS}` for a "
                              "point outside the mapped population)")
        lookup = {name: i for i, name in enumerate(classes)} | {NO_CLASS: -1}
        text = values.astype("string").str.strip()
        unknown = present & ~text.isin(list(lookup)).fillna(False).to_numpy()
        if unknown.any():
            i = np.flatnonzero(unknown)[0]
            raise AssessError(f"{self.path}: point {self._id(i)} has {column}={values.iloc[i]!r}, not a class of "
                              f"{layer}; use one of {list(classes) + [NO_CLASS]}")
        codes = np.array([lookup[v] if ok else -1 for v, ok in zip(text.fillna(NO_CLASS), present)], np.int64)
        return codes, present

    def design(self, keep: np.ndarray) -> StratifiedSample:
        """The stratified design of the kept points; refuses a stratum with fewer than 2 labels."""
        table = self.table[keep]
        names, stratum = np.unique(table["stratum"].astype(str).to_numpy(), return_inverse=True)
        pixels = table.groupby(stratum)["stratum_pixels"].agg(["min", "max"])
        if (pixels["min"] != pixels["max"]).any():
            raise AssessError(f"{self.path}: stratum_pixels differs within a stratum: the design columns were edited")
        sample = StratifiedSample(stratum.astype(np.int64), pixels["min"].to_numpy(np.int64))
        if len(names) != int(table["design_strata"].iloc[0]):
            raise AssessError(f"{self.path} holds points of {len(names)} strata, the design drew "
                              f"{int(table['design_strata'].iloc[0])}: a stratum's points were removed; every "
                              "stratum needs at least 2 labelled points")
        few = (sample.n_h < 2) & (sample.n_h < sample.pixels)
        if few.any():
            h = int(np.flatnonzero(few)[0])
            raise AssessError(f"{self.path}: stratum {names[h]!r} has {sample.n_h[h]} labelled point(s); its "
                              "variance needs at least 2: label more points of it or draw a new sample")
        return sample


def naive_design(points: int, map_pixels: np.ndarray) -> StratifiedSample:
    """Pedons weighed as if they were a simple random sample of the map's pixels (they are not)."""
    return StratifiedSample(np.zeros(points, np.int64), np.array([int(np.sum(map_pixels))]))


def read_points(path: str, storage: StorageConfig | None = None) -> LabelledPoints:
    """A labelled sample or pedon file (GeoParquet); refuses one that is neither."""
    try:
        table = gpd.read_parquet(io.BytesIO(Target(path, storage or StorageConfig()).read_bytes()))
    except MissingObjectError as err:
        raise AssessError(str(err)) from None
    except (ValueError, OSError) as err:
        raise AssessError(f"{path} is not a readable GeoParquet file: {err}") from None
    if not len(table):
        raise AssessError(f"{path} holds no points")
    has_design = [c for c in DESIGN_COLUMNS if c in table.columns]
    if has_design and len(has_design) < len(DESIGN_COLUMNS):
        missing = sorted(set(DESIGN_COLUMNS) - set(has_design))
        raise AssessError(f"{path} lacks the design column(s) {missing} of a `misomap assess sample` file")
    if not (table.geom_type == "Point").all():
        raise AssessError(f"{path}: every row must be a point")
    if table.crs is None:
        raise AssessError(f"{path} has no CRS")
    return LabelledPoints(path, table)


def label_from_raster(table: gpd.GeoDataFrame, layer: MapLayer, raster: np.ndarray, column: str,
                      nodata: int = NODATA) -> gpd.GeoDataFrame:
    """`table` with `column` filled from a class raster on the map's grid (codes in `layer.classes`
    order; `nodata` becomes `none`): reference labels where a truth raster exists (the demo world)."""
    row, col, inside = layer.rowcol(table.geometry.x.to_numpy(), table.geometry.y.to_numpy())
    if not inside.all() or raster.shape != layer.codes.shape:
        raise AssessError(f"the truth raster ({raster.shape}) does not cover the points of {layer.url}")
    codes = raster[row, col]
    names = np.array(list(layer.classes) + [NO_CLASS], dtype=object)
    return table.assign(**{column: names[np.where(codes == nodata, len(layer.classes), codes)]})
