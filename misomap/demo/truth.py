"""Truth: near-surface permafrost and soil order from a physically motivated rule.

The latent ground-temperature index is a TTOP-like balance of thawing and freezing indices with
n-factors, split explicitly into a pixel-local part (computable from the covariates at the pixel)
and a contextual part (taliks near water, snow drifted into lee slopes, fire scars, organic layers
that build up in basins), plus noise; the split's variance shares are reported in world.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from misomap.demo.climate import Climate
from misomap.demo.fields import gaussian_field, rng_for, sigmoid, smooth
from misomap.core.classes import SOIL_ORDERS
from misomap.demo.spec import VOLCANO_LONLAT
from misomap.demo.terrain import Terrain

ZONES = ("continuous", "discontinuous", "sporadic", "isolated")
REGIONS = ("Brooks Range Mountains", "Koyukuk Foothills", "Interior Uplands", "Koyukuk Lowlands")
NODATA_CLASS = 255
TARGET_PERMAFROST_FRACTION = 0.48
"""Share of land with permafrost within 1 m; the rule's offset is calibrated to it."""


@dataclass(frozen=True)
class Truth:
    """Truth rasters on the cube grid (row 0 = north) and the context layers behind them."""

    permafrost: np.ndarray
    """uint8, 1 present within 1 m, 0 absent (water bodies: 0)."""
    soil_order: np.ndarray
    """uint8 index into SOIL_ORDERS; NODATA_CLASS on water."""
    zone: np.ndarray
    """uint8 index into ZONES."""
    region: np.ndarray
    """uint8 index into REGIONS."""
    ground_index: np.ndarray
    """Latent ground-temperature index (°C-like; permafrost where < 0)."""
    organic: np.ndarray
    """Organic-layer thickness (m)."""
    fire: np.ndarray
    """Burn severity 0..1 of recent fire scars."""
    snow_drift: np.ndarray
    """Extra winter snow (relative, 0..~1) drifted into lee slopes and hollows."""
    floodplain: np.ndarray
    ash: np.ndarray
    """Volcanic ash thickness (cm)."""
    shrub: np.ndarray
    """Shrub-patch cover 0..1."""
    variance_shares: dict[str, float] = field(default_factory=dict)


def _distance_m(mask: np.ndarray, res: float) -> np.ndarray:
    if not mask.any():
        return np.full(mask.shape, 1e6, np.float32)
    return (ndimage.distance_transform_edt(~mask) * res).astype(np.float32)


def _snow_drift(terrain: Terrain, res: float) -> np.ndarray:
    """Snow blown by westerly winter winds off exposed ground into sheltered lee positions."""
    z = terrain.elevation
    reach = int(round(300.0 / res))
    upwind = np.full(z.shape, -np.inf, np.float32)
    for k in range(1, reach + 1):  # highest ground within `reach` to the west
        shifted = np.concatenate([np.repeat(z[:, :1], k, axis=1), z[:, :-k]], axis=1)
        upwind = np.maximum(upwind, shifted)
    shelter = np.clip(upwind - z, 0, 60.0) / 60.0
    exposure = np.clip(terrain.tpi, 0, 40.0) / 40.0
    return np.clip(smooth(shelter, 1.5) - 0.5 * exposure, 0, 1).astype(np.float32)


def _fire_scars(rng: np.random.Generator, shape: tuple[int, int], res: float) -> np.ndarray:
    """Elliptical burns (more in the warmer south), with patchy severity inside."""
    h, w = shape
    severity = np.zeros(shape, np.float32)
    n = max(2, int(h * w * res * res / 25e6))
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(n):
        r0 = h * rng.beta(3.0, 1.6)
        c0 = rng.uniform(0, w)
        a, b = rng.uniform(400, 1600) / res, rng.uniform(250, 900) / res
        th = rng.uniform(0, np.pi)
        dr, dc = rows - r0, cols - c0
        u = (dc * np.cos(th) + dr * np.sin(th)) / a
        v = (-dc * np.sin(th) + dr * np.cos(th)) / b
        severity = np.maximum(severity, np.clip(1.5 - (u**2 + v**2), 0, 1))
    patch = sigmoid(2.5 * gaussian_field(rng, shape, 4.0))
    return np.clip(severity * patch * 1.3, 0, 1).astype(np.float32)


def _ash(shape: tuple[int, int], grid_xy: tuple[np.ndarray, np.ndarray],
         rng: np.random.Generator) -> np.ndarray:
    """Ash thickness (cm) thinning away from a south-western volcanic source, patchy by erosion."""
    from pyproj import Transformer

    vx, vy = Transformer.from_crs(4326, 3338, always_xy=True).transform(*VOLCANO_LONLAT)
    x, y = grid_xy
    d_km = np.hypot(x[None, :] - vx, y[:, None] - vy) / 1000.0
    d_rel = d_km - d_km.min()
    span = max(float(d_rel.max()), 1e-6)
    base = 60.0 * np.exp(-d_rel / (0.35 * span))
    return np.clip(base * (1 + 0.5 * gaussian_field(rng, shape, 20.0)), 0, None).astype(np.float32)


def _polygon_classes(perm: np.ndarray, terrain: Terrain, climate: Climate) -> tuple[np.ndarray, ...]:
    """Permafrost zones from the landscape-scale permafrost fraction; MLRA-like regions."""
    h, w = perm.shape
    frac = smooth(perm.astype(np.float32), max(h, w) / 10)
    zone = np.select([frac >= 0.9, frac >= 0.5, frac >= 0.1], [0, 1, 2], 3).astype(np.uint8)
    z = smooth(terrain.elevation, max(h, w) / 25)
    lat = climate.latitude
    north = lat > np.median(lat)
    high = z > np.quantile(z, 0.6)
    region = np.select([north & high, north, high], [0, 1, 2], 3).astype(np.uint8)
    return zone, region


def make_truth(seed: int, terrain: Terrain, climate: Climate, res: float,
               grid_xy: tuple[np.ndarray, np.ndarray]) -> Truth:
    """Permafrost, soil order, zones and regions from climate, terrain and landscape context."""
    rng = rng_for(seed, "truth")
    shape = terrain.elevation.shape
    water = terrain.water
    land = ~water

    # --- pixel-local balance: thawing vs freezing index, insolation, soil wetness
    ti = 105.0 * climate.summer_warmth  # thawing degree-days
    fi = 95.0 * -climate.jan_min_temp  # freezing degree-days
    sl, asp = np.radians(terrain.slope), np.radians(terrain.aspect)
    insolation = np.sin(sl) * -np.cos(asp)  # + on south-facing, - on north-facing slopes
    wet = np.clip((terrain.twi - 6.0) / 8.0, 0, 1)
    local = (0.9 * (1 + 0.9 * insolation) * ti * (1 - 0.15 * wet) - 0.55 * fi) / 365.0

    # --- contextual: organic layers, snow drift, taliks, fire scars
    basin = smooth(wet, 200.0 / res) * np.clip(1 - terrain.slope / 8.0, 0, 1)
    organic = np.clip(0.05 + 0.9 * basin**1.5 + 0.05 * gaussian_field(rng, shape, 8.0), 0.0, 1.5)
    drift = _snow_drift(terrain, res)
    fire = _fire_scars(rng, shape, res)
    d_lake, d_river = _distance_m(terrain.lake, res), _distance_m(terrain.river, res)
    big_lake = ndimage.binary_erosion(terrain.lake, iterations=2)
    talik = 3.0 * np.exp(-d_lake / 90.0) + 2.0 * np.exp(-d_river / 60.0) + 2.0 * big_lake
    organic = organic * (1 - 0.7 * fire)
    context = (-0.9 * (1 - 0.85 * fire) * ti * 0.9 * organic / 365.0 + 2.2 * drift + talik + 2.5 * fire)
    noise = 0.6 * gaussian_field(rng, shape, 3.0) + 0.3 * rng.standard_normal(shape).astype(np.float32)

    raw = local + context + noise
    offset = float(np.quantile(raw[land], TARGET_PERMAFROST_FRACTION))
    g = (raw - offset).astype(np.float32)
    perm = ((g < 0) & land).astype(np.uint8)

    parts = {"pixel_local": local[land], "contextual": context[land], "noise": noise[land]}
    total = float(np.var(raw[land]))
    shares = {k: round(float(np.var(v)) / total, 3) for k, v in parts.items()}
    shares["covariance"] = round(1.0 - sum(shares.values()), 3)

    # --- soil order
    floodplain = (d_river < 500.0) & (terrain.elevation - ndimage.grey_erosion(
        terrain.elevation, size=int(900 / res) | 1) < 6.0) & land
    ash = _ash(shape, grid_xy, rng)
    coarse = gaussian_field(rng, shape, 2000.0 / res) + 0.02 * (terrain.elevation - 600) / 10 > 0.9
    warm_dry = (climate.summer_warmth > np.quantile(climate.summer_warmth, 0.6))
    south_bluff = (terrain.slope > 12) & (np.abs(terrain.aspect - 180.0) < 40.0) & warm_dry
    order = np.full(shape, SOIL_ORDERS.index("Inceptisols"), np.uint8)
    rules = [  # later rules win
        (coarse & (climate.precip_annual > 380) & (wet < 0.5), "Spodosols"),
        ((terrain.slope > 24) | floodplain, "Entisols"),
        ((ash > 45.0) & (wet < 0.4) & ~floodplain, "Andisols"),
        (south_bluff & (terrain.tpi > 0) & (sigmoid(2 * gaussian_field(rng, shape, 6.0)) > 0.6),
         "Mollisols"),
        (organic > 0.17, "Histosols"),
        (perm == 1, "Gelisols"),
    ]
    for mask, name in rules:
        order[mask] = SOIL_ORDERS.index(name)
    order[water] = NODATA_CLASS

    zone, region = _polygon_classes(perm, terrain, climate)
    shrub = np.clip(sigmoid(3 * gaussian_field(rng, shape, 5.0) - 1.5) + 0.6 * drift
                    + 0.5 * floodplain, 0, 1)
    return Truth(permafrost=perm, soil_order=order, zone=zone, region=region, ground_index=g,
                 organic=organic.astype(np.float32), fire=fire, snow_drift=drift,
                 floodplain=floodplain, ash=ash, shrub=shrub.astype(np.float32),
                 variance_shares=shares)
