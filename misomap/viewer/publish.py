"""Publish the static viewer beside a map's products: `<map>/viewer/` with the page, its vendored
JavaScript, `map.json` (layers, classes and colours from the single class list, grid) and
`pedons.geojson` (training labels with the fold each pedon was held out in).

The page reads `../cogs/<layer>.tif` with HTTP range requests, so the folder works as it is from
`misomap view` or from object storage; it contains no timestamps, so a rerun writes identical files.
"""

from __future__ import annotations

import json
import logging
import mimetypes
from importlib import resources
from typing import Any

import fsspec
import geopandas as gpd
import pandas as pd
from pyproj import CRS

from misomap.core.classes import PERMAFROST_CLASSES, SOIL_ORDERS
from misomap.core.config_base import StorageConfig
from misomap.core.errors import MisomapError, MissingObjectError
from misomap.core.storage import Target
from misomap.cube.grid import Grid
from misomap.labels.pedons import LabelsError
from misomap.labels.training_table import read_training
from misomap.mapping.config import MapConfig
from misomap.mapping.layers import CLASS_COLOURS, LAYERS, NODATA, NODATA_COLOUR

log = logging.getLogger(__name__)

VIEWER_DIR = "viewer"
PAGE = f"{VIEWER_DIR}/index.html"
MANIFEST = f"{VIEWER_DIR}/map.json"
PEDONS = f"{VIEWER_DIR}/pedons.geojson"
PROBABILITY_RAMP = [[0, [247, 251, 255]], [50, [107, 174, 214]], [100, [8, 48, 107]]]
ENTROPY_RAMP = [[0, [255, 255, 229]], [50, [254, 153, 41]], [100, [102, 37, 6]]]


def _hex(rgb: tuple[int, int, int] | list[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def manifest(grid: Grid, title: str, model: str) -> dict[str, Any]:
    """What the page needs to know about a map: layers, their COGs, classes, colours and grid."""
    if CRS.from_user_input(grid.crs).to_epsg() != 3338:
        raise MisomapError(f"the viewer shows EPSG:3338 maps; this map's grid is in {grid.crs}")
    layers = []
    for layer in LAYERS:
        entry: dict[str, Any] = {"name": layer.name, "title": layer.attrs["long_name"],
                                 "cog": f"../cogs/{layer.name}.tif", "nodata": NODATA,
                                 "nodata_colour": _hex(NODATA_COLOUR)}
        if layer.classes:
            entry["kind"] = "class"
            pairs = zip(layer.classes, CLASS_COLOURS[layer.name], strict=True)
            entry["classes"] = [{"value": i, "name": n, "colour": _hex(c)} for i, (n, c) in enumerate(pairs)]
        else:
            entry["kind"] = "probability"
            entry["units"] = "%"
            entry["ramp"] = ENTROPY_RAMP if layer.name.endswith("entropy") else PROBABILITY_RAMP
            if layer.per_class:
                entry["bands"] = list(SOIL_ORDERS)
        layers.append(entry)
    pedon_colours = {target: {n: _hex(c) for n, c in zip(names, CLASS_COLOURS[source], strict=True)}
                     for target, names, source in (("permafrost", PERMAFROST_CLASSES, "permafrost_class"),
                                                  ("soil_order", SOIL_ORDERS, "soil_order_class"))}
    return {"title": title, "model": model, "crs": "EPSG:3338", "bounds": list(grid.bounds),
            "resolution": grid.resolution, "layers": layers,
            "pedons": {"url": "pedons.geojson", "labels": {"permafrost": list(PERMAFROST_CLASSES),
                                                           "soil_order": list(SOIL_ORDERS)},
                       "colours": pedon_colours}}


def pedons_geojson(table: pd.DataFrame, folds: pd.DataFrame) -> dict[str, Any]:
    """Training pedons as GeoJSON (lon/lat, RFC 7946): labels, region/zone and per-scheme fold
    (-1: not used by that scheme). `table` has x/y in the map CRS; rows of `folds` align with it."""
    points = gpd.GeoSeries(gpd.points_from_xy(table["x"], table["y"]), crs="EPSG:3338").to_crs("EPSG:4326")
    schemes = [c for c in folds.columns if c != "pedon_id"]
    features = []
    for i, row in enumerate(table.itertuples(index=False)):
        pf = row.permafrost
        features.append({
            "type": "Feature",
            "geometry": {"type": "Point",
                         "coordinates": [round(points.iloc[i].x, 6), round(points.iloc[i].y, 6)]},
            "properties": {
                "pedon_id": str(row.pedon_id),
                "permafrost": None if pd.isna(pf) else PERMAFROST_CLASSES[int(pf)],
                "soil_order": None if pd.isna(row.soil_order) else str(row.soil_order),
                "region": None if pd.isna(row.region) else str(row.region),
                "zone": None if pd.isna(row.zone) else str(row.zone),
                "folds": {s: int(folds[s].iloc[i]) for s in schemes},
            }})
    return {"type": "FeatureCollection", "features": features}


def training_pedons(workdir: str, storage: StorageConfig) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The run's training table and folds (the pedons its models were scored on), if saved."""
    try:
        return read_training(workdir, storage)
    except (LabelsError, MissingObjectError) as err:
        log.info("viewer: no training pedons to show (%s)", err)
        return None


def static_files() -> dict[str, bytes]:
    """The page and its vendored JavaScript and licences, by path under `viewer/`."""
    root = resources.files("misomap.viewer") / "static"
    out: dict[str, bytes] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                out[f"{prefix}{child.name}"] = child.read_bytes()

    walk(root, "")
    return out


def _put(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write one file; on object storage with its Content-Type, so browsers render it from there."""
    kwargs = {}
    if "s3" in fs.protocol:
        kwargs["ContentType"] = mimetypes.guess_type(path)[0] or "application/octet-stream"
    else:
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, data, **kwargs)


def write_viewer(cfg: MapConfig, storage: StorageConfig, name: str, grid: Grid,
                 training: tuple[pd.DataFrame, pd.DataFrame] | None) -> str | None:
    """Write `<map output>/viewer/` for the map of run `name`, with the `training` pedons (table, folds)
    if any; return the page's URL (None: the map has no COGs, `map.cogs: false`, so there is nothing
    for the page to read)."""
    if not cfg.cogs:
        log.info("viewer: not published, the map has no COGs (map.cogs is false)")
        return None
    out = Target(cfg.output, storage)
    fs, root = out.fs, out.path
    files = {f"{VIEWER_DIR}/{k}": v for k, v in static_files().items()}
    doc = manifest(grid, f"{name} soil and permafrost map ({cfg.model})", cfg.model)
    if training is None:
        doc["pedons"] = None
    else:
        files[PEDONS] = json.dumps(pedons_geojson(*training), separators=(",", ":")).encode()
    files[MANIFEST] = json.dumps(doc).encode()
    for rel, data in files.items():  # the manifest last: a page without it says the map is incomplete
        _put(fs, f"{root}/{rel}", data)
    url = f"{cfg.output}/{PAGE}"
    log.info("map output %-24s %s", "viewer", url)
    return url
