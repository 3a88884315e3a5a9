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
from misomap.demo.run_sections import (
    CLIMATE,
    S1_BANDS,
    S2_BANDS,
    TERRAIN,
    cube_section,
    demo_miso_section,
    fold_scales,
)
from misomap.evaluation.summary import ModelFigures, cv_figures, format_table, map_figures, split_fill
from misomap.jobs.assess import TruthArea, truth_area

log = logging.getLogger(__name__)

AREA_SAMPLE = 300
"""Points of the sample the last screen estimates each map's permafrost area from."""


def demo_scheme(world: Path) -> str:
    """The spatial fold scheme the demo scores MISO on (the full CV: `misomap train-miso`)."""
    from misomap.labels.folds import dbscan_scheme_name

    return dbscan_scheme_name(fold_scales(world)[0])


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
                "model_path": str(out / "models" / "rf"), "chunk_px": 256, "workers": 2},
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
    areas: dict[str, TruthArea] = field(default_factory=dict)

    def summary(self) -> str:
        """The demo's last screen: the figures that matter, where to look, and the time it took."""
        total = sum(self.seconds.values())
        folds = self.figures[0].folds if self.figures else 0
        main, fill = split_fill(self.map_scores)
        lines = ["", f"misomap demo finished in {int(total // 60)} min {total % 60:.0f} s.", "",
                 f"Held-out figures on the spatial scheme {self.scheme} ({folds} test folds, the same "
                 "pedons for every model; PF = permafrost present, SO = soil order), and each map "
                 "against the demo world's truth rasters (all land):", "",
                 format_table(self.figures, main), ""]
        if fill:
            lines += [("Land pixels without a map value (nodata %), pixels predicted without optical inputs "
                       "(filled %, the inputs_used layer) and map accuracy on them and on the rest:"), "", fill, ""]
        if self.areas:
            lines += [(f"Permafrost area (km²) of each map: its pixel count, and estimated from a {AREA_SAMPLE}-point "
                       "sample labelled by the world's truth (stratified by map class, 95% CI; `misomap assess`), "
                       "beside the true area:")]
            lines += [f"  {m:<8} map {a.map_km2:7.1f}   sample {a.estimate.value:7.1f} [{a.estimate.low:.1f}, "
                      f"{a.estimate.high:.1f}]   true {a.true_km2:7.1f}" for m, a in self.areas.items()]
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
    for model, path in (("rf", str(out / "models" / "rf")), ("miso", miso.final_model)):
        # a retrained model is a new model (skops files are not byte-stable), so maps are redone
        summary = _stage(result, f"{model} map",
                         lambda m=model, p=path: run_predict(with_map(config, m, p), overwrite=True))
        result.outputs[f"{model} map"] = summary.output
    result.outputs["viewer"] = f"misomap view {out / 'maps'}"  # the maps side by side in a browser
    result.scheme = demo_scheme(world)
    result.figures = cv_figures(config.workdir, config.storage, config.evaluation, ("rf", "miso"),
                                result.scheme)
    result.map_scores = map_figures({m: f"{out}/maps/{m}/map.zarr" for m in ("rf", "miso")}, str(world))
    result.areas = {m: truth_area(f"{out}/maps/{m}", str(world), AREA_SAMPLE, seed) for m in ("rf", "miso")}
    return result
