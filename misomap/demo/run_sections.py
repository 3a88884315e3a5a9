"""The demo run's configuration sections, as plain data: the demo world's bands, its fold scales,
and the cube and MISO sections `misomap demo` (and `misomap experiment`) run with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

S2_BANDS = ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "swir16", "swir22")
TERRAIN = ("elevation", "aspect", "slope", "max_curvature", "spi", "twi", "tpi")
CLIMATE = ("precip_annual", "summer_warmth", "jan_min_temp")
S1_BANDS = ("s1_summer_vv_db", "s1_summer_vh_db")
"""The radar bands the RF sees; MISO sees them too (stacked with the optical bands)."""
DBSCAN_FRACTION = 1 / 75
"""DBSCAN radius as a fraction of the world's width. The demo world is a compressed Alaska (19 km
across, ~8 pedons/km²) where the reference's 1 km and 10 km radii yield one cluster; 1/75 of the
width (256 m on the demo size) plays the part of the reference's 10 km."""
BLOCK_FRACTION = 1 / 5
"""Spatial block side as a fraction of the world's width (25 blocks in 5 folds)."""


def fold_scales(world: Path) -> tuple[float, float]:
    """(DBSCAN radius, block side) in metres for a demo world, scaled to its width."""
    xmin, _, xmax, _ = json.loads((world / "world.json").read_text())["grid"]["bounds"]
    width = xmax - xmin
    return round(width * DBSCAN_FRACTION), round(width * BLOCK_FRACTION)


def cube_section(world: Path, out: str, chunk: int = 256) -> dict[str, Any]:
    """The cube section for a demo world: its suggested grid, its years and summer window, and
    sources named like Earth Search / Planetary Computer (the same config serves real catalogs)."""
    manifest = json.loads((world / "world.json").read_text())
    start, end = manifest["seasons"]["summer"]
    return {
        "out": out, "bounds": manifest["grid"]["bounds"], "resolution": manifest["grid"]["resolution"],
        "crs": manifest["grid"]["crs"], "chunk": chunk,
        "datetime": f"{min(manifest['years'])}-01-01/{max(manifest['years'])}-12-31",
        "seasons": {"summer": {"start": start, "end": end}},
        "sources": [
            {"collection": "sentinel-2-l2a", "kind": "optical", "prefix": "s2", "mask_asset": "scl",
             "bands": {k: k for k in S2_BANDS}},
            {"collection": "sentinel-1-rtc", "kind": "radar", "prefix": "s1", "bands": {"vv": "vv", "vh": "vh"}},
            {"collection": "ak-terrain", "kind": "static", "bands": {k: k for k in TERRAIN}},
            {"collection": "ak-climate", "kind": "static", "bands": {k: k for k in CLIMATE}},
        ],
    }


def demo_miso_section(imagery: dict[str, Any], covariates: dict[str, Any], schemes: list[str] | None,
                      max_folds: int | None = 2, ablations: list[str] | None = None) -> dict[str, Any]:
    """The full, CPU-sized MISO of the demo: the RF's inputs (S2 + S1 stacked in the imagery
    encoder, terrain + climate in the covariate encoder), two Swin stages on 32 px crops with up to
    12 pedons each, the pixel skip, coarse location scales (shortest 1/8 of the region) aligned with
    the visual embedding by InfoNCE but not read by the heads (`location.role` alignment), InfoNCE
    with half of each batch unlabelled crops, SimMIM pretraining long enough for its loss to fall."""
    return {
        "imagery": {**imagery, "depths": [1, 1], "num_heads": [1, 2]},
        "covariates": {**covariates, "depths": [1, 1], "num_heads": [1, 2]},
        "liif": {"pixel_skip": True},
        "location": {"num_scales": 16, "min_wavelength": 0.125, "role": "alignment"},
        "contrastive": {"enabled": True, "weight": 0.1, "temperature": 0.1},
        "crops": {"size_px": 32, "jitter_px": 8, "label_slots": 12, "pseudo_points": 2, "grid": 2,
                  "unlabelled_fraction": 0.5},
        # 300 steps of 32 crops: the demo's 10-minute budget on 2 cores (400 took ~12 min in all)
        "train": {"epochs": 10, "steps_per_epoch": 30, "max_steps": 300, "batch_size": 32,
                  "lr": 2e-3, "patience": 3, "warmup_epochs": 1},
        "schemes": schemes, "max_folds": max_folds, "final_model": True, "ablations": ablations or [],
        "pretrain": {"epochs": 3, "steps_per_epoch": 15},
    }
