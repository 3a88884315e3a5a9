"""The Random Forest as a map predictor: one forest per target, applied pixel by pixel."""

from __future__ import annotations

import numpy as np

from misomap.core.classes import SOIL_ORDERS
from misomap.mapping.config import MapConfig
from misomap.mapping.layers import MapProbabilities
from misomap.models.rf import RFModel, loads_model, predict_chunk

TARGET_FILES = {"permafrost": "permafrost.skops", "soil_order": "soil_order.skops"}


def model_files(model_dir: str) -> list[str]:
    """The two skops files `misomap train-rf` writes into its model folder."""
    return [f"{model_dir.rstrip('/')}/{name}" for name in TARGET_FILES.values()]


class RFMapPredictor:
    """Per-pixel RF probabilities; needs no halo. Query points take their cube pixel's value."""

    halo_px = 0
    align_px = 1

    def __init__(self, permafrost: RFModel, soil_order: RFModel) -> None:
        self.permafrost, self.soil_order = permafrost, soil_order
        feats = dict.fromkeys(f for m in (permafrost, soil_order) for f in m.features if f not in ("x", "y"))
        self.bands = tuple(feats)

    def predict(self, window: np.ndarray, wx: np.ndarray, wy: np.ndarray,
                qx: np.ndarray, qy: np.ndarray) -> MapProbabilities:
        cols = np.clip(np.searchsorted(wx, qx - (wx[1] - wx[0]) / 2), 0, len(wx) - 1)
        rows = np.clip(np.searchsorted(-wy, -qy - (wy[0] - wy[1]) / 2), 0, len(wy) - 1)
        block = window[:, rows][:, :, cols]
        bands, x, y = list(self.bands), wx[cols], wy[rows]
        pf = predict_chunk(self.permafrost, block, bands, x, y)
        present = list(self.permafrost.classes).index("1")
        so_raw = predict_chunk(self.soil_order, block, bands, x, y)
        so = np.zeros((len(SOIL_ORDERS), *so_raw.shape[1:]), np.float32)
        for j, name in enumerate(self.soil_order.classes):
            so[SOIL_ORDERS.index(name)] = so_raw[j]
        so[:, np.isnan(so_raw[0])] = np.nan
        return MapProbabilities(pf[present], so)


def load_rf_predictor(blobs: dict[str, bytes], cfg: MapConfig) -> RFMapPredictor:
    """Build the predictor from the two skops files (untrusted types refused by loads_model)."""
    by_name = {path.rsplit("/", 1)[-1]: blob for path, blob in blobs.items()}
    models = {t: loads_model(by_name[f], source=f) for t, f in TARGET_FILES.items()}
    return RFMapPredictor(models["permafrost"], models["soil_order"])
