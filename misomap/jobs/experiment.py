"""`misomap experiment`: the MISO-vs-RF claim measured over several demo worlds.

For each seed: a demo world → its STAC API → the cube → the RF on every fold scheme → MISO
pretraining → MISO (and its ablations) on the requested schemes → both final models' maps →
the maps scored against the world's truth. Then one table of mean ± sd over folds and seeds per
model and scheme (recall beside F1, accuracy and Brier), the map-vs-truth table, the ablations
and the training time per fold, as Markdown and CSV under `<out>/`.

Each seed has its own folder (`<out>/seed<k>/`, a demo run layout); a rerun keeps the worlds and
cubes and resumes MISO from its checkpoints.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path
from typing import get_args

import pandas as pd
import yaml
from pydantic import ValidationError

from misomap.core.errors import MisomapError
from misomap.evaluation.experiment import (
    design_record,
    distance_scores,
    fold_scores,
    pooled_scores,
    predictions,
    summarise,
    validation_scores,
)
from misomap.models.miso.config import ABLATIONS, SELECTED, DesignConfig, Variant

log = logging.getLogger(__name__)

SCHEMES = ("random", "dbscan", "blocks", "region")
"""Scheme names the command takes; `dbscan` is the demo world's DBSCAN scheme (radius scaled to it)."""


class ExperimentError(MisomapError):
    """The experiment cannot run as asked: repeated seeds, an unknown scheme."""


def check_request(seeds: list[int], schemes: list[str] | None, design: list[str] | None = None,
                  class_balance: float = 0.0) -> None:
    """Refuse repeated seeds, unknown schemes, a class balance outside [0, 1] and a design choice that
    cannot be made, before any work starts."""
    if not seeds:
        raise ExperimentError("no seed given: pass --seeds, e.g. --seeds 0 1 2")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ExperimentError(f"seed(s) {repeated} given more than once in {seeds}: each seed is one world")
    if not 0 <= class_balance <= 1:
        raise ExperimentError(f"--class-balance {class_balance}: give a power from 0 (pedons as the labels "
                              "fall) to 1 (every class weighs alike); 0.5 is square-root balancing")
    unknown = sorted(set(schemes or ()) - set(SCHEMES))
    if unknown:
        raise ExperimentError(f"unknown fold scheme(s) {unknown}: choose from {list(SCHEMES)}")
    if design:
        try:
            DesignConfig(candidates=design)
        except ValidationError:
            raise ExperimentError(f"--design {design}: give two or more distinct candidates from "
                                  f"{list(get_args(Variant))}") from None
        if schemes and "region" not in schemes:
            raise ExperimentError("--design chooses the map model on the region scheme's inner folds: add "
                                  "--scheme region")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_seed(out: Path, seed: int, size: str, schemes: list[str] | None, max_folds: int | None,
             ablations: bool, max_steps: int | None = None, design: list[str] | None = None,
             class_balance: float = 0.0) -> None:
    """One world: every stage of the demo with MISO on `schemes` (its step budget capped at
    `max_steps` if given; its design chosen among `design` by nested validation if given), both
    models under `evaluation.class_balance` = `class_balance`; leaves
    `run.yaml` and the maps' scores against the truth (`map_truth.csv`) in `out` for `score_seed`."""
    from misomap.config import config_from_dict
    from misomap.demo.world import generate_world, rustac_serve_files
    from misomap.evaluation.map_truth import map_vs_truth
    from misomap.jobs.build_cube import run_build_cube
    from misomap.jobs.demo import _same_world, demo_run_config, demo_scheme
    from misomap.jobs.predict import run_predict, with_map
    from misomap.jobs.train_miso import run_pretrain, run_train_miso
    from misomap.jobs.train_rf import train_rf
    from misomap.mapping.chunk import zarr_url
    from misomap.services.stac_api import stac_api_server

    out.mkdir(parents=True, exist_ok=True)
    world = out / "world"
    if not _same_world(world, seed, size):
        generate_world(world, seed=seed, size=size)
    def run_config(pretrained: dict[str, str] | None = None) -> dict:
        """The demo's run configuration for this world, both models under `class_balance`."""
        data = demo_run_config(world, out, url, seed, pretrained).model_dump(mode="json")
        data["evaluation"]["class_balance"] = class_balance
        return data

    with stac_api_server(rustac_serve_files(world), out / "services") as (url, _):
        config = config_from_dict(run_config(), f"experiment seed {seed}")
        run_build_cube(config)
    train_rf(config)
    data = run_config(run_pretrain(config))
    names = {"dbscan": demo_scheme(world)}
    data["miso"].update(schemes=[names.get(s, s) for s in schemes] if schemes else None,
                        max_folds=max_folds, ablations=list(ABLATIONS) if ablations else [])
    if max_steps:
        data["miso"]["train"]["max_steps"] = max_steps
    if design:
        data["miso"]["design"] = {"candidates": design}
    config = config_from_dict(data, f"experiment seed {seed}")
    (out / "run.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True),
                                                 sort_keys=False))
    miso = run_train_miso(config)
    truth = []
    for model, path in (("rf", str(out / "models" / "rf")), ("miso", miso.final_model)):
        cfg = with_map(config, model, path)
        run_predict(cfg, overwrite=True)
        truth.append(map_vs_truth(zarr_url(cfg.map), world).assign(model=model))
    pd.concat(truth).to_csv(out / "map_truth.csv", index=False)


def score_seed(out: Path) -> tuple[pd.DataFrame, ...]:
    """The tables of one finished seed folder: per-fold scores of the RF, MISO, the wave-1 design
    (`location_input`) and, under a design choice, the candidates and `miso_selected`; the RF, MISO
    and its ablations on the folds all of them ran; the CV scores by distance to the nearest training
    pedon; the maps against the truth (empty until the seed's maps are made); the CV scores pooled
    over each scheme's test pedons; the validation scores; the design choice per test fold."""
    from misomap.config import load_config
    from misomap.labels.training_table import read_training

    config = load_config(out / "run.yaml")
    workdir, storage, cfg = config.workdir, config.storage, config.evaluation
    table, folds = read_training(workdir, storage)
    record = design_record(workdir, storage)
    candidates = record["candidates"] if record else []
    main = predictions(workdir, storage, list(dict.fromkeys(["rf", "miso", SELECTED, "miso_location_input",
                                                             *candidates])))
    variants = predictions(workdir, storage, ["rf", "miso", *(f"miso_{a}" for a in ABLATIONS)])
    ablation = fold_scores(cfg, table, variants) if len(variants) > 2 else pd.DataFrame()
    truth = pd.read_csv(out / "map_truth.csv") if (out / "map_truth.csv").exists() else pd.DataFrame()
    design = (pd.DataFrame(record["folds"]).assign(map_model=record["map_model"]) if record else pd.DataFrame())
    return (fold_scores(cfg, table, main), ablation, distance_scores(cfg, table, folds, main), truth,
            pooled_scores(cfg, table, main), validation_scores(workdir, storage), design)


def write_tables(out: Path, seeds: list[int], commit: str, seconds: float | None = None) -> Path:
    """Score every finished seed folder under `out` and write the Markdown and CSV tables."""
    parts = [[t.assign(seed=seed) if not t.empty else t for t in score_seed(out / f"seed{seed}")]
             for seed in seeds]
    folds, ablation, dist, truth, pooled, val, design = (pd.concat([p[i] for p in parts], ignore_index=True)
                                                         for i in range(7))
    for name, df in (("folds", folds), ("ablations", ablation), ("distance", dist), ("truth", truth),
                     ("validation", val), ("design", design), ("pooled", pooled)):
        df.to_csv(out / f"experiment_{name}.csv", index=False)
    md = out / "experiment.md"
    md.write_text(summarise(folds, ablation, dist, truth, seeds, commit, seconds, val, design, pooled))
    return md


def run_experiment(out: Path, seeds: list[int], size: str = "tiny", schemes: list[str] | None = None,
                   max_folds: int | None = None, ablations: bool = True, max_steps: int | None = None,
                   tables_only: bool = False, design: list[str] | None = None,
                   class_balance: float = 0.0) -> Path:
    """Every seed's world, both models, the tables; returns `<out>/experiment.md`. With `design`,
    MISO's design is chosen among those variants by nested validation; `class_balance` is the rule
    both models train under (misomap.models.weighting). With `tables_only`, only
    the tables, from the seed folders a finished run left."""
    check_request(seeds, schemes, design, class_balance)
    out = out.resolve()
    commit = _commit()
    t0 = time.perf_counter()
    if not tables_only:
        for seed in seeds:
            log.info("experiment: seed %d", seed)
            run_seed(out / f"seed{seed}", seed, size, schemes, max_folds, ablations, max_steps, design,
                     class_balance)
        (out / "experiment.json").write_text(json.dumps({
            "seeds": seeds, "size": size, "schemes": schemes, "max_folds": max_folds, "ablations": ablations,
            "max_steps": max_steps, "design": design, "class_balance": class_balance, "commit": commit}))
    settings = json.loads((out / "experiment.json").read_text()) if (out / "experiment.json").exists() else {}
    run_commit = settings.get("commit", "unknown")
    made = commit if run_commit == commit else f"{run_commit} (tables rebuilt at {commit})"
    md = write_tables(out, seeds, made, None if tables_only else time.perf_counter() - t0)
    md.write_text(md.read_text() + f"\nSettings: {settings}.\n")
    log.info("experiment written to %s", md)
    return md
