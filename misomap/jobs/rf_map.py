"""A small chunked RF map of the cube (until the map job replaces it): per cube chunk,
`misomap.models.rf.predict_chunk`, written window by window into GeoTIFFs turned into COGs —
P(permafrost) and the soil-order class (index into SOIL_ORDERS, 255 = nodata) — plus a
quicklook PNG."""

from __future__ import annotations

import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.windows import Window  # noqa: E402
from rio_cogeo.cogeo import cog_translate  # noqa: E402
from rio_cogeo.profiles import cog_profiles  # noqa: E402
from tqdm import tqdm  # noqa: E402

from misomap.jobs.evaluate import model_dir  # noqa: E402
from misomap.jobs.labels import SOIL_ORDERS, read_bytes, write_bytes  # noqa: E402
from misomap.jobs.training_table import cube_grid, cube_location, open_cube_data  # noqa: E402
from misomap.models.rf import RFModel, loads_model, predict_chunk  # noqa: E402

if TYPE_CHECKING:
    import xarray as xr

    from misomap.config import RunConfig

log = logging.getLogger(__name__)
CLASS_NODATA = 255


@dataclass(frozen=True)
class RFMapOutputs:
    """COG locations and the quicklook of one RF map."""

    permafrost: str
    soil_order: str
    quicklook: str


def _chunk_windows(data: xr.DataArray, default: int = 512) -> list[tuple[slice, slice]]:
    """(y, x) slices aligned with the cube's chunks."""
    if data.chunks:
        ys, xs = data.chunks[1], data.chunks[2]
    else:
        ys = [default] * (data.sizes["y"] // default) + [data.sizes["y"] % default]
        xs = [default] * (data.sizes["x"] // default) + [data.sizes["x"] % default]
    ey, ex = np.cumsum((0, *ys)), np.cumsum((0, *xs))
    return [(slice(int(a), int(b)), slice(int(c), int(d)))
            for a, b in zip(ey, ey[1:]) if b > a for c, d in zip(ex, ex[1:]) if d > c]


def _load(config: RunConfig, target: str) -> RFModel:
    loc = f"{model_dir(config.workdir, 'rf')}/{target}.skops"
    return loads_model(read_bytes(loc, config.storage), source=loc)


def _quicklook(pf_path: Path, so_path: Path, classes: tuple[str, ...]) -> bytes:
    with rasterio.open(pf_path) as a, rasterio.open(so_path) as b:
        step = max(1, max(a.width, a.height) // 800)
        pf = a.read(1, out_shape=(a.height // step or 1, a.width // step or 1), masked=True)
        so = b.read(1, out_shape=(b.height // step or 1, b.width // step or 1), masked=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    im = axes[0].imshow(pf, vmin=0, vmax=1, cmap="coolwarm")
    fig.colorbar(im, ax=axes[0], label="P(permafrost)")
    im2 = axes[1].imshow(so, vmin=-0.5, vmax=len(classes) - 0.5, cmap="tab10",
                         interpolation="nearest")
    cbar = fig.colorbar(im2, ax=axes[1], ticks=range(len(classes)))
    cbar.ax.set_yticklabels(classes, fontsize=7)
    for ax, title in zip(axes, ("RF permafrost probability", "RF soil order")):
        ax.set_title(title)
        ax.set_axis_off()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def predict_map(config: RunConfig) -> RFMapOutputs:
    """Map both targets over the whole cube with the saved forests; returns the COG locations."""
    data = open_cube_data(cube_location(config), config.storage)
    grid = cube_grid(data)
    bands = [str(b) for b in data["band"].values]
    pf_model, so_model = _load(config, "permafrost"), _load(config, "soil_order")
    present = pf_model.classes.index("1")
    # class index in the shared SOIL_ORDERS order, whatever subset the forest saw
    lut = np.array([SOIL_ORDERS.index(c) for c in so_model.classes], dtype=np.uint8)
    out = f"{model_dir(config.workdir, 'rf')}/map"
    profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=1,
                   crs=grid.crs, transform=grid.transform, tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate")
    with tempfile.TemporaryDirectory() as tmp:
        pf_path, so_path = Path(tmp, "pf.tif"), Path(tmp, "so.tif")
        with (rasterio.open(pf_path, "w", dtype="float32", nodata=np.nan, **profile) as pf_ds,
              rasterio.open(so_path, "w", dtype="uint8", nodata=CLASS_NODATA, **profile) as so_ds):
            for ys, xs in tqdm(_chunk_windows(data), desc="RF map chunks"):
                block = data[:, ys, xs].values.astype(np.float32)
                x, y = data["x"].values[xs], data["y"].values[ys]
                win = Window(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
                pf = predict_chunk(pf_model, block, bands, x, y)[present]
                so_prob = predict_chunk(so_model, block, bands, x, y)
                valid = np.isfinite(so_prob).all(axis=0)
                so = np.where(valid, lut[np.nan_to_num(so_prob).argmax(axis=0)], CLASS_NODATA)
                pf_ds.write(pf, 1, window=win)
                so_ds.write(so.astype(np.uint8), 1, window=win)
        outputs = {}
        for name, path in (("permafrost", pf_path), ("soil_order", so_path)):
            cog = Path(tmp, f"{name}_cog.tif")
            cog_translate(path, cog, cog_profiles.get("deflate"), quiet=True)
            outputs[name] = f"{out}/rf_{name}.tif"
            write_bytes(outputs[name], cog.read_bytes(), config.storage)
        ql = f"{out}/quicklook.png"
        write_bytes(ql, _quicklook(pf_path, so_path, SOIL_ORDERS), config.storage)
    log.info("RF map: %s, %s, quicklook %s", outputs["permafrost"], outputs["soil_order"], ql)
    return RFMapOutputs(outputs["permafrost"], outputs["soil_order"], ql)
