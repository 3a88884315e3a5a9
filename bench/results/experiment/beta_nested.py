"""#13: the class-balance power β chosen by nested validation, for both models by one rule.

Issue 13 asks that the class-weighting rule be chosen on validation folds only. β (each training
label weighed by its class share^−β) was run at 0 and at 0.5 and both reported, never chosen. Here
each model chooses it the way MISO's design is chosen (`miso.design`): for every test fold, the
model is cross-validated again at each β inside that fold's training part, on the same scheme and
the same inner folds (`labels.folds.inner_folds`: the two largest training folds), and the test fold
is predicted at the β with the best mean inner score: mean over the two tasks of macro recall
(balanced accuracy for permafrost), MISO's validation score; ties go to β = 0. The test folds take
no part in the choice.

- β = 0: /tmp/exp14 (MISO no-location, the design nested validation chose; its inner folds ran in
  session 5), β = 0.5 under the exact rule: /tmp/exp19 (MISO's inner folds run here).
- The RF's inner folds run here for both β (`rf_cv.fit_fold`, the fold procedure of its CV).
- The map model's β is the best mean inner score over the region scheme's test folds (the map
  scheme of `miso.design`); its map against the truth is the one already made at that β.

    python beta_nested.py inner      # MISO's β = 0.5 inner folds, 2 one-thread processes
    python beta_nested.py rf         # the RF's inner folds at both β
    python beta_nested.py table --commit <sha>   # beta_nested.md and beta_nested_folds.csv
"""
import argparse
import logging
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

SEEDS, SCHEMES = (0, 1, 2), ("region", "dbscan_256m")
OUT = Path("/tmp/exp20")  # the RF's inner scores
BETAS = {0.0: (Path("/tmp/exp14"), "miso_no_location"), 0.5: (Path("/tmp/exp19"), "miso")}
DESIGN = {"candidates": ["miso", "no_location"]}  # only inner_folds and min_share are read
HERE = Path(__file__).parent


def config(root: Path, k: int, scheme: str | None = None):
    from misomap.config import config_from_dict
    d = yaml.safe_load((root / f"seed{k}/run.yaml").read_text())
    d["miso"]["train"]["threads"] = 1
    if scheme:
        d["miso"]["schemes"] = [scheme]
    d["miso"]["design"] = DESIGN
    return config_from_dict(d, f"seed {k}")


def miso_inner(task: tuple[int, str]) -> str:
    """MISO's inner folds at β = 0.5 for one world and scheme (resumes from its checkpoints)."""
    from misomap.core.log import setup_logging
    from misomap.evaluation.scores import model_dir
    from misomap.jobs.train_miso import context
    from misomap.labels.pedons import write_parquet
    from misomap.labels.training_table import read_training
    from misomap.training.miso_design import inner_validate
    from misomap.training.miso_inputs import load_arrays
    setup_logging()
    k, scheme = task
    root, name = BETAS[0.5]
    run = config(root, k, scheme)
    out = f"{model_dir(run.workdir, name)}/inner_{scheme}.parquet"
    if Path(out).exists():
        return f"{task} done before"
    t0 = time.perf_counter()
    table, folds = read_training(run.workdir, run.storage)
    arrays = load_arrays(run.cube_location(), run.storage, run.miso)
    inner = inner_validate(context(run), run.miso, name, run.miso.design, arrays, table, folds)
    write_parquet(out, inner, run.storage)
    return f"{task}: {len(inner)} inner folds in {time.perf_counter() - t0:.0f} s"


def rf_inner(beta: float, k: int) -> pd.DataFrame:
    """The RF's inner scores at `beta` in world k: per scheme, test fold and inner fold, each task's
    macro recall on the held-out inner fold and their mean."""
    from misomap.labels.folds import inner_folds
    from misomap.labels.pedons import TARGETS
    from misomap.labels.training_table import feature_bands, read_training
    from misomap.models.miso.train import macro_recall
    from misomap.models.rf import predict_proba, select_features
    from misomap.training.miso_cv import scored_folds
    from misomap.training.rf_cv import fit_fold, target_rows
    run = config(BETAS[beta][0], k)
    table, folds = read_training(run.workdir, run.storage)
    features = select_features(feature_bands(table), run.rf)
    design = run.miso.design
    data = {}  # per target: its rows, X, y, xy (read once, not per fold)
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
                    col = col_all.loc[t["pedon_id"]].to_numpy()
                    inner = np.where(col == fold, -1, col)
                    model = fit_fold(X, y, xy, inner, g, features, target, run.evaluation, run.rf, run.seed)
                    held = inner == g
                    classes = list(TARGETS[target])
                    pred = np.asarray(classes)[predict_proba(model, X[held], classes).argmax(1)]
                    rec[f"{target}_macro_recall"] = macro_recall(y[held], pred)  # PF: balanced accuracy
                rows.append({"model": f"rf_b{beta:g}", "beta": beta, "seed": k, "scheme": scheme,
                             "fold": int(fold), "inner_fold": int(g), **rec,
                             "score": float(np.mean(list(rec.values())))})
    return pd.DataFrame(rows)


def inner_scores() -> pd.DataFrame:
    """Mean inner score per model family, β, world, scheme and test fold."""
    parts = []
    for beta, (root, name) in BETAS.items():
        for k in SEEDS:
            m = pd.concat([pd.read_parquet(root / f"seed{k}/models/{name}/inner_{s}.parquet") for s in SCHEMES])
            parts.append(m.assign(family="MISO", beta=beta, seed=k))
            parts.append(pd.read_parquet(OUT / f"rf_inner_b{beta:g}_seed{k}.parquet").assign(family="RF"))
    inner = pd.concat(parts, ignore_index=True)
    return inner.groupby(["family", "seed", "scheme", "fold", "beta"])["score"].mean().unstack("beta")


def predictions(k: int) -> dict[str, tuple[pd.DataFrame, str]]:
    """Outer-CV predictions of both models at both β in world k (name → (frame, source))."""
    from misomap.evaluation.scores import read_predictions
    out = {}
    for beta, (root, name) in BETAS.items():
        run = config(root, k)
        for family, folder in (("MISO", name), ("RF", "rf")):
            loc = str(root / f"seed{k}/models/{folder}/predictions.parquet")
            p = read_predictions(loc, run.storage)
            out[f"{family} β={beta:g}"] = (p[p["scheme"].isin(SCHEMES)], loc)
    return out


def table(commit: str) -> str:
    """Fold scores of both models at each β and at the β nested validation chose; how often each
    β was chosen; the map model's β per world and its map against the truth."""
    from misomap.evaluation.comparison import common_folds
    from misomap.evaluation.scores import evaluate
    from misomap.labels.training_table import read_training
    mean = inner_scores()
    chosen = mean.idxmax(axis=1)  # first maximum: β = 0 on ties
    rows = []
    for k in SEEDS:
        run = config(BETAS[0.0][0], k)
        table_k, _ = read_training(run.workdir, run.storage)
        preds = predictions(k)
        for family in ("MISO", "RF"):
            parts = []
            for (scheme, fold), beta in chosen.loc[(family, k)].items():
                p = preds[f"{family} β={beta:g}"][0]
                parts.append(p[(p["scheme"] == scheme) & (p["fold"] == fold)].assign(beta=beta))
            preds[f"{family} β nested"] = (pd.concat(parts, ignore_index=True), "nested")
        for name, (p, loc) in preds.items():
            for target, ev in evaluate(common_folds(p, preds), table_k, run.evaluation, source=loc).items():
                rows.append(ev.per_fold.assign(model=name, target=target, seed=k))
    folds = pd.concat(rows, ignore_index=True)
    folds.to_csv(HERE / "beta_nested_folds.csv", index=False)
    order = ["MISO β=0", "MISO β=0.5", "MISO β nested", "RF β=0", "RF β=0.5", "RF β nested"]
    lines = ["| scheme | model | PF recall | PF F1 | PF acc | SO macro recall | SO macro F1 | SO acc | β = 0.5 chosen |",
             "|---" * 9 + "|"]
    for scheme in SCHEMES:
        for model in order:
            g = folds[(folds["scheme"] == scheme) & (folds["model"] == model)]
            pf, so = g[g["target"] == "permafrost"], g[g["target"] == "soil_order"]
            cells = [pf["recall_1"].mean(), pf["f1_1"].mean(), pf["accuracy"].mean(),
                     so["recall_macro"].mean(), so["f1_macro"].mean(), so["accuracy"].mean()]
            picks = ""
            if model.endswith("nested"):
                c = chosen.loc[model.split()[0]].xs(scheme, level="scheme")
                picks = f"{int((c == 0.5).sum())} of {len(c)}"
            lines.append(f"| {scheme} | {model} | " + " | ".join(f"{v:.3f}" for v in cells) + f" | {picks} |")
    region = mean.xs("region", level="scheme").groupby(["family", "seed"]).mean()
    map_beta = region.idxmax(axis=1)
    lines += ["", "Map model's β (best mean inner score over the region scheme's test folds), per world: "
              + "; ".join(f"{f} " + ", ".join(f"{map_beta.loc[(f, k)]:g}" for k in SEEDS) for f in ("MISO", "RF"))
              + ".", "", ("Maps against the truth, every land pixel, mean over the worlds of the map made at "
                          "each world's chosen β (`experiment_truth.csv` of each run):"), "",
              "| map | PF accuracy | SO accuracy | SO macro recall | SO macro F1 |", "|---|---|---|---|---|"]
    for family, model in (("MISO", "miso"), ("RF", "rf")):
        picked = []
        for k in SEEDS:
            truth = pd.read_csv(BETAS[map_beta.loc[(family, k)]][0] / "experiment_truth.csv")
            picked.append(truth[(truth["by"] == "all") & (truth["model"] == model) & (truth["seed"] == k)])
        m = pd.concat(picked).groupby("target")[["accuracy", "recall_macro", "f1_macro"]].mean()
        lines.append(f"| {family}, β nested | {m.loc['permafrost', 'accuracy']:.3f} | {m.loc['soil_order', 'accuracy']:.3f}"
                     f" | {m.loc['soil_order', 'recall_macro']:.3f} | {m.loc['soil_order', 'f1_macro']:.3f} |")
    text = "\n".join(lines)
    (HERE / "beta_nested.md").write_text(
        f"β chosen by nested validation (`beta_nested.py`, commit {commit}); fold means over the 3 worlds "
        f"(15 DBSCAN + 11 region folds), same pedons for every row.\n\n{text}\n")
    return text


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["inner", "rf", "table"])
    ap.add_argument("--commit", default="?", help="the commit this script ran at, for the record")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.step == "inner":
        with get_context("spawn").Pool(2, maxtasksperchild=1) as pool:
            for msg in pool.imap_unordered(miso_inner, [(k, s) for k in SEEDS for s in SCHEMES]):
                print(f"[{time.perf_counter() - t0:.0f} s] {msg}", flush=True)
    elif args.step == "rf":
        logging.disable(logging.WARNING)
        OUT.mkdir(exist_ok=True)
        for beta in BETAS:
            for k in SEEDS:
                out = OUT / f"rf_inner_b{beta:g}_seed{k}.parquet"
                if not out.exists():
                    rf_inner(beta, k).to_parquet(out)
                print(f"[{time.perf_counter() - t0:.0f} s] RF β={beta:g} world {k}", flush=True)
    else:
        print(table(args.commit))
