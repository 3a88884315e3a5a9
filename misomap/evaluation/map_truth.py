"""Score a finished map against the demo world's truth rasters: overall accuracy, per-class
recall and macro F1 of the permafrost and soil-order classes over every land pixel, and the same
by region, permafrost zone and distance to the nearest labelled pedon (the pedons the final map
model was trained on). Any model's map (RF, MISO, ablations) is scored the same way.

`map_vs_truth(map_url, world)` returns one long table; the demo and `misomap experiment` call it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from scipy.spatial import cKDTree
from sklearn.metrics import precision_recall_fscore_support

from misomap.core.classes import SOIL_ORDERS
from misomap.core.config_base import StorageConfig
from misomap.core.storage import Target
from misomap.core.errors import MisomapError
from misomap.labels.pedons import read_geoparquet

log = logging.getLogger(__name__)

TRUTH_NODATA = 255
TASKS = {"permafrost": ("permafrost_class", ("absent", "present")),
         "soil_order": ("soil_order_class", SOIL_ORDERS)}
"""Target → (map layer, class names by code) for the truth rasters' codes."""
DISTANCE_QUANTILES = (1 / 3, 2 / 3)
INPUT_GROUPS = ("all inputs", "filled")
"""Groups of `by = inputs`: pixels with every input the model reads, and pixels predicted without
some (misomap.core.inputs: no clear optical observation)."""


class MapTruthError(MisomapError):
    """A map cannot be scored against a world's truth; the message names the file at fault."""


def _truth_raster(world: str, manifest: dict, name: str, storage: StorageConfig) -> tuple[np.ndarray, tuple]:
    rel = manifest["paths"].get(f"truth_{name}")
    if rel is None:
        raise MapTruthError(f"{world}/world.json lists no truth_{name} raster: is it a demo world?")
    loc = f"{world}/{rel}"
    with rasterio.MemoryFile(Target(loc, storage).read_bytes()) as mem, mem.open() as src:
        return src.read(1), tuple(src.transform)[:6]


def truth_raster(world: str, name: str, storage: StorageConfig | None = None) -> np.ndarray:
    """One truth raster of a demo world (`permafrost`, `soil_order`, `permafrost_zone`, `region`)."""
    storage = storage or StorageConfig()
    manifest = json.loads(Target(f"{world.rstrip('/')}/world.json", storage).read_bytes())
    return _truth_raster(world.rstrip("/"), manifest, name, storage)[0]


def _score(truth: np.ndarray, pred: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    present = [i for i in range(len(classes)) if (truth == i).any()]
    out = {"n": float(len(truth)), "accuracy": float(np.mean(truth == pred)) if len(truth) else np.nan}
    if not present:
        return out | {"recall_macro": np.nan, "f1_macro": np.nan}
    _, r, f, _ = precision_recall_fscore_support(truth, pred, labels=present, average="macro", zero_division=0)
    out |= {"recall_macro": float(r), "f1_macro": float(f)}
    _, rec, _, _ = precision_recall_fscore_support(truth, pred, labels=list(range(len(classes))),
                                                   average=None, zero_division=0)
    return out | {f"recall_{c}": (float(rec[i]) if i in present else np.nan) for i, c in enumerate(classes)}


def filled_pixels(codes: np.ndarray) -> np.ndarray:
    """True where a mapped pixel's `inputs_used` code lacks a group present elsewhere in the map
    (the groups the model reads are the union of the codes it wrote)."""
    codes = np.asarray(codes, np.uint8)
    full = np.bitwise_or.reduce(codes) if codes.size else np.uint8(0)
    return codes != full


def distance_bins(distance_m: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Terciles of the distance to the nearest pedon (rounded to 10 m): near, middle, far."""
    edges = np.round(np.quantile(distance_m, DISTANCE_QUANTILES), -1)
    names = [f"near (<{edges[0]:g} m)", f"middle ({edges[0]:g}-{edges[1]:g} m)", f"far (>={edges[1]:g} m)"]
    return np.searchsorted(edges, distance_m, side="right"), names


def map_vs_truth(map_url: str, world: str | Path, storage: StorageConfig | None = None) -> pd.DataFrame:
    """Score the map at `map_url` (a misomap map.zarr) against the truth rasters of the demo world
    folder `world`. One row per (target, by, group): `by` is `all`, `region`, `zone` or `distance`
    (distance to the nearest labelled pedon, in terciles) or `inputs` (pixels with every input vs
    filled pixels, predicted without some: INPUT_GROUPS), with n (land pixels the map covers),
    accuracy, recall_macro, f1_macro and recall_<class>. Pixels where the map has no value are
    left out and counted in `coverage` (share of land pixels mapped)."""
    storage = storage or StorageConfig()
    world = str(world).rstrip("/")
    manifest = json.loads(Target(f"{world}/world.json", storage).read_bytes())
    try:
        ds = xr.open_zarr(Target(map_url, storage).zarr_store(read_only=True), mask_and_scale=False)
    except (FileNotFoundError, KeyError) as err:
        raise MapTruthError(f"no map at {map_url!r} ({err}): run `misomap predict` first") from None
    region, transform = _truth_raster(world, manifest, "region", storage)
    zone, _ = _truth_raster(world, manifest, "permafrost_zone", storage)
    if (ds.sizes["y"], ds.sizes["x"]) != region.shape:
        raise MapTruthError(f"{map_url} is {ds.sizes['y']}×{ds.sizes['x']} px, the truth of {world} "
                            f"{region.shape[0]}×{region.shape[1]}: map the world's own cube grid")
    res, x0, y0 = transform[0], transform[2], transform[5]
    if not (np.isclose(float(ds["x"][0]), x0 + res / 2) and np.isclose(float(ds["y"][0]), y0 - res / 2)):
        raise MapTruthError(f"{map_url} does not sit on the grid of {world}'s truth rasters")
    pedons = read_geoparquet(f"{world}/{manifest['paths']['pedons']}", storage)
    rows, cols = np.mgrid[0:region.shape[0], 0:region.shape[1]]
    px = np.stack([x0 + (cols.ravel() + 0.5) * res, y0 - (rows.ravel() + 0.5) * res], axis=1)
    region_names = manifest["truth_classes"]["region"]
    zone_names = manifest["truth_classes"]["permafrost_zone"]
    out = []
    for target, (layer, classes) in TASKS.items():
        labelled = pedons[pedons[target].notna()]
        tree = cKDTree(np.stack([labelled.geometry.x, labelled.geometry.y], axis=1))
        truth, _ = _truth_raster(world, manifest, target, storage)
        pred = ds[layer].values
        land = truth.ravel() != TRUTH_NODATA
        mapped = land & (pred.ravel() != TRUTH_NODATA)
        t, p = truth.ravel()[mapped].astype(int), pred.ravel()[mapped].astype(int)
        dist = tree.query(px[mapped], k=1)[0]
        dbin, dnames = distance_bins(dist)
        groups = {"region": (region.ravel()[mapped], region_names), "zone": (zone.ravel()[mapped], zone_names),
                  "distance": (dbin, dnames)}
        if "inputs_used" in ds:
            groups["inputs"] = (filled_pixels(ds["inputs_used"].values.ravel()[mapped]).astype(int),
                                INPUT_GROUPS)
        out.append({"target": target, "by": "all", "group": "all", "coverage": mapped.sum() / max(land.sum(), 1),
                    **_score(t, p, classes)})
        for by, (codes, names) in groups.items():
            for code in np.unique(codes):
                if code >= len(names):
                    continue
                m = codes == code
                out.append({"target": target, "by": by, "group": names[code], "coverage": np.nan,
                            **_score(t[m], p[m], classes)})
    log.info("scored %s against the truth of %s", map_url, world)
    return pd.DataFrame(out)


def truth_table_markdown(tables: dict[str, pd.DataFrame]) -> str:
    """Markdown of several models' map-vs-truth tables side by side: accuracy, macro recall and
    macro F1 per (target, by, group), one column group per model."""
    frames = []
    for model, df in tables.items():
        frames.append(df.set_index(["target", "by", "group"])[["accuracy", "recall_macro", "f1_macro"]]
                      .add_prefix(f"{model} "))
    wide = pd.concat(frames, axis=1).reset_index()
    head = "| " + " | ".join(wide.columns) + " |"
    rule = "|" + "|".join("---" for _ in wide.columns) + "|"
    body = ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |"
            for r in wide.itertuples(index=False)]
    return "\n".join([head, rule, *body])

