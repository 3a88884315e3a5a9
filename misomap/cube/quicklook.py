"""A PNG a person can glance at: three cube bands as RGB, decimated, percentile-stretched."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - backend first
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

NODATA_RGB = (1.0, 0.0, 1.0)
"""Magenta: nodata stands apart from any stretched reflectance (black is a real dark pixel)."""


def quicklook_png(cube: xr.Dataset, bands: tuple[str, str, str], max_pixels: int = 768) -> bytes:
    """RGB PNG of `bands` (2-98 % stretch per band, nodata magenta with a legend entry), at most
    `max_pixels` wide/high, titled with the bands shown."""
    step = max(1, int(np.ceil(max(cube.sizes["y"], cube.sizes["x"]) / max_pixels)))
    rgb = cube["data"].sel(band=list(bands)).isel(y=slice(None, None, step), x=slice(None, None, step))
    arr = np.asarray(rgb.values, dtype=np.float32)
    out = np.zeros(arr.shape[1:] + (3,), np.float32)
    for i, layer in enumerate(arr):
        finite = layer[np.isfinite(layer)]
        if finite.size:
            lo, hi = np.percentile(finite, [2, 98])
            out[..., i] = np.clip((layer - lo) / max(hi - lo, 1e-9), 0, 1)
    out[~np.isfinite(arr).all(axis=0)] = NODATA_RGB
    fig, ax = plt.subplots(figsize=(6, 6 * out.shape[0] / max(out.shape[1], 1) + 0.4), dpi=100)
    ax.imshow(out, extent=(float(cube.x[0]), float(cube.x[-1]), float(cube.y[-1]), float(cube.y[0])))
    ax.set_title("cube RGB: " + " / ".join(bands), fontsize=9)
    ax.legend(handles=[Patch(facecolor=NODATA_RGB, edgecolor="0.3", label="no data")], fontsize=7,
              loc="upper right")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
