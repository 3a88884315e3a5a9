"""The tables of `misomap experiment`: per-fold, pooled and distance-binned scores of every model on
the folds all of them ran, the design choice, validation scores, and the Markdown that holds them.

Pure functions of prediction tables and the evaluation section; reading a run's files is
`predictions`, `design_record` and `validation_scores` (by workdir and storage)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from misomap.core.config_base import StorageConfig
from misomap.core.errors import MissingObjectError
from misomap.core.storage import Target
from misomap.evaluation.comparison import common_folds, fold_seconds
from misomap.evaluation.config import EvaluationConfig
from misomap.evaluation.map_truth import DISTANCE_QUANTILES, distance_bins
from misomap.evaluation.scores import evaluate, model_dir, read_predictions
from misomap.labels.folds import distance_to_training
from misomap.models.miso.config import ABLATIONS, SELECTED

BINS = ("near", "middle", "far")
METRICS = {"permafrost": ("recall_1", "f1_1", "accuracy", "balanced_accuracy", "brier"),
           "soil_order": ("recall_macro", "f1_macro", "accuracy", "brier")}
Predictions = dict[str, tuple[pd.DataFrame, str]]
"""Model name → (its prediction rows, where they were read from)."""


def predictions(workdir: str, storage: StorageConfig, models: list[str]) -> Predictions:
    """The saved cross-validation predictions of those of `models` that ran in a run's workdir."""
    preds = {}
    for name in models:
        loc = f"{model_dir(workdir, name)}/predictions.parquet"
        try:
            preds[name] = (read_predictions(loc, storage), loc)
        except MissingObjectError:
            continue
    return preds


def design_record(workdir: str, storage: StorageConfig) -> dict | None:
    """The `design.json` of a run that chose MISO's design (None if it did not)."""
    try:
        return json.loads(Target(f"{model_dir(workdir, SELECTED)}/design.json", storage).read_bytes())
    except MissingObjectError:
        return None


def validation_scores(workdir: str, storage: StorageConfig) -> pd.DataFrame:
    """Each MISO variant's validation score per fold (its early-stopping score on the split carved
    inside that fold's training part), from the `training.json` each cross-validation wrote."""
    rows = []
    for name in ["miso", *(f"miso_{a}" for a in ABLATIONS)]:
        try:
            stats = json.loads(Target(f"{model_dir(workdir, name)}/training.json", storage).read_bytes())
        except MissingObjectError:
            continue
        rows += [{"model": name, "scheme": f["scheme"], "fold": f["fold"], "val_score": f.get("val_score")}
                 for f in stats["folds"]]
    return pd.DataFrame(rows)


def fold_scores(cfg: EvaluationConfig, table: pd.DataFrame, preds: Predictions) -> pd.DataFrame:
    """Per-fold metrics of every model in `preds`, each scheme restricted to the folds every
    model ran on, with the training seconds of each fold."""
    rows = []
    for name, (p, loc) in preds.items():
        common = common_folds(p, preds)
        secs = fold_seconds(common, name)
        for target, ev in evaluate(common, table, cfg, source=loc).items():
            pf = ev.per_fold.assign(model=name, target=target)
            pf["train_seconds"] = [secs.get((s, f), np.nan) for s, f in zip(pf["scheme"], pf["fold"])]
            rows.append(pf)
    return pd.concat(rows, ignore_index=True)


def pooled_scores(cfg: EvaluationConfig, table: pd.DataFrame, preds: Predictions) -> pd.DataFrame:
    """CV scores of every model pooled over all test pedons of a scheme (the folds every model ran):
    each fold weighs by its pedons, so a region of 7 pedons does not weigh as much as one of 700."""
    rows = []
    for name, (p, loc) in preds.items():
        pooled = common_folds(p, preds).assign(fold=0)  # the scheme stands in for the fold
        for target, ev in evaluate(pooled, table, cfg, source=loc).items():
            rows.append(ev.per_fold.drop(columns="fold").assign(model=name, target=target))
    return pd.concat(rows, ignore_index=True)


def distance_scores(cfg: EvaluationConfig, table: pd.DataFrame, folds: pd.DataFrame,
                    preds: Predictions) -> pd.DataFrame:
    """CV scores pooled by distance from each test pedon to the nearest pedon of the other folds
    (its model's training part), in three bins (near, middle, far) whose edges are the terciles of
    that distance over every pedon of the schemes MISO ran on (rounded to 10 m, as
    `map_truth.distance_bins`); the same pedons for every model (the folds all of them ran)."""
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
        for target, ev in evaluate(binned, table, cfg, source=loc).items():
            pf = ev.per_fold.rename(columns={"fold": "bin_code"})
            out.append(pf.assign(bin=np.asarray(BINS)[pf["bin_code"]], edges=np.asarray(names)[pf["bin_code"]],
                                 model=name, target=target))
    return pd.concat(out, ignore_index=True)


def _claim(models) -> str:
    """The MISO the claim is scored on: the nested-CV selection where the run chose a design."""
    return SELECTED if SELECTED in models else "miso"


def _design_table(design: pd.DataFrame) -> list[str]:
    """How often each candidate was chosen per scheme, its mean inner score, and the map's design."""
    if design.empty:
        return []
    candidates = [c for c in design.columns if c.startswith("miso")]
    lines = ["## Design chosen by nested validation (inner folds inside each training part)", "",
             ("Per test fold, each candidate is cross-validated again on the same scheme inside the training "
             "part (the largest inner folds); the fold is predicted by the best mean inner score "
             "(`miso_selected`). Inner score: mean over tasks of macro recall."), "",
             "| scheme | test folds | " + " | ".join(f"{c}: inner score · chosen" for c in candidates) + " |",
             "|---" * (len(candidates) + 2) + "|"]
    for scheme, g in design.groupby("scheme"):
        cells = [f"{_pm(g[c])} · {int((g['chosen'] == c).sum())}" for c in candidates]
        lines.append(f"| {scheme} | {len(g)} | " + " | ".join(cells) + " |")
    maps = design.drop_duplicates("seed").set_index("seed")["map_model"]
    lines += ["", "Map model per seed: " + ", ".join(f"seed {k}: {m}" for k, m in maps.items()) + ".", ""]
    return lines


def _validation_table(val: pd.DataFrame) -> list[str]:
    """Every variant against the full model on the folds both ran, scored on validation only."""
    if val.empty or "miso" not in set(val["model"]) or val["val_score"].isna().all():
        return []
    key = ["seed", "scheme", "fold"]
    full = val[val["model"] == "miso"].set_index(key)["val_score"]
    lines = ["## Variants on their validation splits (inside each training part; no test fold)", "",
             ("The score validation selects with (mean macro recall of the two tasks), mean ± sd over the folds "
             "both the variant and the full model ran."), "",
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
             ("Bins: terciles of that distance over the test pedons of MISO's schemes, per seed "
             "(edges per seed in `experiment_distance.csv`); scores pooled over the folds of a scheme."), "",
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
             (f"Made by `misomap experiment` at commit `{commit}`{took}. Cross-validation: mean ± sd over "
             "the test folds of every seed (folds × seeds), then [sd of the per-seed means]; both models "
             "scored on the same folds."), ""]
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
        lines += [(f"Ablations: seeds {sorted(set(ablation['seed']))}, every model on the same folds "
                  f"(those every variant ran)."), ""]
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
