"""The model comparison: every model's cross-validated figures on the same held-out folds (mean ± sd
per scheme) as Markdown, CSV and a bar chart, with each model's training time per fold."""

from __future__ import annotations

import io
import json
import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from misomap.core.config_base import StorageConfig  # noqa: E402
from misomap.core.errors import MissingObjectError  # noqa: E402
from misomap.core.storage import Target  # noqa: E402
from misomap.evaluation.config import EvaluationConfig  # noqa: E402
from misomap.evaluation.scores import evaluate, model_dir, read_predictions  # noqa: E402
from misomap.labels.training_table import read_training  # noqa: E402

log = logging.getLogger(__name__)

COMPARED = {"permafrost": ("recall_1", "f1_1", "accuracy", "balanced_accuracy", "brier"),
            "soil_order": ("recall_macro", "f1_macro", "accuracy", "brier")}
"""Recall beside F1, accuracy and calibration, so a recall gain bought with accuracy shows."""


def common_folds(preds: pd.DataFrame, all_preds: dict[str, tuple[pd.DataFrame, str]]) -> pd.DataFrame:
    """`preds` restricted, per scheme, to the test folds every model run on that scheme has, and
    within each fold and target to the pedons every such model predicted (a model that left out a
    pedon, e.g. one on nodata, would otherwise be scored on an easier or harder set), so models are
    compared on the same held-out pedons (e.g. MISO with max_folds vs the RF)."""
    keep = []
    for scheme, sub in preds.groupby("scheme"):
        others = [o[o["scheme"] == scheme] for o, _ in all_preds.values()]
        others = [o for o in others if len(o)]
        common = set(sub["fold"])
        for other in others:
            common &= set(other["fold"])
        sub = sub[sub["fold"].isin(common)]
        key = ["fold", "target", "pedon_id"]
        shared = sub[key].drop_duplicates()
        for other in others:
            shared = shared.merge(other[key].drop_duplicates(), on=key)
        kept = sub.merge(shared, on=key)
        if len(kept) < len(sub):
            log.warning("%s: %d prediction(s) of pedons another model did not predict left out of the "
                        "comparison", scheme, len(sub) - len(kept))
        keep.append(kept)
    return pd.concat(keep, ignore_index=True) if keep else preds

def compare(workdir: str, storage: StorageConfig, rules: EvaluationConfig, models: list[str],
            out_model: str = "miso") -> str:
    """The MISO vs RF table (COMPARED metrics; mean ± sd over folds per scheme) of every model in
    `models` with predictions under `workdir`, as markdown, CSV and a bar chart of recall (under
    `out_model`'s folder), with each model's training time per fold. Returns the markdown's location."""
    table, _ = read_training(workdir, storage)
    rows, cost, all_preds = [], [], {}
    for name in models:
        loc = f"{model_dir(workdir, name)}/predictions.parquet"
        try:
            all_preds[name] = (read_predictions(loc, storage), loc)
        except MissingObjectError:
            log.info("no predictions of %s at %s: left out of the comparison", name, loc)
    for name, (preds, loc) in all_preds.items():
        common = common_folds(preds, all_preds)
        if "train_seconds" in common.columns:
            per_fold = fold_seconds(common, name)
            params = "–"
            if name != "rf":
                try:
                    st = json.loads(Target(f"{model_dir(workdir, name)}/training.json", storage).read_bytes())
                    params = f"{st['parameters']:,}"
                except MissingObjectError:  # miso_selected: its folds come from several candidates
                    pass
            cost.append({"model": name, "seconds": per_fold.mean(), "folds": len(per_fold), "parameters": params})
        for target, ev in evaluate(common, table, rules, source=loc).items():
            s = ev.summary[ev.summary["metric"].isin(COMPARED[target])]
            for _, r in s.iterrows():
                rows.append({"model": name, "target": target, "metric": r["metric"],
                             "scheme": r["scheme"], "mean": r["mean"], "sd": r["sd"]})
    df = pd.DataFrame(rows)
    out = f"{model_dir(workdir, out_model)}/comparison"
    Target(f"{out}.csv", storage).write_bytes(df.to_csv(index=False).encode())
    lines = ["# MISO vs Random Forest", "",
             "Mean ± sd over the test folds of each scheme (models never see their test fold); on each "
             "scheme every model is scored on the same folds (those all models were run on). Class "
             f"weighting for every model: `{rules.class_weighting}`, class balance {rules.class_balance:g}.", ""]
    df = df.dropna(subset=["mean"])  # schemes a model was not run on
    for target, sub in df.groupby("target", sort=False):
        for metric in COMPARED[target]:
            m = sub[sub["metric"] == metric]
            if m.empty:
                continue
            lines += [f"## {target}: {metric}", ""]
            wide = m.assign(v=[f"{a:.3f} ± {b:.3f}" for a, b in zip(m["mean"], m["sd"].fillna(0))]).pivot(
                index="model", columns="scheme", values="v").fillna("—")
            lines += ["| model | " + " | ".join(wide.columns) + " |", "|---" * (len(wide.columns) + 1) + "|"]
            lines += [f"| {n} | " + " | ".join(str(v) for v in wide.loc[n]) + " |" for n in wide.index] + [""]
    lines += ["## Training cost (this machine)", "",
              "| model | parameters | mean training seconds per fold | folds |", "|---|---|---|---|"]
    lines += [f"| {c['model']} | {c['parameters']} | {c['seconds']:.1f} | {c['folds']} |" for c in cost]
    Target(f"{out}.md", storage).write_bytes(("\n".join(lines) + "\n").encode())
    recall = df[df["metric"].isin([v[0] for v in COMPARED.values()])]
    Target(f"{out}.png", storage).write_bytes(_comparison_png(recall))
    log.info("comparison written to %s.md", out)
    return f"{out}.md"

def fold_seconds(preds: pd.DataFrame, model: str) -> pd.Series:
    """Training seconds per (scheme, fold): the RF fits one forest per target (summed), a MISO
    model serves both targets (its rows repeat one figure)."""
    per_target = preds.groupby(["scheme", "fold", "target"])["train_seconds"].first().groupby(["scheme", "fold"])
    return per_target.sum() if model == "rf" else per_target.max()

def _comparison_png(df: pd.DataFrame) -> bytes:
    targets = list(dict.fromkeys(df["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(6 * len(targets), 4), squeeze=False)
    for ax, target in zip(axes[0], targets):
        sub = df[df["target"] == target]
        wide_m = sub.pivot(index="scheme", columns="model", values="mean")
        wide_s = sub.pivot(index="scheme", columns="model", values="sd")
        wide_m.plot.bar(yerr=wide_s, ax=ax, rot=0, capsize=2)
        ax.set_title(f"{target}: {COMPARED[target][0]}")
        ax.set_ylim(0, 1)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
