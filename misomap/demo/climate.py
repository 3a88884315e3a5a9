"""Climate normals: annual precipitation, summer warmth and January minimum temperature, driven by
(virtual) latitude, elevation, continentality and winter cold-air pooling in valleys."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from misomap.demo.fields import gaussian_field, rng_for, smooth
from misomap.demo.spec import VIRTUAL_LATITUDE
from misomap.demo.terrain import Terrain

CLIMATE_ASSETS = ("precip_annual", "summer_warmth", "jan_min_temp")


@dataclass(frozen=True)
class Climate:
    """Climate layers on the cube grid: mm/yr, °C (June–August mean), °C (January mean minimum)."""

    precip_annual: np.ndarray
    summer_warmth: np.ndarray
    jan_min_temp: np.ndarray
    latitude: np.ndarray
    """The virtual latitude per row (the compressed north–south gradient)."""

    def covariates(self) -> dict[str, np.ndarray]:
        """The published climate assets, float32, keyed by STAC asset key."""
        return {k: getattr(self, k).astype(np.float32) for k in CLIMATE_ASSETS}


def make_climate(seed: int, terrain: Terrain, res: float) -> Climate:
    """Lapse rates, a latitude gradient, and inversions: winter valleys colder than mid-slopes."""
    rng = rng_for(seed, "climate")
    z = terrain.elevation
    h, w = z.shape
    lat_n, lat_s = VIRTUAL_LATITUDE
    lat = np.linspace(lat_n, lat_s, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    cont = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]  # more continental to the east
    above_valley = z - smooth(z, 1500.0 / res)  # relative height within the landscape
    inversion = 0.012 * np.clip(above_valley, -150, 250)
    jan = (-31.0 - 5.0 * (lat - 66.0) - 2.5 * cont + inversion - 0.003 * np.clip(z - 900.0, 0, None)
           + 0.8 * gaussian_field(rng, z.shape, 60.0))
    summer = (13.6 - 2.2 * (lat - 66.0) - 0.0055 * (z - 300.0) + 0.8 * cont
              + 0.3 * gaussian_field(rng, z.shape, 60.0))
    precip = (260.0 + 0.32 * z + 40.0 * (lat - 66.0) - 60.0 * cont
              + 25.0 * gaussian_field(rng, z.shape, 80.0))
    return Climate(precip_annual=np.maximum(precip, 120.0).astype(np.float32),
                   summer_warmth=summer.astype(np.float32), jan_min_temp=jan.astype(np.float32),
                   latitude=lat)
