"""The cube quicklook paints nodata apart (magenta, legend entry), never as a dark pixel."""

from __future__ import annotations

import io

import numpy as np
import xarray as xr
from PIL import Image

from misomap.cube.quicklook import quicklook_png


def _magenta_share(png: bytes) -> float:
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return float(np.all(np.abs(img - (255, 0, 255)) <= 2, axis=-1).mean())


def test_cube_quicklook_paints_nodata_magenta():
    rng = np.random.default_rng(1)
    data = rng.random((3, 60, 60)).astype(np.float32)
    cube = xr.Dataset({"data": (("band", "y", "x"), data)},
                      coords={"band": ["red", "green", "blue"], "y": np.arange(60)[::-1] * 30.0,
                              "x": np.arange(60) * 30.0})
    full = _magenta_share(quicklook_png(cube, ("red", "green", "blue")))
    cube["data"][:, :30, :] = np.nan
    gap = _magenta_share(quicklook_png(cube, ("red", "green", "blue")))
    assert 0 < full < 0.01 and gap > full + 0.1, (full, gap)  # legend swatch only, then half the image
