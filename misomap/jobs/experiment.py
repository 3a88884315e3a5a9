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

import numpy as np
import pandas as pd

from misomap.core.errors import MisomapError

log = logging.getLogger(__name__)

SCHEMES = ("random", "dbscan", "blocks", "region")
"""Scheme names the command takes; `dbscan` is the demo world's DBSCAN scheme (radius scaled to it)."""
ABLATIONS = ("no_contrastive", "no_location", "no_pretraining")
METRICS = {"permafrost": ("recall_1", "f1_1", "accuracy", "balanced_accuracy", "brier"),
           "soil_order": ("recall_macro", "f1_macro", "accuracy", "brier")}


class ExperimentError(MisomapError):
    """The experiment cannot run as asked: repeated seeds, an unknown scheme."""


def check_request(seeds: list[int], schemes: list[str] | None) -> None:
    """Refuse repeated seeds and unknown schemes before any work starts."""
    if not seeds:
        raise ExperimentError("no seed given: pass --seeds, e.g. --seeds 0 1 2")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ExperimentError(f"seed(s) {repeated} given more than once in {seeds}: each seed is one world")
    unknown = sorted(set(schemes or ()) - set(SCHEMES))
    if unknown:
        raise ExperimentError(f"unknown fold scheme(s) {unknown}: choose from {list(SCHEMES)}")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_seed(out: Path, seed: int, size: str, schemes: list[str] | None, max_folds: int | None,
             ablations: bool, max_steps: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One world: every stage of the demo with MISO on `schemes` (its step budget capped at
    `max_steps` if given); returns the per-fold scores of every model and the map-vs-truth table
    of the RF and MISO maps."""
    from misomap.config import config_from_dict
    from misomap.demo.world import generate_world, rustac_serve_files
    from misomap.jobs.build_cube import run_build_cube
    from misomap.jobs.demo import _same_world, demo_run_config, demo_scheme
    from misomap.evaluation.map_truth import map_vs_truth
    from misomap.jobs.predict import run_predict, with_map
    from misomap.mapping.chunk import zarr_url
    from misomap.jobs.train_miso import run_pretrain, run_train_miso
    from misomap.jobs.train_rf import train_rf
    from misomap.services.stac_api import stac_api_server

    out.mkdir(parents=True, exist_ok=True)
    world = out / "world"
    if not _same_world(world, seed, size):
        generate_world(world, seed=seed, size=size)
    with stac_api_server(rustac_serve_files(world), out / "services") as (url, _):
        config = demo_run_config(world, out, url, seed)
        run_build_cube(config)
    train_rf(config)
    pretrained = run_pretrain(config)
    data = demo_run_config(world, out, url, seed, pretrained).model_dump(mode="json")
    names = {"dbscan": demo_scheme(world)}
    data["miso"].update(schemes=[names.get(s, s) for s in schemes] if schemes else None,
                        max_folds=max_folds, ablations=list(ABLATIONS) if ablations else [])
    if max_steps:
        data["miso"]["train"]["max_steps"] = max_steps
    config = config_from_dict(data, f"experiment seed {seed}")
    miso = run_train_miso(config)
    truth = []
    for model, path in (("rf", str(out / "models" / "rf")), ("miso", miso.final_model)):
        cfg = with_map(config, model, path)
        run_predict(cfg, overwrite=True)
        truth.append(map_vs_truth(zarr_url(cfg.map), world).assign(model=model))
    return fold_scores(config, ["rf", "miso", *(f"miso_{a}" for a in ABLATIONS)]), pd.concat(truth)


def fold_scores(config, models: list[str]) -> pd.DataFrame:
    """Per-fold metrics of every model with predictions, each scheme restricted to the folds every
    model ran on, with the training seconds of each fold."""
    from misomap.core.errors import MissingObjectError
    from misomap.evaluation.comparison import common_folds, fold_seconds
    from misomap.evaluation.scores import evaluate, model_dir, read_predictions
    from misomap.labels.training_table import read_training

    table, _ = read_training(config.workdir, config.storage)
    preds = {}
    for name in models:
        loc = f"{model_dir(config.workdir, name)}/predictions.parquet"
        try:
            preds[name] = (read_predictions(loc, config.storage), loc)
        except MissingObjectError:
            continue
    rows = []
    for name, (p, loc) in preds.items():
        common = common_folds(p, preds)
        secs = fold_seconds(common, name)
        for target, ev in evaluate(common, table, config.evaluation, source=loc).items():
            pf = ev.per_fold.assign(model=name, target=target)
            pf["train_seconds"] = [secs.get((s, f), np.nan) for s, f in zip(pf["scheme"], pf["fold"])]
            rows.append(pf)
    return pd.concat(rows, ignore_index=True)


def _pm(values: pd.Series) -> str:
    v = values.dropna()
    return "–" if v.empty else f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def summarise(folds: pd.DataFrame, truth: pd.DataFrame, seeds: list[int], commit: str,
              seconds: float) -> str:
    """The experiment's Markdown: CV table (mean ± sd over every fold of every seed, and the sd of
    the per-seed means), map-vs-truth table (mean ± sd over seeds), training time per fold."""
    lines = [f"# MISO vs Random Forest over {len(seeds)} demo world(s) (seeds {seeds})", "",
             f"Made by `misomap experiment` at commit `{commit}` in {seconds / 60:.0f} min. Cross-"
             "validation: mean ± sd over the test folds of every seed (folds × seeds), then [sd of the "
             "per-seed means]; each model scored on the same folds. Ablations are MISO variants.", ""]
    for target, metrics in METRICS.items():
        sub = folds[folds["target"] == target]
        if sub.empty:
            continue
        lines += [f"## Cross-validation: {target}", "",
                  "| model | scheme | folds | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 3) + "|"]
        for (model, scheme), g in sub.groupby(["model", "scheme"], sort=True):
            per_seed = g.groupby("seed")[list(metrics)].mean()
            cells = [f"{_pm(g[m])} [{per_seed[m].std(ddof=1) if len(per_seed) > 1 else 0.0:.3f}]"
                     for m in metrics]
            lines.append(f"| {model} | {scheme} | {len(g)} | " + " | ".join(cells) + " |")
        lines.append("")
    if not truth.empty:
        lines += ["## Maps against the truth rasters (mean ± sd over seeds)", "",
                  "| target | by | group | model | accuracy | recall_macro | f1_macro |", "|---" * 7 + "|"]
        for (target, by, group, model), g in truth.groupby(["target", "by", "group", "model"], sort=False):
            lines.append(f"| {target} | {by} | {group} | {model} | {_pm(g['accuracy'])} | "
                         f"{_pm(g['recall_macro'])} | {_pm(g['f1_macro'])} |")
        lines.append("")
    t = folds.drop_duplicates(["seed", "model", "scheme", "fold"])
    lines += ["## Training time per fold (s, this machine)", "", "| model | mean | sd | folds |",
              "|---|---|---|---|"]
    for model, g in t.groupby("model"):
        lines.append(f"| {model} | {g['train_seconds'].mean():.1f} | {g['train_seconds'].std(ddof=1):.1f} | "
                     f"{len(g)} |")
    return "\n".join(lines) + "\n"


def run_experiment(out: Path, seeds: list[int], size: str = "tiny", schemes: list[str] | None = None,
                   max_folds: int | None = None, ablations: bool = True, max_steps: int | None = None) -> Path:
    """Every seed's world, both models, the tables; returns `<out>/experiment.md`."""
    check_request(seeds, schemes)
    out = out.resolve()
    t0 = time.perf_counter()
    folds, truth = [], []
    for seed in seeds:
        log.info("experiment: seed %d", seed)
        f, t = run_seed(out / f"seed{seed}", seed, size, schemes, max_folds, ablations, max_steps)
        folds.append(f.assign(seed=seed))
        truth.append(t.assign(seed=seed))
        pd.concat(folds).to_csv(out / "experiment_folds.csv", index=False)
        pd.concat(truth).to_csv(out / "experiment_truth.csv", index=False)
    text = summarise(pd.concat(folds), pd.concat(truth), seeds, _commit(), time.perf_counter() - t0)
    text += (f"\nSettings: world size `{size}`, MISO schemes {schemes or 'all'}, max_folds {max_folds}, "
             f"ablations {ablations}, MISO step cap {max_steps or 'the demo config'}.\n")
    (out / "experiment.md").write_text(text)
    (out / "experiment.json").write_text(json.dumps({"seeds": seeds, "size": size, "schemes": schemes,
                                                     "max_folds": max_folds, "ablations": ablations,
                                                     "max_steps": max_steps}))
    log.info("experiment written to %s", out / "experiment.md")
    return out / "experiment.md"
