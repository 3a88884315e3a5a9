"""A small deterministic predictor whose "checkpoint" is a JSON file naming the cube bands it reads
(so a checkpoint for other bands can be tested). Machinery test helper, not a model.

It uses a 1 px halo (a 3x3 mean of the first band), so stale neighbours would show as seams.
"""

from __future__ import annotations

import json

import numpy as np
from scipy.ndimage import uniform_filter

from misomap.mapping.config import MapConfig
from misomap.mapping.layers import MapProbabilities

N_ORDERS = 7


class BandsPredictor:
    halo_px = 1
    align_px = 1

    def __init__(self, bands: tuple[str, ...], scale: float) -> None:
        self.bands, self.scale = bands, scale

    def predict(self, window, wx, wy, qx, qy):
        first = window[0]
        smooth = uniform_filter(np.nan_to_num(first, nan=0.0), size=3, mode="nearest")
        smooth[np.isnan(first)] = np.nan
        cols, rows = np.searchsorted(wx, qx), np.searchsorted(-wy, -qy)
        pf = 1.0 / (1.0 + np.exp(-(smooth[np.ix_(rows, cols)] - 0.2) * self.scale))
        second = window[1][np.ix_(rows, cols)]
        logits = np.stack([second * self.scale * (k - 3) for k in range(N_ORDERS)])
        so = np.exp(logits - np.nanmax(logits, axis=0))
        return MapProbabilities(pf.astype(np.float32), (so / so.sum(axis=0)).astype(np.float32))


def factory(blobs: dict[str, bytes], cfg: MapConfig) -> BandsPredictor:
    spec = json.loads(next(iter(blobs.values())))
    return BandsPredictor(tuple(spec["bands"]), float(spec.get("scale", 10.0)))
