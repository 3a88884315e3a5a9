"""Diagnostics over finished `misomap experiment` runs: one runner, one subcommand per study.

`misomap experiment` makes the runs (worlds, cubes, both models on the shared folds, maps against
the truth, the tables). The studies here read those run folders (`--run DIR`, each holding
`seed<k>/run.yaml`) and write their tables into `--out` (default `bench/results/experiment/`):

    python bench/experiments.py variants --run RUN --variants miso_wide --out capacity.md
    python bench/experiments.py climate-novelty --run "β = 0=RUN0:miso_selected" --run "β = 0.5=RUN5:miso"
    python bench/experiments.py beta-nested inner --beta0 RUN0:miso_no_location --beta05 RUN5:miso
    python bench/experiments.py beta-nested rf    --beta0 RUN0:miso_no_location --beta05 RUN5:miso
    python bench/experiments.py beta-nested table --beta0 RUN0:miso_no_location --beta05 RUN5:miso
    python bench/experiments.py fit-budget --run RUN --seed 0 --steps 240 900

- `variants`: MISO design variants cross-validated on the largest test fold of each scheme per world
  (chosen by size, never by score) beside the run's `miso` and `rf` on the same pedons. A diagnostic
  on test folds: a variant enters MISO's design only through nested validation (`--design`).
- `climate-novelty`: every test pedon's climate distance (z-scored precipitation, summer warmth,
  January minimum) to the nearest pedon its model trained on (`labels.folds.distance_to_training`),
  terciles per world and scheme, both models scored on the same pedons; nothing is trained.
- `beta-nested`: the class-balance power β ∈ {0, 0.5} chosen per test fold by nested validation for
  both models by one rule (mean inner score over the inner folds `miso.design` uses; ties to 0):
  `inner` runs MISO's inner folds of the β = 0.5 run, `rf` the RF's at both β (`rf_cv.fit_fold`),
  `table` scores the choice.
- `fit-budget`: MISO trained on every labelled pedon of one world and scored on those same pedons
  at several step budgets: does it fit its own rare-order pedons?

Pools of two one-thread processes run the trainings on the 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import time
import warnings
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).parent / "results" / "experiment"
SCHEMES = ("dbscan_256m", "region")
"""The fold schemes studied (`--schemes`; the demo world's DBSCAN scheme is 256 m, the tiny world's 64 m)."""
PF_SO = {"PF recall": ("permafrost", "recall_1"), "PF F1": ("permafrost", "f1_1"),
         "SO macro recall": ("soil_order", "recall_macro"), "SO acc": ("soil_order", "accuracy")}
VARIANTS = {  # replacements inside the run's `miso` section (nested sections merged)
    "miso_wide": {"feature_dim": 128, "liif": {"hidden": 128}},  # a decoder twice as wide
    "miso_dihedral": {"crops": {"dihedral": True}},  # each training crop in one of 8 orientations
    "miso_pixhead": {"loss": {"pixel_head": 0.5}},  # auxiliary heads on the query pixel's bands
    "miso_dihedral_pixhead": {"crops": {"dihedral": True}, "loss": {"pixel_head": 0.5}},
    "miso_clip": {"imagery": {"clip": "training"}, "covariates": {"clip": "training"}},  # bands clamped
    "miso_900_p3": {"train": {"max_steps": 900, "epochs": 30, "patience": 3}},  # a longer step cap
    "miso_900_p30": {"train": {"max_steps": 900, "epochs": 30, "patience": 30}},  # ... and patience
}


def commit() -> str:
    """The checkout's commit, for the record each table carries."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_config(root: Path, k: int, miso: dict | None = None, threads: int = 1):
    """World k's run configuration from `root/seed<k>/run.yaml`, with `miso` replacements merged."""
    from misomap.config import config_from_dict
    d = yaml.safe_load((root / f"seed{k}/run.yaml").read_text())
    d["miso"].setdefault("train", {})["threads"] = threads
    for key, value in (miso or {}).items():
        if isinstance(value, dict) and d["miso"].get(key, {}) is None:
            continue  # a section this run leaves out (e.g. no covariate encoder) stays out
        d["miso"][key] = {**d["miso"].get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(d, f"seed {k}")


def pool_map(fn, tasks: list) -> None:
    """Run `fn` over `tasks` in two one-thread processes, printing each result as it comes."""
    t0 = time.perf_counter()
    with get_context("spawn").Pool(2, maxtasksperchild=1) as pool:
        for msg in pool.imap_unordered(fn, tasks):
            print(f"[{time.perf_counter() - t0:.0f} s] {msg}", flush=True)


def scores_of(run, preds: dict) -> pd.DataFrame:
    """Per-fold scores of every model in `preds` on the folds all of them ran."""
    from misomap.evaluation.experiment import fold_scores
    from misomap.labels.training_table import read_training
    table, _ = read_training(run.workdir, run.storage)
    return fold_scores(run.evaluation, table, preds)


# --- variants ---------------------------------------------------------------------------------------

def variant_job(task: tuple[Path, str, int, str]) -> str:
    """Cross-validate one variant on the largest test fold of one scheme in one world."""
    from misomap.core.log import setup_logging
    from misomap.evaluation.scores import model_dir
    from misomap.jobs.train_miso import context
    from misomap.labels.pedons import write_parquet
    from misomap.labels.training_table import read_training
    from misomap.training.miso_cv import cross_validate
    from misomap.training.miso_inputs import load_arrays
    setup_logging()
    root, name, k, scheme = task
    run = run_config(root, k, VARIANTS[name])
    out = f"{model_dir(run.workdir, name)}/predictions_{scheme}.parquet"
    if Path(out).exists():
        return f"{task[1:]} done before"
    cfg = run.miso.model_copy(update={"schemes": [scheme], "max_folds": 1})
    table, folds = read_training(run.workdir, run.storage)
    arrays = load_arrays(run.cube_location(), run.storage, cfg)
    t0 = time.perf_counter()
    frame, _ = cross_validate(context(run), cfg, name, arrays, table, folds)
    write_parquet(out, frame, run.storage)
    return f"{task[1:]} in {time.perf_counter() - t0:.0f} s"


def variants(args: argparse.Namespace) -> str:
    """The variants' table: fold means per scheme and model, rare orders' recall beside."""
    from misomap.evaluation.experiment import predictions
    from misomap.evaluation.scores import model_dir
    pool_map(variant_job, [(args.run, v, k, s) for v in args.variants for k in args.seeds for s in SCHEMES])
    rows = []
    for k in args.seeds:
        run = run_config(args.run, k)
        preds = predictions(run.workdir, run.storage, ["rf", "miso"])
        for name in args.variants:
            preds[name] = (pd.concat([pd.read_parquet(f"{model_dir(run.workdir, name)}/predictions_{s}.parquet")
                                      for s in SCHEMES]), name)
        rows.append(scores_of(run, preds).assign(seed=k))
    s = pd.concat(rows, ignore_index=True)
    so_cols = ["recall_macro", "f1_macro", "accuracy", "recall_Mollisols", "recall_Andisols", "recall_Spodosols"]
    lines = [("| scheme | model | folds | PF recall | PF F1 | PF acc | SO macro recall | SO macro F1 | SO acc | "
             "Mollisols | Andisols | Spodosols |"), "|---" * 12 + "|"]
    for (scheme, model), g in s[s["scheme"].isin(SCHEMES)].groupby(["scheme", "model"]):
        pf, so = g[g["target"] == "permafrost"], g[g["target"] == "soil_order"]
        cells = [pf[c].mean() for c in ("recall_1", "f1_1", "accuracy")] + [so[c].mean() for c in so_cols]
        lines.append(f"| {scheme} | {model} | {len(pf)} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    return "\n".join(lines)


# --- climate novelty --------------------------------------------------------------------------------

CLIMATE = ["precip_annual", "summer_warmth", "jan_min_temp"]
NOVELTY_BINS = ["near", "middle", "far", "outside range"]


def novelty(table: pd.DataFrame, fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pedon: z-scored climate distance to the nearest training pedon of its fold's model, and
    whether any climate variable lies outside that training part's range."""
    from misomap.labels.folds import distance_to_training
    z = table[CLIMATE].to_numpy(np.float64)
    z = (z - z.mean(0)) / z.std(0)
    outside = np.zeros(len(z), bool)
    for f in np.unique(fold[fold >= 0]):
        test, train = fold == f, (fold >= 0) & (fold != f)
        lo, hi = z[train].min(0), z[train].max(0)
        outside[test] = ((z[test] < lo) | (z[test] > hi)).any(1)
    return distance_to_training(z, fold), outside


def novelty_scores(root: Path, miso: str, seeds: list[int]) -> pd.DataFrame:
    """Metrics per (seed, scheme, novelty bin, model) on the pedons both models predicted."""
    from scipy.stats import spearmanr

    from misomap.core.classes import SOIL_ORDERS
    from misomap.evaluation.comparison import common_folds
    from misomap.evaluation.experiment import predictions
    from misomap.labels.folds import distance_to_training
    from misomap.labels.training_table import read_training
    from misomap.models.metrics import binary_metrics, multiclass_metrics
    rows = []
    for k in seeds:
        run = run_config(root, k)
        table, folds = read_training(run.workdir, run.storage)
        table = table.set_index("pedon_id").loc[folds["pedon_id"]].reset_index()
        preds = predictions(run.workdir, run.storage, [miso, "rf"])
        for scheme in SCHEMES:
            col = folds[scheme].to_numpy()
            dist, outside = novelty(table, col)
            info = pd.DataFrame({"pedon_id": table["pedon_id"], "novelty": dist, "outside": outside,
                                 "map_m": distance_to_training(table[["x", "y"]].to_numpy(), col)})
            info["bin"] = pd.qcut(info["novelty"], 3, labels=NOVELTY_BINS[:3])
            rho = spearmanr(info["novelty"], info["map_m"], nan_policy="omit")[0]
            for model, (p, _) in preds.items():
                p = common_folds(p, preds)
                p = p[p["scheme"] == scheme].merge(info, on="pedon_id")
                for b in NOVELTY_BINS:
                    grp = p[p["outside"]] if b == "outside range" else p[p["bin"] == b]
                    for target, g in grp.groupby("target"):
                        m = (binary_metrics(g["y_true"], g["p_1"], warn=False) if target == "permafrost" else
                             multiclass_metrics(g["y_true"], g["y_pred"], list(SOIL_ORDERS), warn=False))
                        rows.append({"seed": k, "scheme": scheme, "bin": b, "model": "MISO" if model == miso else "RF",
                                     "target": target, "n": len(g), "rho": rho, **m})
    return pd.DataFrame(rows)


def novelty_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean over worlds of each metric per scheme, bin and model, with MISO − RF."""
    out = []
    for (scheme, b), g in scores.groupby(["scheme", "bin"], sort=False):
        row = {"scheme": scheme, "bin": b, "pedons": int(g.loc[g["target"] == "soil_order", "n"].sum() / 2),
               "rho": g["rho"].mean()}
        for name, (target, col) in PF_SO.items():
            v = g[g["target"] == target].groupby("model")[col].mean()
            row |= {f"{name} MISO": v.get("MISO"), f"{name} RF": v.get("RF"),
                    f"{name} Δ": v.get("MISO", np.nan) - v.get("RF", np.nan)}
        out.append(row)
    return pd.DataFrame(out)


def climate_novelty(args: argparse.Namespace) -> str:
    """The bin tables of every run, the region scheme's per-order recall, and the figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from misomap.core.classes import SOIL_ORDERS
    runs = {}
    for spec in args.run:
        label, _, where = spec.rpartition("=")
        root, _, miso = where.partition(":")
        runs[label] = (Path(root), miso or "miso")
    scores = {label: novelty_scores(root, miso, args.seeds) for label, (root, miso) in runs.items()}
    tables = {label: novelty_summary(s) for label, s in scores.items()}
    lines = []
    for label, t in tables.items():
        lines += [f"### {label}", "", "| scheme | climate novelty | pedons | "
                  + " | ".join(f"{m} MISO / RF (Δ)" for m in PF_SO) + " |", "|---" * (3 + len(PF_SO)) + "|"]
        for _, r in t.iterrows():
            cells = [f"{r[f'{m} MISO']:.3f} / {r[f'{m} RF']:.3f} ({r[f'{m} Δ']:+.3f})" for m in PF_SO]
            lines.append(f"| {r['scheme']} | {r['bin']} | {r['pedons']} | " + " | ".join(cells) + " |")
        rho = t.groupby("scheme")["rho"].first()
        lines += ["", "Rank correlation of climate novelty with map distance to the nearest training pedon: "
                  + ", ".join(f"{s} {v:.2f}" for s, v in rho.items()) + ".", ""]
    for label, s in scores.items():
        s = s[(s["scheme"] == "region") & (s["target"] == "soil_order")]
        o = s.groupby(["bin", "model"], sort=False)[[f"recall_{c}" for c in SOIL_ORDERS]].mean()
        lines += [f"### Region folds, recall per soil order, {label} (MISO / RF)", "",
                  "| climate novelty | " + " | ".join(SOIL_ORDERS) + " |", "|---" * (1 + len(SOIL_ORDERS)) + "|"]
        for b in NOVELTY_BINS:
            m, r = o.loc[(b, "MISO")], o.loc[(b, "RF")]
            lines.append(f"| {b} | " + " | ".join(f"{x:.2f} / {y:.2f}" for x, y in zip(m, r)) + " |")
        lines.append("")
    fig, axes = plt.subplots(len(tables), len(SCHEMES), figsize=(10, 3.4 * len(tables)), sharey=True, squeeze=False)
    for i, (label, t) in enumerate(tables.items()):
        for j, scheme in enumerate(SCHEMES):
            ax, s = axes[i, j], t[(t["scheme"] == scheme) & t["bin"].isin(NOVELTY_BINS[:3])]
            for name in PF_SO:
                ax.plot(s["bin"], s[f"{name} Δ"], marker="o", label=name)
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_title(f"{scheme}, {label}", fontsize=10)
            ax.set_xlabel("climate novelty (tercile)")
            if j == 0:
                ax.set_ylabel("MISO − RF")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "climate_novelty.png", dpi=110)
    return "\n".join(lines)


# --- β chosen by nested validation --------------------------------------------------------------------

def beta_runs(args: argparse.Namespace) -> dict[float, tuple[Path, str]]:
    """β → (its run folder, the MISO model folder scored at that β)."""
    out = {}
    for beta, spec in ((0.0, args.beta0), (0.5, args.beta05)):
        root, _, miso = spec.partition(":")
        out[beta] = (Path(root), miso or "miso")
    return out


def design_config(root: Path, k: int, scheme: str | None = None):
    """World k's run with the design section nested validation reads (inner folds, minimum share)."""
    extra = {"design": {"candidates": ["miso", "no_location"]}} | ({"schemes": [scheme]} if scheme else {})
    return run_config(root, k, extra)


def miso_inner(task: tuple[Path, str, int, str]) -> str:
    """MISO's inner folds for one world and scheme of a run (resumes from its checkpoints)."""
    from misomap.core.log import setup_logging
    from misomap.evaluation.scores import model_dir
    from misomap.jobs.train_miso import context
    from misomap.labels.pedons import write_parquet
    from misomap.labels.training_table import read_training
    from misomap.training.miso_design import inner_validate
    from misomap.training.miso_inputs import load_arrays
    setup_logging()
    root, name, k, scheme = task
    run = design_config(root, k, scheme)
    out = f"{model_dir(run.workdir, name)}/inner_{scheme}.parquet"
    if Path(out).exists():
        return f"{task[2:]} done before"
    t0 = time.perf_counter()
    table, folds = read_training(run.workdir, run.storage)
    arrays = load_arrays(run.cube_location(), run.storage, run.miso)
    inner = inner_validate(context(run), run.miso, name, run.miso.design, arrays, table, folds)
    write_parquet(out, inner, run.storage)
    return f"{task[2:]}: {len(inner)} inner folds in {time.perf_counter() - t0:.0f} s"


def rf_inner(root: Path, beta: float, k: int) -> pd.DataFrame:
    """The RF's inner scores at `beta` in world k: per scheme, test fold and inner fold, each task's
    macro recall on the held-out inner fold and their mean."""
    from misomap.labels.folds import inner_folds
    from misomap.labels.pedons import TARGETS
    from misomap.labels.training_table import feature_bands, read_training
    from misomap.models.miso.train import macro_recall
    from misomap.models.rf import predict_proba, select_features
    from misomap.training.miso_cv import scored_folds
    from misomap.training.rf_cv import fit_fold, target_rows
    run = design_config(root, k)
    evaluation = run.evaluation.model_copy(update={"class_balance": beta})
    table, folds = read_training(run.workdir, run.storage)
    features = select_features(feature_bands(table), run.rf)
    design = run.miso.design
    data = {}
    for target in TARGETS:
        t = target_rows(table, target, features)
        data[target] = (t, t[features].to_numpy(np.float32), t["label"].to_numpy(), t[["x", "y"]].to_numpy(np.float64))
    rows = []
    for scheme in SCHEMES:
        col_all = folds.set_index("pedon_id")[scheme]
        for fold in scored_folds(col_all.to_numpy(), None):
            for g in inner_folds(col_all.to_numpy(), fold, design.inner_folds, design.min_share):
                rec = {}
                for target, (t, X, y, xy) in data.items():
                    inner = np.where(col_all.loc[t["pedon_id"]].to_numpy() == fold, -1,
                                     col_all.loc[t["pedon_id"]].to_numpy())
                    model = fit_fold(X, y, xy, inner, g, features, target, evaluation, run.rf, run.seed)
                    held = inner == g
                    classes = list(TARGETS[target])
                    pred = np.asarray(classes)[predict_proba(model, X[held], classes).argmax(1)]
                    rec[f"{target}_macro_recall"] = macro_recall(y[held], pred)  # PF: balanced accuracy
                rows.append({"beta": beta, "seed": k, "scheme": scheme, "fold": int(fold), "inner_fold": int(g),
                             **rec, "score": float(np.mean(list(rec.values())))})
    return pd.DataFrame(rows)


def inner_of(folder: Path) -> pd.DataFrame:
    """A MISO model's inner scores on the studied schemes: the `inner.parquet` a design choice wrote,
    or the per-scheme files `beta-nested inner` writes."""
    if (folder / "inner.parquet").exists():
        m = pd.read_parquet(folder / "inner.parquet")
        return m[m["scheme"].isin(SCHEMES)]
    return pd.concat([pd.read_parquet(folder / f"inner_{s}.parquet") for s in SCHEMES])


def beta_table(args: argparse.Namespace) -> str:
    """Fold scores of both models at each β and at the β nested validation chose; how often each β
    was chosen; the map model's β per world and its map against the truth."""
    from misomap.evaluation.comparison import common_folds
    from misomap.evaluation.experiment import predictions
    from misomap.evaluation.scores import evaluate
    from misomap.labels.training_table import read_training
    runs = beta_runs(args)
    parts = []
    for beta, (root, name) in runs.items():
        for k in args.seeds:
            m = inner_of(root / f"seed{k}/models/{name}")
            parts.append(m.assign(family="MISO", beta=beta, seed=k))
            parts.append(pd.read_parquet(args.work / f"rf_inner_b{beta:g}_seed{k}.parquet").assign(family="RF"))
    mean = pd.concat(parts, ignore_index=True).groupby(["family", "seed", "scheme", "fold", "beta"])["score"].mean()
    mean = mean.unstack("beta")
    chosen = mean.idxmax(axis=1)  # first maximum: β = 0 on ties
    rows = []
    for k in args.seeds:
        run = run_config(runs[0.0][0], k)
        table_k, _ = read_training(run.workdir, run.storage)
        preds = {}
        for beta, (root, name) in runs.items():
            r = run_config(root, k)
            for family, folder in (("MISO", name), ("RF", "rf")):
                p, loc = predictions(r.workdir, r.storage, [folder])[folder]
                preds[f"{family} β={beta:g}"] = (p[p["scheme"].isin(SCHEMES)], loc)
        for family in ("MISO", "RF"):
            picked = []
            for (scheme, fold), beta in chosen.loc[(family, k)].items():
                p = preds[f"{family} β={beta:g}"][0]
                picked.append(p[(p["scheme"] == scheme) & (p["fold"] == fold)].assign(beta=beta))
            preds[f"{family} β nested"] = (pd.concat(picked, ignore_index=True), "nested")
        for name, (p, loc) in preds.items():
            for target, ev in evaluate(common_folds(p, preds), table_k, run.evaluation, source=loc).items():
                rows.append(ev.per_fold.assign(model=name, target=target, seed=k))
    folds = pd.concat(rows, ignore_index=True)
    folds.to_csv(args.out / "beta_nested_folds.csv", index=False)
    lines = ["| scheme | model | PF recall | PF F1 | PF acc | SO macro recall | SO macro F1 | SO acc | β = 0.5 chosen |",
             "|---" * 9 + "|"]
    for scheme in SCHEMES:
        for model in ("MISO β=0", "MISO β=0.5", "MISO β nested", "RF β=0", "RF β=0.5", "RF β nested"):
            g = folds[(folds["scheme"] == scheme) & (folds["model"] == model)]
            pf, so = g[g["target"] == "permafrost"], g[g["target"] == "soil_order"]
            cells = [pf["recall_1"].mean(), pf["f1_1"].mean(), pf["accuracy"].mean(),
                     so["recall_macro"].mean(), so["f1_macro"].mean(), so["accuracy"].mean()]
            picks = ""
            if model.endswith("nested"):
                c = chosen.loc[model.split()[0]].xs(scheme, level="scheme")
                picks = f"{int((c == 0.5).sum())} of {len(c)}"
            lines.append(f"| {scheme} | {model} | " + " | ".join(f"{v:.3f}" for v in cells) + f" | {picks} |")
    map_beta = mean.xs("region", level="scheme").groupby(["family", "seed"]).mean().idxmax(axis=1)
    lines += ["", "Map model's β (best mean inner score over the region scheme's test folds), per world: "
              + "; ".join(f"{f} " + ", ".join(f"{map_beta.loc[(f, k)]:g}" for k in args.seeds) for f in ("MISO", "RF"))
              + ".", "", ("Maps against the truth, every land pixel, mean over the worlds of the map made at each "
              "world's chosen β (`experiment_truth.csv` of each run):"), "",
              "| map | PF accuracy | SO accuracy | SO macro recall | SO macro F1 |", "|---|---|---|---|---|"]
    for family, model in (("MISO", "miso"), ("RF", "rf")):
        picked = []
        for k in args.seeds:
            truth = pd.read_csv(runs[map_beta.loc[(family, k)]][0] / "experiment_truth.csv")
            picked.append(truth[(truth["by"] == "all") & (truth["model"] == model) & (truth["seed"] == k)])
        m = pd.concat(picked).groupby("target")[["accuracy", "recall_macro", "f1_macro"]].mean()
        lines.append(f"| {family}, β nested | {m.loc['permafrost', 'accuracy']:.3f} | "
                     f"{m.loc['soil_order', 'accuracy']:.3f} | {m.loc['soil_order', 'recall_macro']:.3f} | "
                     f"{m.loc['soil_order', 'f1_macro']:.3f} |")
    return "\n".join(lines)


def beta_nested(args: argparse.Namespace) -> str | None:
    """One step of the β study: MISO's inner folds, the RF's, or the table."""
    runs = beta_runs(args)
    if args.step == "inner":
        root, name = runs[0.5]
        pool_map(miso_inner, [(root, name, k, s) for k in args.seeds for s in SCHEMES])
        return None
    if args.step == "rf":
        logging.disable(logging.WARNING)
        args.work.mkdir(parents=True, exist_ok=True)
        for beta, (root, _) in runs.items():
            for k in args.seeds:
                out = args.work / f"rf_inner_b{beta:g}_seed{k}.parquet"
                if not out.exists():
                    rf_inner(root, beta, k).to_parquet(out)
                print(f"RF β={beta:g} world {k}", flush=True)
        return None
    return beta_table(args)


# --- fit budget -------------------------------------------------------------------------------------

def fit_budget(args: argparse.Namespace) -> str:
    """Per step budget: MISO trained on every labelled pedon of one world, P(class) and argmax recall
    at its own training pedons per soil order."""
    import torch

    from misomap.core.classes import SOIL_ORDERS
    from misomap.labels.training_table import read_training
    from misomap.models.miso.train import predict_at
    from misomap.training.miso_cv import FsCheckpointStore, _fit, weighted_config
    from misomap.training.miso_inputs import (
        clip_to_pedons,
        label_points,
        load_arrays,
        read_weights,
        resolve_config,
    )
    lines = ["| steps | soil order | pedons | median P(own class) | argmax right |", "|---|---|---|---|---|"]
    for steps in args.steps:
        run = run_config(args.run, args.seed, {"train": {"epochs": max(10, steps // 30), "max_steps": steps}})
        cfg = run.miso
        table, _ = read_training(run.workdir, run.storage)
        arrays = load_arrays(run.cube_location(), run.storage, cfg)
        ckpts = read_weights(cfg, run.storage)
        cfg = resolve_config(weighted_config(cfg, run.evaluation), arrays, ckpts)
        points = label_points(table)
        lab = (points.permafrost >= 0) | (points.soil >= 0)
        store = FsCheckpointStore(str(args.work / f"fit_budget/s{args.seed}_{steps}"), run.storage)
        model, sampler, _ = _fit(clip_to_pedons(cfg, table[lab]), arrays, ckpts, points, lab,
                                 np.zeros(len(points), bool), store, run.seed, steps)
        pts = points.subset(np.flatnonzero(lab))
        P = predict_at(model, sampler, pts, torch.device("cpu"))["soil_order"]
        for c, name in enumerate(SOIL_ORDERS):
            m = pts.soil == c
            if m.any():
                lines.append(f"| {steps} | {name} | {int(m.sum())} | {np.median(P[m, c]):.3f} | "
                             f"{(P[m].argmax(1) == c).mean():.2f} |")
    return "\n".join(lines)


def main() -> None:
    global SCHEMES
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="folder for the tables (default: %(default)s)")
    ap.add_argument("--seeds", type=lambda v: [int(k) for k in v.split(",")], default=[0, 1, 2],
                    help="the run's world seeds, comma-separated (default: 0,1,2)")
    ap.add_argument("--schemes", type=lambda v: v.split(","), default=list(SCHEMES),
                    help="fold schemes, comma-separated (default: dbscan_256m,region)")
    sub = ap.add_subparsers(dest="study", required=True)
    v = sub.add_parser("variants", help="MISO design variants on the largest test folds")
    v.add_argument("--run", type=Path, required=True, help="a `misomap experiment` output folder")
    v.add_argument("--variants", nargs="+", choices=list(VARIANTS), required=True)
    v.add_argument("--name", required=True, help="file name of the table, e.g. capacity.md")
    c = sub.add_parser("climate-novelty", help="both models by the climate novelty of test pedons")
    c.add_argument("--run", action="append", required=True, help="LABEL=RUN_DIR:MISO_MODEL_FOLDER (repeatable)")
    b = sub.add_parser("beta-nested", help="β chosen by nested validation for both models")
    b.add_argument("step", choices=["inner", "rf", "table"])
    b.add_argument("--beta0", required=True, help="RUN_DIR:MISO_MODEL_FOLDER of the β = 0 run")
    b.add_argument("--beta05", required=True, help="RUN_DIR:MISO_MODEL_FOLDER of the β = 0.5 run")
    b.add_argument("--work", type=Path, default=Path("bench/out/beta_nested"), help="the RF's inner scores")
    f = sub.add_parser("fit-budget", help="MISO's fit of its own training pedons per step budget")
    f.add_argument("--run", type=Path, required=True)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--steps", type=int, nargs="+", default=[240, 900])
    f.add_argument("--work", type=Path, default=Path("bench/out"), help="checkpoints")
    args = ap.parse_args()
    SCHEMES = tuple(args.schemes)
    args.out.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    from misomap.core.log import setup_logging
    setup_logging("WARNING")
    t0 = time.perf_counter()
    text = {"variants": variants, "climate-novelty": climate_novelty, "beta-nested": beta_nested,
            "fit-budget": fit_budget}[args.study](args)
    if text is None:
        return
    name = {"variants": getattr(args, "name", None), "climate-novelty": "climate_novelty.md",
            "beta-nested": "beta_nested.md", "fit-budget": "fit_budget.md"}[args.study]
    header = (f"`python bench/experiments.py {args.study}` at commit `{commit()}` over seeds {args.seeds}, "
              f"{time.perf_counter() - t0:.0f} s on this machine.")
    (args.out / name).write_text(f"{header}\n\n{text}\n")
    print(text)


if __name__ == "__main__":
    main()
