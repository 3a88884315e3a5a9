"""Finished misomap map stores made straight from probabilities, and maps made from a demo world's
truth with chosen errors: what the assessment tests and bench/bench_assess.py sample and score.

A map written here is a real map store (the mapping room's template, region writer and complete
mark), so `misomap assess` reads it exactly as it reads a map from `misomap predict`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from scipy import ndimage

from misomap.core.classes import SOIL_ORDERS
from misomap.core.storage import Target
from misomap.cube.grid import ChunkWindow, Grid
from misomap.mapping.layers import MapProbabilities, encode_layers
from misomap.mapping.store import ensure_template, mark_map_complete, write_chunk

GELISOLS = SOIL_ORDERS.index("Gelisols")


def write_map(folder: Path, grid: Grid, permafrost: np.ndarray, soil_order: np.ndarray, run: str = "test") -> str:
    """A finished map folder holding map.zarr (one chunk) from P(permafrost) (h, w) and the soil-order
    probabilities (7, h, w); returns the folder."""
    target = Target(str(folder / "map.zarr"))
    h, w = grid.shape
    ensure_template(target, grid, max(h, w), 3, {}, hashlib.sha256(run.encode()).hexdigest())
    layers = encode_layers(MapProbabilities(permafrost.astype(np.float32), soil_order.astype(np.float32)))
    region = ChunkWindow(0, 0, 0, 0, h, w)
    write_chunk(target, region, layers)
    digest = hashlib.sha256(b"".join(v.tobytes() for v in layers.values())).hexdigest()
    mark_map_complete(target, digest, list(layers), {region.key: digest})
    return str(folder)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Spatially correlated standard-normal noise (smoothed white noise, rescaled to unit sd)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), [0.0] * (len(shape) - 2) + [sigma, sigma])
    return field / field.std()


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=0))
    return e / e.sum(axis=0)


def truth_map(permafrost: np.ndarray, soil_order: np.ndarray, biased: bool, seed: int = 0,
              sigma: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of a map made from truth rasters (255 = water, which the map still classifies)
    with spatially correlated errors: the good map is right on ~90% of land; the biased one also
    over-maps permafrost (its logit +1.6) and Gelisols (+1.8) and under-maps Histosols (-1.5), so
    its pixel-count areas are far off while its errors stay spatially patchy."""
    rng = np.random.default_rng(seed)
    pf = np.where(permafrost == 255, 0, permafrost).astype(float)
    logit = 2.2 * (2 * pf - 1) + 1.5 * _noise(rng, pf.shape, sigma) + (1.6 if biased else 0.0)
    so = np.where(soil_order == 255, 0, soil_order)
    onehot = (np.arange(len(SOIL_ORDERS))[:, None, None] == so[None]).astype(float)
    logits = 3.0 * onehot + 1.2 * _noise(rng, onehot.shape, sigma)
    if biased:
        logits[GELISOLS] += 1.8
        logits[SOIL_ORDERS.index("Histosols")] -= 1.5
    return 1 / (1 + np.exp(-logit)), _softmax(logits)


def demo_truth(seed: int = 0, size: str = "demo") -> tuple[Grid, np.ndarray, np.ndarray]:
    """The truth rasters a demo world of (seed, size) writes (255 on water), made in memory without
    its imagery: grid, permafrost (0/1), soil order (codes)."""
    from misomap.demo.climate import make_climate
    from misomap.demo.spec import world_size
    from misomap.demo.terrain import make_terrain
    from misomap.demo.truth import make_truth

    grid = world_size(size).grid()
    terrain = make_terrain(seed, grid.shape, grid.resolution)
    climate = make_climate(seed, terrain, grid.resolution)
    truth = make_truth(seed, terrain, climate, grid.resolution, (grid.x_coords(), grid.y_coords()))
    permafrost = np.where(terrain.water, 255, truth.permafrost).astype(np.uint8)
    return grid, permafrost, truth.soil_order.astype(np.uint8)


FIGURES = ("permafrost present area", *(f"{o} area" for o in SOIL_ORDERS), "permafrost OA", "soil order OA")


def coverage(map_folder: str, truth_pf: np.ndarray, truth_so: np.ndarray, layer: str, design: str,
             allocation: str, n: int, reps: int, min_per_class: int = 0, seed: int = 0) -> dict[str, dict[str, float]]:
    """Repeated samples of a map labelled from the truth: for each figure (permafrost area, each soil
    order's area, both overall accuracies) the share of the 95% intervals holding the true value —
    Wilson (what `misomap assess` reports) and, for contrast, normal (estimate ± 1.96 SE) — and the
    mean Wilson interval width relative to the true value."""
    from misomap.assess.assessment import assess_layer
    from misomap.assess.estimators import Z95
    from misomap.assess.maps import confidence, read_layer
    from misomap.assess.points import LabelledPoints, label_from_raster
    from misomap.assess.sampling import SampleSpec, build_strata, sample_map

    maps = {"permafrost_class": read_layer(map_folder, "permafrost_class"),
            "soil_order_class": read_layer(map_folder, "soil_order_class")}
    truths = {"permafrost_class": truth_pf, "soil_order_class": truth_so}
    km2 = maps[layer].pixel_km2
    land = truth_so != 255
    true = {"permafrost present area": float((truth_pf == 1).sum()) * km2,
            **{f"{o} area": float((truth_so == k).sum()) * km2 for k, o in enumerate(SOIL_ORDERS)},
            "permafrost OA": float((maps["permafrost_class"].codes == truth_pf)[land].mean()),
            "soil order OA": float((maps["soil_order_class"].codes == truth_so)[land].mean())}
    conf = confidence(map_folder, layer) if allocation == "optimal" else None
    strata = build_strata(maps[layer], design, conf)
    hits = {f: {"wilson": 0, "normal": 0, "width": 0.0} for f in FIGURES}
    for r in range(reps):
        table = sample_map(maps[layer], strata, SampleSpec(n, design, allocation, min_per_class, seed + r))
        for name, ml in maps.items():
            table = label_from_raster(table, ml, truths[name], f"label_{name}")
        points = LabelledPoints(f"replicate {r}", table)
        got = {}
        for name, ml in maps.items():
            fig, _ = assess_layer(points, ml)
            key = "permafrost OA" if name == "permafrost_class" else "soil order OA"
            got[key] = fig.overall
            for c in fig.classes:
                if name == "soil_order_class":
                    got[f"{c.name} area"] = c.area_km2
                elif c.name == "present":
                    got["permafrost present area"] = c.area_km2
        for f, iv in got.items():
            hits[f]["wilson"] += iv.low <= true[f] <= iv.high
            hits[f]["normal"] += abs(iv.value - true[f]) <= Z95 * iv.se
            hits[f]["width"] += (iv.high - iv.low) / true[f]
    return {f: {"true": true[f], "wilson": h["wilson"] / reps, "normal": h["normal"] / reps,
                "width": h["width"] / reps} for f, h in hits.items()}
