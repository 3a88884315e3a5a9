"""The evaluation report every model is judged by: Markdown tables (mean ± sd per fold scheme,
by region, zone and distance to training), PNG plots (confusion matrices, recall vs distance,
per-region bars) and CSV tables, written beside the model."""

from __future__ import annotations

import io
import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from misomap.core.config_base import StorageConfig  # noqa: E402
from misomap.core.storage import Target  # noqa: E402
from misomap.evaluation.config import EvaluationConfig  # noqa: E402
from misomap.evaluation.scores import TargetEvaluation  # noqa: E402

log = logging.getLogger(__name__)

KEY_METRICS = {
    "permafrost": ("accuracy", "balanced_accuracy", "precision_1", "recall_1", "f1_1", "recall_0", "f1_0",
                   "f1_macro", "roc_auc", "pr_auc", "brier", "ece"),
    "soil_order": ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                   "precision_weighted", "recall_weighted", "f1_weighted", "brier", "ece"),
}
RECALL_METRIC = {"permafrost": "recall_1", "soil_order": "recall_macro"}
GROUP_METRICS = {"permafrost": ("n", "accuracy", "balanced_accuracy", "recall_1", "f1_1", "roc_auc", "brier"),
                 "soil_order": ("n", "accuracy", "balanced_accuracy", "recall_macro", "f1_macro", "brier")}


def _fmt(v: float) -> str:
    return "–" if pd.isna(v) else f"{v:.3f}"


def _md_table(df: pd.DataFrame) -> str:
    """A pipe table; floats to 3 decimals, NaN as an en dash."""
    cells = [[_fmt(v) if isinstance(v, (float, np.floating)) else str(v) for v in row]
             for row in df.itertuples(index=False)]
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    return "\n".join([head, rule] + ["| " + " | ".join(r) + " |" for r in cells])


def summary_table(ev: TargetEvaluation) -> pd.DataFrame:
    """Scheme × key metric as 'mean ± sd' strings, with the fold count."""
    rows = []
    for scheme, grp in ev.summary.groupby("scheme", sort=False):
        stats = grp.set_index("metric")
        row = {"scheme": scheme, "folds": int((ev.per_fold["scheme"] == scheme).sum())}
        for m in KEY_METRICS[ev.target]:
            if m in stats.index:
                mean, sd = stats.loc[m, "mean"], stats.loc[m, "sd"]
                row[m] = "–" if pd.isna(mean) else f"{mean:.3f} ± {0.0 if pd.isna(sd) else sd:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plot_confusions(ev: TargetEvaluation) -> bytes:
    """Row-normalised confusion matrix per scheme (pooled over folds)."""
    n = len(ev.confusion)
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.4 * nrows), squeeze=False)
    short = [c[:4] for c in ev.classes]
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    for ax, (scheme, cm) in zip(axes.flat, ev.confusion.items()):
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = cm / cm.sum(axis=1, keepdims=True)
        ax.imshow(np.nan_to_num(norm), vmin=0, vmax=1, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6)
        ax.set_xticks(range(len(short)), short, rotation=90, fontsize=7)
        ax.set_yticks(range(len(short)), short, fontsize=7)
        ax.set_title(scheme, fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    fig.suptitle(f"{ev.target}: confusion matrices (rows normalised, counts shown)", fontsize=9)
    return _png(fig)


def plot_recall_distance(ev: TargetEvaluation) -> bytes:
    """Recall per distance-to-training class, one line per scheme."""
    metric = RECALL_METRIC[ev.target]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if not ev.by_distance.empty:
        order = list(ev.by_distance["distance"].cat.categories)
        for scheme, grp in ev.by_distance.groupby("scheme", sort=False):
            grp = grp.set_index("distance").reindex(order)
            ax.plot(range(len(order)), grp[metric].to_numpy(dtype=float), marker="o", label=scheme)
        ax.set_xticks(range(len(order)), order)
    ax.set_xlabel("distance to the nearest training pedon")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title(f"{ev.target}: {metric} vs distance to training", fontsize=9)
    return _png(fig)


def plot_region_bars(ev: TargetEvaluation) -> bytes:
    """Accuracy per region, grouped bars, one bar per scheme."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if not ev.by_region.empty:
        wide = ev.by_region.pivot(index="region", columns="scheme", values="accuracy")
        wide.plot.bar(ax=ax, width=0.8, rot=30)
        ax.legend(fontsize=6, ncol=2)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{ev.target}: accuracy by region", fontsize=9)
    return _png(fig)


def plot_reliability(ev: TargetEvaluation) -> bytes:
    """Reliability diagram: observed frequency against mean predicted probability, per scheme."""
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    for scheme, grp in ev.reliability.groupby("scheme", sort=False):
        ax.plot(grp["confidence"], grp["observed"], marker="o", ms=3, label=scheme)
    what = "P(permafrost)" if ev.target == "permafrost" else "top-class probability"
    ax.set_xlabel(f"mean {what}")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6)
    ax.set_title(f"{ev.target}: reliability", fontsize=9)
    return _png(fig)


def _group_section(title: str, df: pd.DataFrame, by: str, target: str) -> list[str]:
    if df.empty:
        return [f"### {title}", "", "_no group large enough to report_", ""]
    cols = ["scheme", by] + [m for m in GROUP_METRICS[target] if m in df.columns]
    return [f"### {title}", "", _md_table(df[cols].astype({by: str, "n": int})), ""]


def render_markdown(results: dict[str, TargetEvaluation], model: str,
                    notes: list[str] | None = None) -> str:
    """The report text; figures are referenced by relative PNG names."""
    lines = [f"# Evaluation report: `{model}`", "",
             "Cross-validated on the shared folds (`training/folds.parquet`): each pedon is "
             "predicted by a model that never saw it. Per-fold metrics are given as mean ± sd over "
             "folds; region, zone and distance breakdowns pool each scheme's folds. Distance is to "
             "the nearest pedon in the training part of the pedon's own fold. NaN (–) marks a "
             "metric undefined for a fold that lacks a class.", ""]
    lines += [f"> {note}\n" for note in notes or []]
    for target, ev in results.items():
        lines += [f"## {target}", "", "### Per fold scheme (mean ± sd over folds)", "",
                  _md_table(summary_table(ev)), ""]
        if target == "soil_order":
            rec = ev.per_fold.groupby("scheme", sort=False)[[f"recall_{c}" for c in ev.classes]].mean()
            rec.columns = [c.removeprefix("recall_") for c in rec.columns]
            lines += ["### Per-class recall (mean over folds)", "", _md_table(rec.reset_index()), ""]
        lines += _group_section("By region", ev.by_region, "region", target)
        lines += _group_section("By permafrost zone", ev.by_zone, "zone", target)
        lines += _group_section("By distance to the nearest training pedon", ev.by_distance,
                                "distance", target)
        lines += [f"![confusion]({target}_confusion.png)", "",
                  f"![reliability]({target}_reliability.png)", "",
                  f"![recall vs distance]({target}_recall_distance.png)", "",
                  f"![by region]({target}_regions.png)", ""]
    return "\n".join(lines)


def write_report(results: dict[str, TargetEvaluation], model: str, out: str,
                 rules: EvaluationConfig, storage: StorageConfig, notes: list[str] | None = None) -> str:
    """Write report.md (with `notes` up front, after the class-weighting rule of `rules`), the PNGs and
    CSV tables under `out`; returns report.md's location."""
    for target, ev in results.items():
        Target(f"{out}/{target}_confusion.png", storage).write_bytes(plot_confusions(ev))
        Target(f"{out}/{target}_recall_distance.png", storage).write_bytes(plot_recall_distance(ev))
        Target(f"{out}/{target}_regions.png", storage).write_bytes(plot_region_bars(ev))
        Target(f"{out}/{target}_reliability.png", storage).write_bytes(plot_reliability(ev))
        for name in ("per_fold", "summary", "by_region", "by_zone", "by_distance", "reliability"):
            csv = getattr(ev, name).to_csv(index=False).encode()
            Target(f"{out}/{target}_{name}.csv", storage).write_bytes(csv)
    rule = (f"Class weighting (one rule for every model): `{rules.class_weighting}`, class balance "
            f"{rules.class_balance:g} (pedons weighted by class share^−{rules.class_balance:g}); validation for it and "
            f"for early stopping: {rules.val_fraction:.0%} of each fold's training pedons, carved as whole "
            "spatial patches from the training part only.")
    loc = f"{out}/report.md"
    Target(loc, storage).write_bytes(render_markdown(results, model, [rule, *(notes or [])]).encode())
    log.info("report of %s written to %s", model, loc)
    return loc
