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

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from misomap.core.errors import MisomapError
from misomap.labels.folds import distance_to_training
from misomap.models.miso.config import ABLATIONS, SELECTED, DesignConfig, Variant

log = logging.getLogger(__name__)

SCHEMES = ("random", "dbscan", "blocks", "region")
"""Scheme names the command takes; `dbscan` is the demo world's DBSCAN scheme (radius scaled to it)."""
BINS = ("near", "middle", "far")
METRICS = {"permafrost": ("recall_1", "f1_1", "accuracy", "balanced_accuracy", "brier"),
           "soil_order": ("recall_macro", "f1_macro", "accuracy", "brier")}


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


def score_seed(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The tables of one finished seed folder: per-fold scores of the RF, MISO, the wave-1 design
    (`location_input`) and, under a design choice, the candidates and `miso_selected` (where they
    ran; each scheme on the folds all of them ran), per-fold scores of the RF, MISO and its
    ablations on the folds all of them ran, the CV scores by distance to the nearest training
    pedon, the maps against the truth (empty until the seed's maps are made) and the CV scores
    pooled over each scheme's test pedons."""
    from misomap.config import load_config
    from misomap.labels.training_table import read_training

    config = load_config(out / "run.yaml")
    table, folds = read_training(config.workdir, config.storage)
    record = _design_record(config)
    candidates = record["candidates"] if record else []
    main = _predictions(config, list(dict.fromkeys(["rf", "miso", SELECTED, "miso_location_input", *candidates])))
    variants = _predictions(config, ["rf", "miso", *(f"miso_{a}" for a in ABLATIONS)])
    ablation = fold_scores(config, table, variants) if len(variants) > 2 else pd.DataFrame()
    truth = pd.read_csv(out / "map_truth.csv") if (out / "map_truth.csv").exists() else pd.DataFrame()
    return (fold_scores(config, table, main), ablation, distance_scores(config, table, folds, main), truth,
            pooled_scores(config, table, main))


def _predictions(config, models: list[str]) -> dict[str, tuple[pd.DataFrame, str]]:
    from misomap.core.errors import MissingObjectError
    from misomap.evaluation.scores import model_dir, read_predictions

    preds = {}
    for name in models:
        loc = f"{model_dir(config.workdir, name)}/predictions.parquet"
        try:
            preds[name] = (read_predictions(loc, config.storage), loc)
        except MissingObjectError:
            continue
    return preds


def fold_scores(config, table: pd.DataFrame, preds: dict[str, tuple[pd.DataFrame, str]]) -> pd.DataFrame:
    """Per-fold metrics of every model in `preds`, each scheme restricted to the folds every
    model ran on, with the training seconds of each fold."""
    from misomap.evaluation.comparison import common_folds, fold_seconds
    from misomap.evaluation.scores import evaluate

    rows = []
    for name, (p, loc) in preds.items():
        common = common_folds(p, preds)
        secs = fold_seconds(common, name)
        for target, ev in evaluate(common, table, config.evaluation, source=loc).items():
            pf = ev.per_fold.assign(model=name, target=target)
            pf["train_seconds"] = [secs.get((s, f), np.nan) for s, f in zip(pf["scheme"], pf["fold"])]
            rows.append(pf)
    return pd.concat(rows, ignore_index=True)


def pooled_scores(config, table: pd.DataFrame, preds: dict[str, tuple[pd.DataFrame, str]]) -> pd.DataFrame:
    """CV scores of every model pooled over all test pedons of a scheme (the folds every model ran):
    each fold weighs by its pedons, so a region of 7 pedons does not weigh as much as one of 700."""
    from misomap.evaluation.comparison import common_folds
    from misomap.evaluation.scores import evaluate

    rows = []
    for name, (p, loc) in preds.items():
        pooled = common_folds(p, preds).assign(fold=0)  # the scheme stands in for the fold
        for target, ev in evaluate(pooled, table, config.evaluation, source=loc).items():
            rows.append(ev.per_fold.drop(columns="fold").assign(model=name, target=target))
    return pd.concat(rows, ignore_index=True)


def distance_scores(config, table: pd.DataFrame, folds: pd.DataFrame,
                    preds: dict[str, tuple[pd.DataFrame, str]]) -> pd.DataFrame:
    """CV scores pooled by distance from each test pedon to the nearest pedon of the other folds
    (its model's training part), in three bins (near, middle, far) whose edges are the terciles of
    that distance over every pedon of the schemes MISO ran on (rounded to 10 m, as
    `map_truth.distance_bins`); the same pedons for every model (the folds all of them ran)."""
    from misomap.evaluation.comparison import common_folds
    from misomap.evaluation.map_truth import DISTANCE_QUANTILES, distance_bins
    from misomap.evaluation.scores import evaluate

    if "miso" not in preds:
        return pd.DataFrame()
    schemes = sorted(set(preds[_claim(preds)][0]["scheme"]))
    xy = table[["x", "y"]].to_numpy(np.float64)
    dist = pd.DataFrame({s: distance_to_training(xy, folds[s].to_numpy()) for s in schemes})
    dist.index = table["pedon_id"].astype(str).to_numpy()
    pooled = dist.to_numpy().ravel()
    pooled = pooled[np.isfinite(pooled)]
    _, names = distance_bins(pooled)
    edges = np.round(np.quantile(pooled, DISTANCE_QUANTILES), -1)
    out = []
    for name, (p, loc) in preds.items():
        common = common_folds(p[p["scheme"].isin(schemes)], preds)
        d = np.array([dist.at[pid, s] for pid, s in zip(common["pedon_id"].astype(str), common["scheme"])])
        # each bin scored as one pooled group: the bin stands in for the fold
        binned = common.assign(fold=np.searchsorted(edges, d, side="right"))
        for target, ev in evaluate(binned, table, config.evaluation, source=loc).items():
            pf = ev.per_fold.rename(columns={"fold": "bin_code"})
            out.append(pf.assign(bin=np.asarray(BINS)[pf["bin_code"]], edges=np.asarray(names)[pf["bin_code"]],
                                 model=name, target=target))
    return pd.concat(out, ignore_index=True)


def _claim(models) -> str:
    """The MISO the claim is scored on: the nested-CV selection where the run chose a design."""
    return SELECTED if SELECTED in models else "miso"


def design_choices(out: Path) -> pd.DataFrame:
    """Each test fold's mean inner score per candidate and the candidate chosen, with the map
    model's design, from the `design.json` a run with a design choice wrote (empty otherwise)."""
    from misomap.config import load_config

    record = _design_record(load_config(out / "run.yaml"))
    return pd.DataFrame(record["folds"]).assign(map_model=record["map_model"]) if record else pd.DataFrame()


def _design_record(config) -> dict | None:
    """The `design.json` of a run that chose MISO's design (None if it did not)."""
    from misomap.core.errors import MissingObjectError
    from misomap.core.storage import Target
    from misomap.evaluation.scores import model_dir

    try:
        return json.loads(Target(f"{model_dir(config.workdir, SELECTED)}/design.json", config.storage).read_bytes())
    except MissingObjectError:
        return None


def _design_table(design: pd.DataFrame) -> list[str]:
    """How often each candidate was chosen per scheme, its mean inner score, and the map's design."""
    if design.empty:
        return []
    candidates = [c for c in design.columns if c.startswith("miso")]
    lines = ["## Design chosen by nested validation (inner folds inside each training part)", "",
             "Per test fold, each candidate is cross-validated again on the same scheme inside the training "
             "part (the largest inner folds); the fold is predicted by the best mean inner score "
             "(`miso_selected`). Inner score: mean over tasks of macro recall.", "",
             "| scheme | test folds | " + " | ".join(f"{c}: inner score · chosen" for c in candidates) + " |",
             "|---" * (len(candidates) + 2) + "|"]
    for scheme, g in design.groupby("scheme"):
        cells = [f"{_pm(g[c])} · {int((g['chosen'] == c).sum())}" for c in candidates]
        lines.append(f"| {scheme} | {len(g)} | " + " | ".join(cells) + " |")
    maps = design.drop_duplicates("seed").set_index("seed")["map_model"]
    lines += ["", "Map model per seed: " + ", ".join(f"seed {k}: {m}" for k, m in maps.items()) + ".", ""]
    return lines


def validation_scores(out: Path) -> pd.DataFrame:
    """Each MISO variant's validation score per fold (its early-stopping score on the split carved
    inside that fold's training part), from the `training.json` each cross-validation wrote."""
    from misomap.config import load_config
    from misomap.core.errors import MissingObjectError
    from misomap.core.storage import Target
    from misomap.evaluation.scores import model_dir

    config = load_config(out / "run.yaml")
    rows = []
    for name in ["miso", *(f"miso_{a}" for a in ABLATIONS)]:
        try:
            stats = json.loads(Target(f"{model_dir(config.workdir, name)}/training.json", config.storage).read_bytes())
        except MissingObjectError:
            continue
        rows += [{"model": name, "scheme": f["scheme"], "fold": f["fold"], "val_score": f.get("val_score")}
                 for f in stats["folds"]]
    return pd.DataFrame(rows)


def _validation_table(val: pd.DataFrame) -> list[str]:
    """Every variant against the full model on the folds both ran, scored on validation only."""
    if val.empty or "miso" not in set(val["model"]) or val["val_score"].isna().all():
        return []
    key = ["seed", "scheme", "fold"]
    full = val[val["model"] == "miso"].set_index(key)["val_score"]
    lines = ["## Variants on their validation splits (inside each training part; no test fold)", "",
             "The score validation selects with (mean macro recall of the two tasks), mean ± sd over the folds "
             "both the variant and the full model ran.", "",
             "| variant | scheme | folds | variant | full model | variant − full |", "|---" * 6 + "|"]
    rows = []
    for (model, scheme), g in val[val["model"] != "miso"].groupby(["model", "scheme"]):
        v = g.set_index(key)["val_score"]
        both = v.index.intersection(full.index)
        if len(both):
            rows.append(f"| {model} | {scheme} | {len(both)} | {_pm(v[both])} | {_pm(full[both])} | "
                        f"{_pm(v[both] - full[both])} |")
    return lines + rows + [""] if rows else []


def _pm(values: pd.Series) -> str:
    v = values.dropna()
    return "–" if v.empty else f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def _cv_table(folds: pd.DataFrame, title: str, unit: str = "folds") -> list[str]:
    lines = []
    for target, metrics in METRICS.items():
        sub = folds[folds["target"] == target]
        if sub.empty:
            continue
        lines += [f"## {title}: {target}", "",
                  f"| model | scheme | {unit} | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 3) + "|"]
        for (model, scheme), g in sub.groupby(["model", "scheme"], sort=True):
            per_seed = g.groupby("seed")[list(metrics)].mean()
            cells = [_pm(g[m]) if unit == "seeds" else
                     f"{_pm(g[m])} [{per_seed[m].std(ddof=1) if len(per_seed) > 1 else 0.0:.3f}]" for m in metrics]
            lines.append(f"| {model} | {scheme} | {len(g)} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _per_fold_table(folds: pd.DataFrame) -> list[str]:
    """Recall of the RF and MISO on each test fold of each seed (leave-one-region-out: one region
    per fold), where both ran."""
    keys = {"permafrost": "recall_1", "soil_order": "recall_macro"}
    wide = {t: folds[folds["target"] == t].pivot_table(index=["scheme", "seed", "fold"], columns="model",
                                                       values=m)
            for t, m in keys.items() if m in folds.columns and (folds["target"] == t).any()}
    if "permafrost" not in wide:
        return []
    lines = ["## Per fold (both models on the same held-out pedons)", "",
             "| scheme | seed | fold | PF recall rf | PF recall miso | SO macro recall rf | SO macro recall miso |",
             "|---" * 7 + "|"]
    pf, so = wide["permafrost"], wide.get("soil_order", pd.DataFrame())
    claim = _claim(pf.columns)
    if not {"rf", claim} <= set(pf.columns):
        return []
    lines[2] = lines[2].replace("miso", claim)
    for key, row in pf.dropna(subset=["rf", claim]).iterrows():
        s = so.loc[key] if key in so.index else pd.Series({"rf": np.nan, claim: np.nan})
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {row['rf']:.3f} | {row[claim]:.3f} | "
                     f"{s['rf']:.3f} | {s[claim]:.3f} |")
    return lines + [""]


def _distance_table(dist: pd.DataFrame) -> list[str]:
    """Recall of both models and MISO − RF by distance bin: mean ± sd over seeds."""
    lines = ["## Cross-validation by distance to the nearest training pedon (mean ± sd over seeds)", "",
             "Bins: terciles of that distance over the test pedons of MISO's schemes, per seed "
             "(edges per seed in `experiment_distance.csv`); scores pooled over the folds of a scheme.", "",
             "`miso`: the nested-CV selection (`miso_selected`) where the run chose a design.", "",
             "| target | scheme | bin | pedons | metric | rf | miso | miso − rf |", "|---" * 8 + "|"]
    for target, metrics in METRICS.items():
        for metric in metrics[:2]:
            sub = dist[dist["target"] == target]
            if sub.empty or metric not in sub.columns:
                continue
            wide = sub.pivot_table(index=["scheme", "bin", "seed"], columns="model", values=metric)
            n = sub[sub["model"] == "rf"].groupby(["scheme", "bin"])["n"].mean()
            claim = _claim(wide.columns)
            if not {"rf", claim} <= set(wide.columns):
                continue
            for scheme, b in ((s, b) for s in sorted(set(sub["scheme"])) for b in BINS):
                if (scheme, b) not in n.index:
                    continue
                g = wide.loc[(scheme, b)]
                lines.append(f"| {target} | {scheme} | {b} | {n.get((scheme, b), np.nan):.0f} | {metric} | "
                             f"{_pm(g['rf'])} | {_pm(g[claim])} | {_pm(g[claim] - g['rf'])} |")
    return lines + [""]


def summarise(folds: pd.DataFrame, ablation: pd.DataFrame, dist: pd.DataFrame, truth: pd.DataFrame,
              seeds: list[int], commit: str, seconds: float | None,
              validation: pd.DataFrame | None = None, design: pd.DataFrame | None = None,
              pooled: pd.DataFrame | None = None) -> str:
    """The experiment's Markdown: CV table (mean ± sd over every fold of every seed, and the sd of
    the per-seed means), CV by distance bin, map-vs-truth table (mean ± sd over seeds), the
    ablations on the folds they ran, training time per fold."""
    took = f" in {seconds / 60:.0f} min" if seconds else ""
    lines = [f"# MISO vs Random Forest over {len(seeds)} demo world(s) (seeds {seeds})", "",
             f"Made by `misomap experiment` at commit `{commit}`{took}. Cross-validation: mean ± sd over "
             "the test folds of every seed (folds × seeds), then [sd of the per-seed means]; both models "
             "scored on the same folds.", ""]
    lines += _cv_table(folds, "Cross-validation")
    if pooled is not None and not pooled.empty:
        lines += [("Pooled: every test pedon of a scheme scored at once (a fold weighs by its pedons), mean ± sd "
                   "over seeds."), ""]
        lines += _cv_table(pooled, "Cross-validation pooled over each scheme's pedons", "seeds")
    if design is not None:
        lines += _design_table(design)
    lines += _per_fold_table(folds)
    if not dist.empty:
        lines += _distance_table(dist)
    if not truth.empty:
        # distance terciles have their own edges per seed: group them by name (edges in the CSV)
        by_distance = truth["by"] == "distance"
        truth = truth.assign(group=truth["group"].where(~by_distance, truth["group"].str.split(" ").str[0]))
        lines += ["## Maps against the truth rasters (mean ± sd over seeds)", "",
                  "| target | by | group | model | accuracy | recall_macro | f1_macro |", "|---" * 7 + "|"]
        for (target, by, group, model), g in truth.groupby(["target", "by", "group", "model"], sort=False):
            lines.append(f"| {target} | {by} | {group} | {model} | {_pm(g['accuracy'])} | "
                         f"{_pm(g['recall_macro'])} | {_pm(g['f1_macro'])} |")
        lines.append("")
    if not ablation.empty:
        lines += [f"Ablations: seeds {sorted(set(ablation['seed']))}, every model on the same folds "
                  f"(those every variant ran).", ""]
        lines += _cv_table(ablation, "Ablations")
    if validation is not None:
        lines += _validation_table(validation)
    t = pd.concat([folds, ablation]).drop_duplicates(["seed", "model", "scheme", "fold"])
    lines += ["## Training time per fold (s, this machine)", "", "| model | mean | sd | folds |",
              "|---|---|---|---|"]
    for model, g in t.groupby("model"):
        lines.append(f"| {model} | {g['train_seconds'].mean():.1f} | {g['train_seconds'].std(ddof=1):.1f} | "
                     f"{len(g)} |")
    return "\n".join(lines) + "\n"


def write_tables(out: Path, seeds: list[int], commit: str, seconds: float | None = None) -> Path:
    """Score every finished seed folder under `out` and write the Markdown and CSV tables."""
    parts = [[t.assign(seed=seed) if not t.empty else t for t in score_seed(out / f"seed{seed}")]
             for seed in seeds]
    folds, ablation, dist, truth, pooled = (pd.concat([p[i] for p in parts], ignore_index=True) for i in range(5))
    val = pd.concat([validation_scores(out / f"seed{seed}").assign(seed=seed) for seed in seeds],
                    ignore_index=True)
    design = pd.concat([design_choices(out / f"seed{seed}").assign(seed=seed) for seed in seeds],
                       ignore_index=True)
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
