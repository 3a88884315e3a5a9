"""Terrain: a DEM with ranges, valleys, flats, lakes and a river network, and the reference's
terrain covariates (aspect, elevation, max curvature, slope, stream power index, wetness, TPI)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from misomap.demo.fields import gaussian_field, normalise, rng_for, smooth

TERRAIN_ASSETS = ("elevation", "aspect", "slope", "max_curvature", "spi", "twi", "tpi")


@dataclass(frozen=True)
class Terrain:
    """Terrain layers on the cube grid (row 0 = north); water masks and flow for the truth model."""

    elevation: np.ndarray
    aspect: np.ndarray
    """Degrees clockwise from north of the downslope direction."""
    slope: np.ndarray
    """Degrees."""
    max_curvature: np.ndarray
    """1/m, positive on convex ground (ridges)."""
    spi: np.ndarray
    """ln(specific catchment area × tan slope)."""
    twi: np.ndarray
    """ln(specific catchment area / tan slope)."""
    tpi: np.ndarray
    """Elevation minus the mean within ~300 m (m)."""
    lake: np.ndarray
    river: np.ndarray
    flow_acc: np.ndarray
    """Upslope area in cells."""
    valley_x: np.ndarray
    """Column of the main valley axis per row (for roads and villages)."""

    @property
    def water(self) -> np.ndarray:
        return self.lake | self.river

    def covariates(self) -> dict[str, np.ndarray]:
        """The published terrain assets, float32, keyed by STAC asset key."""
        return {k: getattr(self, k).astype(np.float32) for k in TERRAIN_ASSETS}


def _priority_flood(dem: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill depressions (Barnes et al. priority flood, with a tiny gradient across flats).

    Returns the filled DEM, each cell's receiver (flat index it drains to, -1 at the border), and
    the processing order (low to high), which routes water out of every pit.
    """
    h, w = dem.shape
    flat = dem.ravel().astype(np.float64).tolist()
    filled = list(flat)
    parent = [-1] * (h * w)
    seen = bytearray(h * w)
    heap: list[tuple[float, int]] = []
    for i in range(h * w):
        r, c = divmod(i, w)
        if r == 0 or c == 0 or r == h - 1 or c == w - 1:
            heap.append((flat[i], i))
            seen[i] = 1
    heapq.heapify(heap)
    order: list[int] = []
    offs = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    eps = 1e-4
    while heap:
        z, i = heapq.heappop(heap)
        order.append(i)
        r, c = divmod(i, w)
        for dr, dc in offs:
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w:
                j = rr * w + cc
                if not seen[j]:
                    seen[j] = 1
                    zj = flat[j] if flat[j] > z + eps else z + eps
                    filled[j] = zj
                    parent[j] = i
                    heapq.heappush(heap, (zj, j))
    return (np.asarray(filled).reshape(h, w), np.asarray(parent, dtype=np.int64),
            np.asarray(order, dtype=np.int64))


def _flow_accumulation(parent: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Upslope cell count along the receivers, processed from the highest cell down."""
    acc = [1.0] * parent.size
    par = parent.tolist()
    for i in reversed(order.tolist()):
        p = par[i]
        if p >= 0:
            acc[p] += acc[i]
    return np.asarray(acc, dtype=np.float32)


def _derivatives(z: np.ndarray, res: float) -> tuple[np.ndarray, ...]:
    """Slope (deg), aspect (deg from north) and max curvature (1/m) of a north-up DEM."""
    dzdr, dzdc = np.gradient(z.astype(np.float64), res)
    dzdx, dzdn = dzdc, -dzdr
    slope = np.degrees(np.arctan(np.hypot(dzdx, dzdn)))
    aspect = np.degrees(np.arctan2(-dzdx, -dzdn)) % 360.0
    zxx = np.gradient(dzdx, res, axis=1)
    zyy = np.gradient(dzdn, res, axis=0) * -1.0
    zxy = np.gradient(dzdx, res, axis=0) * -1.0
    mean = -(zxx + zyy) / 2
    kmax = mean + np.sqrt(((zxx - zyy) / 2) ** 2 + zxy**2)
    return slope.astype(np.float32), aspect.astype(np.float32), kmax.astype(np.float32)


def make_terrain(seed: int, shape: tuple[int, int], res: float) -> Terrain:
    """Generate the DEM and its covariates: relief falls from the Brooks Range (north) to the flats.

    A meandering main valley runs north–south; depressions left after filling become lakes;
    cells draining more than ~1.3 km² (scaled to small worlds) become rivers.
    """
    rng = rng_for(seed, "terrain")
    h, w = shape
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]  # 0 north, 1 south
    km = res * max(h, w) / 1000.0
    px_per_km = 1000.0 / res
    ridged = 1.0 - np.abs(gaussian_field(rng, shape, 3.0 * px_per_km, beta=3.2))
    hills = gaussian_field(rng, shape, 1.2 * px_per_km, beta=3.5)
    broad = gaussian_field(rng, shape, max(h, w) / 2.0, beta=4.0)
    relief = 120.0 + 480.0 * (1.0 - yy) ** 1.3  # mountains north, lowland south
    dem = 260.0 + 480.0 * (1.0 - yy) + relief * normalise(ridged**2) + 20.0 * hills + 60.0 * broad

    phase = rng.uniform(0, 2 * np.pi)
    valley_x = (0.45 + 0.08 * np.sin(2 * np.pi * 0.9 * yy[:, 0] + phase)
                + 0.03 * np.sin(2 * np.pi * 2.3 * yy[:, 0] + 2 * phase)) * (w - 1)
    dist = np.abs(np.arange(w)[None, :] - valley_x[:, None]) * res
    valley_w = 900.0 + 900.0 * yy  # widens southward
    floor = 180.0 + 320.0 * (1.0 - yy)  # the valley floor falls steadily to the south
    v = np.exp(-((dist / valley_w) ** 2))
    dem = dem * (1 - v) + (floor + 0.15 * (dem - floor).clip(0)) * v
    lowland = np.clip((yy - 0.55) / 0.45, 0, 1) * np.exp(-((dist / (3 * valley_w)) ** 2))
    dem = dem * (1 - 0.7 * lowland) + smooth(dem, 8) * 0.7 * lowland  # flats
    n_basins = max(3, int(km * km / 6))
    basins = np.zeros(shape, np.float32)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    for _ in range(n_basins):  # thaw-lake and kettle basins, mostly on the flats and in the valley
        r0, c0 = rng.integers(0, h), rng.integers(0, w)
        rad = rng.uniform(60.0, 260.0) / res
        d2 = (rows - r0) ** 2 + (cols - c0) ** 2
        basins += rng.uniform(4.0, 9.0) * np.exp(-d2 / (2 * rad**2)) * (0.4 + 0.6 * lowland[r0, c0])
    dem = dem - basins + 1.0 * gaussian_field(rng, shape, 2.0, beta=2.5)
    dem = dem.astype(np.float32)

    filled, parent, order = _priority_flood(dem)
    lab, n = ndimage.label((filled - dem) > 1.5)
    idx = np.arange(1, n + 1)
    sizes = ndimage.sum(np.ones(shape), lab, index=idx)
    in_basin = ndimage.maximum(basins, lab, index=idx)
    lake = np.isin(lab, idx[(sizes >= 6) & (in_basin > 2.0)])
    # every other depression is sediment-filled: flats and wet basins, not lakes
    acc = _flow_accumulation(parent, order).reshape(shape)
    threshold = max(120.0, min(1500.0, h * w / 250.0))
    river = (acc > threshold) & ~lake
    big = acc > threshold * 12
    river = river | (ndimage.binary_dilation(river & big) & ~lake)
    surface = np.where(lake, filled, np.maximum(dem, filled - 0.05)).astype(np.float32)
    surface = np.where(river, surface - 1.5, surface).astype(np.float32)

    slope, aspect, kmax = _derivatives(smooth(surface, 0.7), res)
    tanb = np.maximum(np.tan(np.radians(slope)), 1e-3)
    sca = acc * res  # specific catchment area (m)
    tpi = surface - ndimage.uniform_filter(surface, size=int(2 * 300 / res) + 1, mode="reflect")
    return Terrain(
        elevation=surface, aspect=aspect, slope=slope, max_curvature=kmax,
        spi=np.log(sca * tanb).astype(np.float32), twi=np.log(sca / tanb).astype(np.float32),
        tpi=tpi.astype(np.float32), lake=lake, river=river, flow_acc=acc,
        valley_x=valley_x.astype(np.float32),
    )
