"""Imagery on the world's internal 15 m surface: Sentinel-2 L2A-like reflectance with its scene
classification, and Sentinel-1-like VV/VH backscatter, both driven by the truth.

Land cover follows the truth (tussock tundra and black spruce over permafrost, forest and shrubs
without, fens on peat, gravel bars on floodplains, burns), and the surface carries texture a
single pixel cannot show: ice-wedge polygon troughs (drawn at 60–90 m, exaggerated from the real
10–30 m so a 30 m cube still sees them), thermokarst ponds and shrub patches. Scenes add phenology,
spring snow (lingering in drifts), clouds, cirrus, cloud shadows and swath edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from misomap.demo.fields import gaussian_field, rng_for, sigmoid, upsample2, voronoi_edges
from misomap.demo.terrain import Terrain
from misomap.demo.truth import SOIL_ORDERS, Truth

S2_BANDS: tuple[tuple[str, str, float, float, str], ...] = (
    # asset key, ESA band, centre wavelength (µm), FWHM (µm), resolution class
    ("blue", "B02", 0.490, 0.098, "fine"),
    ("green", "B03", 0.560, 0.045, "fine"),
    ("red", "B04", 0.665, 0.038, "fine"),
    ("rededge1", "B05", 0.704, 0.019, "coarse"),
    ("rededge2", "B06", 0.740, 0.018, "coarse"),
    ("rededge3", "B07", 0.783, 0.028, "coarse"),
    ("nir", "B08", 0.842, 0.145, "fine"),
    ("nir08", "B8A", 0.865, 0.033, "coarse"),
    ("swir16", "B11", 1.610, 0.143, "coarse"),
    ("swir22", "B12", 2.190, 0.242, "coarse"),
)
S2_KEYS = tuple(b[0] for b in S2_BANDS)
COVERS = ("tussock", "black_spruce", "forest", "shrub", "fen", "gravel", "burn", "grass", "water")
_ENDMEMBERS = np.array([  # surface reflectance per cover, bands in S2_BANDS order
    [.035, .060, .055, .100, .200, .240, .260, .270, .220, .120],  # tussock tundra
    [.022, .038, .028, .065, .150, .185, .205, .215, .125, .058],  # black spruce and moss
    [.030, .055, .035, .090, .250, .320, .350, .360, .180, .080],  # birch / white spruce forest
    [.030, .062, .040, .105, .290, .370, .410, .420, .205, .090],  # willow / alder shrub
    [.030, .052, .046, .082, .160, .190, .200, .210, .115, .052],  # sedge fen on peat
    [.120, .150, .180, .200, .220, .230, .240, .250, .300, .260],  # gravel bars, rock
    [.030, .040, .050, .070, .100, .120, .130, .140, .180, .140],  # burn scar
    [.050, .080, .090, .130, .200, .230, .250, .260, .300, .200],  # grassland bluff
    [.050, .045, .030, .020, .015, .012, .010, .010, .005, .003],  # water
], dtype=np.float32)
_BROWN = np.array([.045, .065, .080, .110, .140, .155, .165, .170, .240, .170], np.float32)
_SNOW = np.array([.85, .83, .80, .78, .76, .74, .72, .70, .12, .08], np.float32)
_CLOUD = np.array([.60, .60, .61, .61, .62, .62, .62, .62, .45, .35], np.float32)

SCL_NODATA, SCL_SHADOW, SCL_VEG, SCL_BARE, SCL_WATER = 0, 3, 4, 5, 6
SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS, SCL_SNOW = 8, 9, 10, 11


@dataclass(frozen=True)
class Surface:
    """The 15 m surface every scene is drawn from (row 0 = north, twice the cube grid's size)."""

    covers: np.ndarray
    """(len(COVERS), H, W) cover fractions summing to 1."""
    elevation: np.ndarray
    drift: np.ndarray
    north_facing: np.ndarray
    water: np.ndarray
    roughness: np.ndarray
    """Microtopographic roughness 0..1 (ice-wedge troughs, shrubs) for radar."""
    moisture: np.ndarray


def make_surface(seed: int, terrain: Terrain, truth: Truth) -> Surface:
    """Cover fractions and texture at 15 m from the truth and terrain at 30 m."""
    rng = rng_for(seed, "surface")
    up = upsample2
    perm = up(truth.permafrost.astype(np.float32))
    order = up(truth.soil_order, order=0)
    water = up(terrain.water.astype(np.uint8), order=0).astype(bool)
    elev, slope = up(terrain.elevation), up(terrain.slope)
    fire, shrub, drift = up(truth.fire), up(truth.shrub), up(truth.snow_drift)
    organic = up(truth.organic)
    shape = elev.shape
    cold = np.clip((900.0 - elev) / 500.0, 0, 1)

    edges = voronoi_edges(rng, shape, cell_px=5.0)  # ~75 m polygons at 15 m
    polygons = (perm > 0.5) & (slope < 4.0) & ~water
    trough = polygons * np.exp(-(edges / 0.6) ** 2)
    thaw_margin = (perm > 0.2) & (perm < 0.8)
    ponds = (sigmoid(4 * gaussian_field(rng, shape, 2.0) - 7.0) * (thaw_margin | polygons)) > 0.35
    w = np.zeros((len(COVERS), *shape), np.float32)
    w[0] = perm * (1 - cold * 0.2) * (0.6 + 0.8 * (1 - cold))
    w[1] = perm * cold * 0.9
    w[2] = (1 - perm) * (0.9 + 0.4 * cold)
    w[3] = 0.15 + 1.6 * shrub * (1 - 0.5 * perm)
    w[4] = (order == SOIL_ORDERS.index("Histosols")) * 2.5 + organic * 1.2
    w[5] = (order == SOIL_ORDERS.index("Entisols")) * 1.2 + np.clip((slope - 25) / 10, 0, 2)
    w[6] = fire * 4.0
    w[7] = (order == SOIL_ORDERS.index("Mollisols")) * 3.0
    w = w / w.sum(axis=0, keepdims=True)
    wet = np.clip(0.45 * trough + ponds, 0, 1)
    w = w * (1 - wet) + np.eye(len(COVERS), dtype=np.float32)[:, -1:, None] * wet
    w[:, water] = 0.0
    w[-1, water] = 1.0
    rough = np.clip(0.2 + 0.6 * trough + 0.5 * up(truth.shrub) - 0.3 * water, 0, 1)
    aspect = up(terrain.aspect)
    north = (np.cos(np.radians(aspect)) * np.sin(np.radians(slope))).astype(np.float32)
    moisture = np.clip((up(terrain.twi) - 4.0) / 10.0 + 0.3 * organic, 0, 1)
    return Surface(covers=w.astype(np.float32), elevation=elev, drift=drift, north_facing=north,
                   water=water, roughness=rough.astype(np.float32), moisture=moisture.astype(np.float32))


def _greenness(day: date) -> float:
    """0 before leaf-out (late April), 1 from early July; phenology of the boreal and tundra."""
    doy = day.timetuple().tm_yday
    return float(np.clip((doy - 130) / 45.0, 0.0, 1.0))


def snow_fraction(surface: Surface, day: date) -> np.ndarray:
    """Spring snow: the snowline climbs from the valleys; drifts and north slopes keep snow longest."""
    doy = day.timetuple().tm_yday
    snowline = 120.0 + (doy - 115) * 24.0
    score = (surface.elevation - snowline) / 60.0 + 3.0 * surface.drift + 6.0 * surface.north_facing
    frac = sigmoid(score)
    frac[surface.water] = float(doy < 150)  # lake ice under snow until early June
    return frac.astype(np.float32)


@dataclass(frozen=True)
class Sky:
    """One acquisition's atmosphere and swath on the 15 m surface."""

    cloud: np.ndarray
    """Optical thickness proxy 0..1."""
    cirrus: np.ndarray
    shadow: np.ndarray
    valid: np.ndarray
    """Inside the swath."""


def make_sky(seed: int, tag: str, shape: tuple[int, int], res: float) -> Sky:
    """Clouds (cover drawn per date; a third of dates almost clear), cirrus, shadows, swath edge."""
    rng = rng_for(seed, "sky", tag)
    cover = 0.0 if rng.random() < 0.35 else float(rng.beta(1.3, 2.2))
    f = gaussian_field(rng, shape, 1500.0 / res, beta=4.0)
    thr = np.quantile(f, 1 - cover) if cover > 0 else np.inf
    cloud = np.clip((f - thr) * 2.0, 0, 1).astype(np.float32)
    cirrus = np.zeros(shape, np.float32)
    if rng.random() < 0.3:
        cirrus = np.clip(gaussian_field(rng, shape, 1500.0 / res) * 0.15, 0, 0.3).astype(np.float32)
    shift = int(rng.uniform(300.0, 900.0) / res)  # sun to the south: shadows fall north
    dx = int(rng.uniform(-200.0, 200.0) / res)
    shadow = np.roll(np.roll(cloud, -shift, axis=0), dx, axis=1)
    shadow[-shift:, :] = 0.0
    shadow = np.clip(shadow - cloud, 0, 1)
    valid = np.ones(shape, bool)
    if rng.random() < 0.35:  # swath edge crossing the world at the orbit's heading
        h, w = shape
        rows, cols = np.mgrid[0:h, 0:w]
        c0 = rng.uniform(0.2, 0.8) * w
        edge = c0 + (rows - h / 2) * np.tan(np.radians(12.0))
        valid = cols < edge if rng.random() < 0.5 else cols > edge
    return Sky(cloud=cloud, cirrus=cirrus, shadow=shadow.astype(np.float32), valid=valid)


def s2_scene(surface: Surface, sky: Sky, day: date, rng: np.random.Generator,
             ) -> tuple[np.ndarray, np.ndarray]:
    """Top-of-canopy reflectance (10, H, W) and the SCL classes for one acquisition."""
    g = _greenness(day)
    veg = _ENDMEMBERS.copy()
    veg[:8] = g * veg[:8] + (1 - g) * _BROWN
    refl = np.tensordot(veg, surface.covers, axes=([0], [0]))  # (10, H, W)
    snow = snow_fraction(surface, day) if g < 1.0 else np.zeros(surface.water.shape, np.float32)
    refl = refl * (1 - snow) + _SNOW[:, None, None] * snow
    refl = refl * (1 - 0.65 * sky.shadow) + sky.cirrus * np.linspace(0.12, 0.02, 10)[:, None, None]
    refl = refl * (1 - sky.cloud) + _CLOUD[:, None, None] * sky.cloud
    refl = refl + 0.004 * rng.standard_normal(refl.shape, dtype=np.float32)
    red, nir = refl[2], refl[6]
    ndvi = (nir - red) / (nir + red + 1e-6)
    scl = np.where(ndvi > 0.25, SCL_VEG, SCL_BARE).astype(np.uint8)
    scl[(surface.covers[-1] > 0.5) & (snow < 0.5)] = SCL_WATER
    scl[snow >= 0.5] = SCL_SNOW
    scl[sky.shadow > 0.3] = SCL_SHADOW
    scl[(sky.cirrus > 0.08) & (sky.cloud < 0.3)] = SCL_CIRRUS
    scl[sky.cloud >= 0.3] = SCL_CLOUD_MED
    scl[sky.cloud >= 0.6] = SCL_CLOUD_HIGH
    scl[~sky.valid] = SCL_NODATA
    return refl.astype(np.float32), scl


def s1_scene_db(surface: Surface, day: date) -> tuple[np.ndarray, np.ndarray]:
    """Speckle-free VV and VH gamma0 in dB: moisture, roughness, woody volume, snow and water."""
    woody = surface.covers[1] + surface.covers[2] + surface.covers[3]
    vv = -15.0 + 4.0 * surface.moisture + 4.0 * surface.roughness + 1.5 * woody
    vh = vv - 8.0 + 3.0 * woody
    g = _greenness(day)
    if g < 1.0:  # frozen or wet snow lowers backscatter in spring
        snow = snow_fraction(surface, day)
        vv, vh = vv - 3.0 * snow * (1 - g), vh - 3.0 * snow * (1 - g)
    vv = np.where(surface.water, -22.0, vv)
    vh = np.where(surface.water, -29.0, vh)
    return vv.astype(np.float32), vh.astype(np.float32)
