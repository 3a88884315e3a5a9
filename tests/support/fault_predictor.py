"""A small deterministic predictor over bands a built test cube has (elevation, slope): for fault and
bad-input tests of the map job, not a model. Importable by dask workers from tests/."""

from __future__ import annotations

import numpy as np

from misomap.core.classes import SOIL_ORDERS
from misomap.mapping.layers import MapProbabilities


class CubeBandsPredictor:
    bands = ("elevation", "slope")
    halo_px = 0
    align_px = 1

    def predict(self, window, wx, wy, qx, qy):
        cols = np.clip(np.searchsorted(wx, qx), 0, len(wx) - 1)
        rows = np.clip(np.searchsorted(-wy, -qy), 0, len(wy) - 1)
        elev = window[0][np.ix_(rows, cols)]
        slope = window[1][np.ix_(rows, cols)]
        pf = 1.0 / (1.0 + np.exp(-(elev - 200.0) / 30.0))
        logits = np.stack([np.nan_to_num(slope, nan=0.0) * (k - 3) / 10.0 for k in range(len(SOIL_ORDERS))])
        so = np.exp(logits - logits.max(axis=0))
        so = so / so.sum(axis=0)
        so[:, np.isnan(elev)] = np.nan
        return MapProbabilities(pf.astype(np.float32), so.astype(np.float32))


def factory(blob: bytes, cfg) -> CubeBandsPredictor:
    return CubeBandsPredictor()


class EastFailsPredictor(CubeBandsPredictor):
    """Fails on every block east of the cube's middle: a model that breaks on some chunks."""

    def predict(self, window, wx, wy, qx, qy):
        if qx.min() > 200_480.0:
            raise ValueError("injected model failure")
        return super().predict(window, wx, wy, qx, qy)


def failing_factory(blob: bytes, cfg) -> EastFailsPredictor:
    return EastFailsPredictor()
