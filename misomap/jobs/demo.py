"""`misomap demo`: the whole pipeline on the embedded demo region, in one command, offline.

demo world → STAC API server → cube → Random Forest and MISO on one spatial split → maps → report.
Every output lands under one folder; the run configuration used is written there as `run.yaml`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from misomap.config import RunConfig, config_from_dict
from misomap.evaluation.summary import ModelFigures, cv_figures, format_table, map_figures

log = logging.getLogger(__name__)

S2_BANDS = ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "swir16", "swir22")
TERRAIN = ("elevation", "aspect", "slope", "max_curvature", "spi", "twi", "tpi")
CLIMATE = ("precip_annual", "summer_warmth", "jan_min_temp")
S1_BANDS = ("s1_summer_vv_db", "s1_summer_vh_db")
"""The radar bands the RF sees; MISO sees them too (stacked with the optical bands)."""
DBSCAN_FRACTION = 1 / 75
"""DBSCAN radius as a fraction of the world's width. The demo world is a compressed Alaska (19 km
across, ~8 pedons/km²) where the reference's 1 km and 10 km radii yield one cluster; 1/75 of the
width (256 m on the demo size) plays the part of the reference's 10 km."""
MODELS = ("rf", "miso", "auto")
"""The demo's maps side by side: the baseline, MISO and the published map (auto)."""
BLOCK_FRACTION = 1 / 5
"""Spatial block side as a fraction of the world's width (25 blocks in 5 folds)."""


def fold_scales(world: Path) -> tuple[float, float]:
    """(DBSCAN radius, block side) in metres for a demo world, scaled to its width."""
    xmin, _, xmax, _ = json.loads((world / "world.json").read_text())["grid"]["bounds"]
    width = xmax - xmin
    return round(width * DBSCAN_FRACTION), round(width * BLOCK_FRACTION)


def demo_scheme(world: Path) -> str:
    """The spatial fold scheme the demo scores MISO on (the full CV: `misomap train-miso`)."""
    from misomap.labels.folds import dbscan_scheme_name

    return dbscan_scheme_name(fold_scales(world)[0])


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


def demo_run_config(world: Path, out: Path, stac_url: str, seed: int = 0,
                    pretrained: dict[str, str] | None = None) -> RunConfig:
    """The run configuration the demo uses (also written to `<out>/run.yaml`); `pretrained` names
    the self-supervised encoder checkpoints once `misomap pretrain` has made them."""
    pretrained = pretrained or {}
    eps, block = fold_scales(world)
    imagery: dict[str, Any] = {"bands": [f"s2_summer_{b}" for b in S2_BANDS] + list(S1_BANDS)}
    covariates: dict[str, Any] = {"bands": list(TERRAIN + CLIMATE)}
    for name, enc in (("imagery", imagery), ("covariates", covariates)):
        if name in pretrained:
            enc["weights"] = {"path": pretrained[name]}
    data = {
        "name": "demo", "workdir": str(out), "seed": seed,
        "stac": {"url": stac_url},
        "cube": cube_section(world, str(out / "cube.zarr")),
        "labels": {"world": str(world), "cube": str(out / "cube.zarr")},
        "folds": {"k": 5, "dbscan_eps_m": [eps], "block_size_m": block, "regions": True, "zones": False},
        "rf": {"n_estimators": 100},
        "evaluation": {"class_weighting": "threshold", "val_fraction": 0.15},
        "miso": demo_miso_section(imagery, covariates, [demo_scheme(world)]),
        "map": {"cube": str(out / "cube.zarr"), "output": str(out / "maps" / "rf"), "model": "rf",
                "model_path": str(out / "models" / "rf"), "chunk_px": 256, "workers": 2,
                # the published map: per target the best of rf, miso and their stack by nested
                # validation, one inner fold per test fold (two more MISO fits: the 10-minute budget)
                "auto": {"inner_folds": 1}},
    }
    return config_from_dict(data, "demo")


@dataclass
class DemoResult:
    """Where each demo output is, and how long each stage took."""

    outputs: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    scheme: str = ""
    figures: list[ModelFigures] = field(default_factory=list)
    map_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    choice: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        """The demo's last screen: the figures that matter, where to look, and the time it took."""
        total = sum(self.seconds.values())
        folds = self.figures[0].folds if self.figures else 0
        lines = ["", f"misomap demo finished in {int(total // 60)} min {total % 60:.0f} s.", "",
                 (f"Held-out figures on the spatial scheme {self.scheme} ({folds} test folds, the same "
                 "pedons for every model; PF = permafrost present, SO = soil order), and each map "
                 "against the demo world's truth rasters (all land):"), "",
                 format_table(self.figures, self.map_scores), ""]
        if self.choice:
            lines += [("The published map (auto) takes, per target, the candidate with the best mean inner-fold "
                      "score (macro recall) inside the training parts — never the test folds or truth:")]
            lines += [f"  {t:<11} {c['model']:<6} margin {c['margin']:+.3f}  ("
                      + ", ".join(f"{k} {v:.3f}" for k, v in c["scores"].items()) + ")"
                      for t, c in self.choice.items()]
            lines.append("")
        lines += ["Where to look:"]
        lines += [f"  {name:<14} {where}" for name, where in self.outputs.items()]
        lines += ["", "Stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items())]
        return "\n".join(lines)


def _stage(result: DemoResult, name: str, fn: Callable[[], Any]) -> Any:
    log.info("demo stage: %s", name)
    t0 = time.perf_counter()
    value = fn()
    result.seconds[name] = round(time.perf_counter() - t0, 1)
    log.info("demo stage %s done in %.1f s", name, result.seconds[name])
    return value


def _same_world(world: Path, seed: int, size: str) -> bool:
    manifest = world / "world.json"
    if not manifest.exists():
        return False
    from misomap.demo.world import GENERATOR

    meta = json.loads(manifest.read_text())
    return meta.get("seed") == seed and meta.get("size") == size and meta.get("generator") == GENERATOR


def run_demo(out: Path, seed: int = 0, size: str = "demo") -> DemoResult:
    """Run every stage. Rerun on the same folder, it keeps the same world, skips finished cube
    chunks and resumes MISO from its checkpoints; the RF is refitted and the maps redone."""
    from misomap.demo.world import generate_world, rustac_serve_files
    from misomap.jobs.build_cube import run_build_cube
    from misomap.jobs.choose_map import run_choose_map
    from misomap.jobs.predict import run_predict, with_map
    from misomap.jobs.train_miso import run_pretrain, run_train_miso
    from misomap.jobs.train_rf import train_rf
    from misomap.services.stac_api import stac_api_server

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    world = out / "world"
    result = DemoResult()
    if _same_world(world, seed, size):
        log.info("demo world (seed %d, size %s) already at %s: kept", seed, size, world)
    else:
        _stage(result, "demo world", lambda: generate_world(world, seed=seed, size=size))
    result.outputs["world"] = str(world)
    with stac_api_server(rustac_serve_files(world), out / "services") as (url, _):
        config = demo_run_config(world, out, url, seed)
        cube = _stage(result, "cube", lambda: run_build_cube(config))
    result.outputs["cube"] = str(cube.out)
    rf = _stage(result, "random forest", lambda: train_rf(config))
    result.outputs["rf report"] = rf.report
    pretrained = _stage(result, "MISO pretraining", lambda: run_pretrain(config))
    config = demo_run_config(world, out, config.stac.url or "", seed, pretrained)
    (out / "run.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True),
                                                 sort_keys=False))
    miso = _stage(result, "MISO training", lambda: run_train_miso(config))
    result.outputs["comparison"] = miso.comparison
    auto = _stage(result, "map choice", lambda: run_choose_map(config))
    result.outputs["auto report"] = auto.report
    result.choice = auto.choice["targets"]
    for model, path in (("rf", str(out / "models" / "rf")), ("miso", miso.final_model), ("auto", auto.model_path)):
        # a retrained model is a new model (skops files are not byte-stable), so maps are redone
        summary = _stage(result, f"{model} map",
                         lambda m=model, p=path: run_predict(with_map(config, m, p), overwrite=True))
        result.outputs[f"{model} map"] = summary.output
    result.outputs["viewer"] = f"misomap view {out / 'maps'}"  # the maps side by side in a browser
    result.scheme = demo_scheme(world)
    result.figures = cv_figures(config.workdir, config.storage, config.evaluation, MODELS, result.scheme)
    result.map_scores = map_figures({m: f"{out}/maps/{m}/map.zarr" for m in MODELS}, str(world))
    return result
