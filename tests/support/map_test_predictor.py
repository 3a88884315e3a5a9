"""A small deterministic predictor for testing the map job's machinery (not a model).

It uses a halo: the permafrost probability depends on the mean of band 0 over a 3x3 neighbourhood,
so wrong halo handling shows up as seams between chunks.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from misomap.mapping.config import MapConfig
from misomap.mapping.layers import MapProbabilities

N_ORDERS = 7


class NeighbourhoodPredictor:
    bands = ("b0", "b1")
    halo_px = 2
    align_px = 1

    def predict(self, window, wx, wy, qx, qy):
        smooth = uniform_filter(np.nan_to_num(window[0], nan=0.0), size=3, mode="nearest")
        smooth[np.isnan(window[0])] = np.nan
        cols = np.searchsorted(wx, qx)
        rows = np.searchsorted(-wy, -qy)
        pf = 1.0 / (1.0 + np.exp(-smooth[np.ix_(rows, cols)]))
        b1 = window[1][np.ix_(rows, cols)]
        logits = np.stack([b1 * (k - 3) / 3.0 for k in range(N_ORDERS)])
        so = np.exp(logits - np.nanmax(logits, axis=0))
        so = so / so.sum(axis=0)
        return MapProbabilities(pf.astype(np.float32), so.astype(np.float32))


def factory(blob: bytes, cfg: MapConfig) -> NeighbourhoodPredictor:
    return NeighbourhoodPredictor()
