"""#13, diagnostic: does MISO lose to the RF where a test pedon's climate is new to its model?

For every test pedon of the DBSCAN and region folds of the three worlds, its climate novelty is the
distance from its climate (annual precipitation, summer warmth, January minimum temperature, each
z-scored over the world's pedons) to the nearest pedon of its fold's training part — the same
nearest-training-pedon rule as the report's distance bins (`labels.folds.distance_to_training`), in
climate space instead of map space. A pedon is "outside" when any of the three lies beyond the
training part's range: the model must extrapolate. Pedons are binned by terciles of novelty per world
and scheme; each bin is scored for MISO and the RF on the same pedons (`common_folds`) and the mean
over worlds is reported, with the rank correlation of climate novelty and map distance.

Two runs are read, nothing is trained: β = 0 (/tmp/exp14: MISO in the design nested validation
chose, the README's main table) and β = 0.5 under the exact rule (/tmp/exp19). Writes
climate_novelty.md and climate_novelty.png beside this script.

    python bench/results/experiment/climate_novelty.py --commit <sha>
"""
import argparse
import logging
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

matplotlib.use("Agg")
import matplotlib.pyplot as plt

CLIMATE = ["precip_annual", "summer_warmth", "jan_min_temp"]
SEEDS, SCHEMES = (0, 1, 2), ("dbscan_256m", "region")
RUNS = {"β = 0": (Path("/tmp/exp14"), "miso_selected"), "β = 0.5 exact": (Path("/tmp/exp19"), "miso")}
BINS = ["near", "middle", "far", "outside range"]
METRICS = {"PF recall": ("permafrost", "recall_1"), "PF F1": ("permafrost", "f1_1"),
           "SO macro recall": ("soil_order", "recall_macro"), "SO acc": ("soil_order", "accuracy")}


def novelty(table: pd.DataFrame, fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pedon (table order): z-scored climate distance to the nearest training pedon of its
    fold's model, and whether any climate variable lies outside that training part's range."""
    from misomap.labels.folds import distance_to_training
    z = table[CLIMATE].to_numpy(np.float64)
    z = (z - z.mean(0)) / z.std(0)
    outside = np.zeros(len(z), bool)
    for f in np.unique(fold[fold >= 0]):
        test, train = fold == f, (fold >= 0) & (fold != f)
        lo, hi = z[train].min(0), z[train].max(0)
        outside[test] = ((z[test] < lo) | (z[test] > hi)).any(1)
    return distance_to_training(z, fold), outside


def bin_scores(root: Path, miso: str) -> pd.DataFrame:
    """Metrics per (seed, scheme, novelty bin, model) on the pedons both models predicted."""
    from misomap.config import load_config
    from misomap.core.classes import SOIL_ORDERS
    from misomap.evaluation.comparison import common_folds
    from misomap.evaluation.scores import read_predictions
    from misomap.labels.training_table import read_training
    from misomap.models.metrics import binary_metrics, multiclass_metrics
    rows = []
    for k in SEEDS:
        run = load_config(root / f"seed{k}/run.yaml")
        table, folds = read_training(run.workdir, run.storage)
        table = table.set_index("pedon_id").loc[folds["pedon_id"]].reset_index()
        preds = {m: (read_predictions(f"{root}/seed{k}/models/{m}/predictions.parquet", run.storage), m)
                 for m in (miso, "rf")}
        common = {m: common_folds(p, preds) for m, (p, _) in preds.items()}
        for scheme in SCHEMES:
            dist, outside = novelty(table, folds[scheme].to_numpy())
            info = pd.DataFrame({"pedon_id": table["pedon_id"], "novelty": dist, "outside": outside,
                                 "map_m": _map_distance(table, folds[scheme].to_numpy())})
            info["bin"] = pd.qcut(info["novelty"], 3, labels=BINS[:3])
            rho = spearmanr(info["novelty"], info["map_m"], nan_policy="omit")[0]
            for model, p in common.items():
                p = p[p["scheme"] == scheme].merge(info, on="pedon_id")
                for b in BINS:
                    grp = p[p["outside"]] if b == "outside range" else p[p["bin"] == b]
                    for target, g in grp.groupby("target"):
                        m = (binary_metrics(g["y_true"], g["p_1"], warn=False) if target == "permafrost" else
                             multiclass_metrics(g["y_true"], g["y_pred"], list(SOIL_ORDERS), warn=False))
                        rows.append({"seed": k, "scheme": scheme, "bin": b, "model": "MISO" if model == miso else "RF",
                                     "target": target, "n": len(g), "rho": rho, **m})
    return pd.DataFrame(rows)


def _map_distance(table: pd.DataFrame, fold: np.ndarray) -> np.ndarray:
    from misomap.labels.folds import distance_to_training
    return distance_to_training(table[["x", "y"]].to_numpy(), fold)


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean over worlds of each metric per scheme, bin and model, with MISO − RF."""
    out = []
    for (scheme, b), g in scores.groupby(["scheme", "bin"], sort=False):
        row = {"scheme": scheme, "bin": b, "pedons": int(g.loc[g["target"] == "soil_order", "n"].sum() / 2),
               "rho": g["rho"].mean()}
        for name, (target, col) in METRICS.items():
            v = g[g["target"] == target].groupby("model")[col].mean()
            row |= {f"{name} MISO": v.get("MISO"), f"{name} RF": v.get("RF"),
                    f"{name} Δ": v.get("MISO", np.nan) - v.get("RF", np.nan)}
        out.append(row)
    return pd.DataFrame(out)


def order_recall(scores: pd.DataFrame, scheme: str) -> pd.DataFrame:
    """Per-order recall (mean over worlds), MISO and RF, in each novelty bin of one scheme."""
    from misomap.core.classes import SOIL_ORDERS
    s = scores[(scores["scheme"] == scheme) & (scores["target"] == "soil_order")]
    return s.groupby(["bin", "model"], sort=False)[[f"recall_{c}" for c in SOIL_ORDERS]].mean()


def markdown(tables: dict[str, pd.DataFrame], orders: dict[str, pd.DataFrame]) -> str:
    """The bin tables of every run, then the region scheme's per-order recall."""
    lines = []
    for run, t in tables.items():
        lines += [f"### {run}", "", "| scheme | climate novelty | pedons (3 worlds) | "
                  + " | ".join(f"{m} MISO / RF (Δ)" for m in METRICS) + " |", "|---" * (3 + len(METRICS)) + "|"]
        for _, r in t.iterrows():
            cells = [f"{r[f'{m} MISO']:.3f} / {r[f'{m} RF']:.3f} ({r[f'{m} Δ']:+.3f})" for m in METRICS]
            lines.append(f"| {r['scheme']} | {r['bin']} | {r['pedons']} | " + " | ".join(cells) + " |")
        rho = t.groupby("scheme")["rho"].first()
        lines += ["", "Rank correlation of climate novelty with map distance to the nearest training pedon: "
                  + ", ".join(f"{s} {v:.2f}" for s, v in rho.items()) + ".", ""]
    for run, o in orders.items():
        names = [c.removeprefix("recall_") for c in o.columns]
        lines += [f"### Region folds, recall per soil order, {run} (MISO / RF)", "",
                  "| climate novelty | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
        for b in BINS:
            m, r = o.loc[(b, "MISO")], o.loc[(b, "RF")]
            lines.append(f"| {b} | " + " | ".join(f"{x:.2f} / {y:.2f}" for x, y in zip(m, r)) + " |")
        lines.append("")
    return "\n".join(lines)


def figure(tables: dict[str, pd.DataFrame], path: Path) -> None:
    """MISO − RF by climate-novelty tercile, one panel per scheme and run."""
    fig, axes = plt.subplots(len(tables), len(SCHEMES), figsize=(10, 3.4 * len(tables)), sharey=True, squeeze=False)
    for i, (run, t) in enumerate(tables.items()):
        for j, scheme in enumerate(SCHEMES):
            ax, s = axes[i, j], t[(t["scheme"] == scheme) & t["bin"].isin(BINS[:3])]
            for name in METRICS:
                ax.plot(s["bin"], s[f"{name} Δ"], marker="o", label=name)
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_title(f"{scheme}, {run}", fontsize=10)
            ax.set_xlabel("climate novelty (tercile)")
            if j == 0:
                ax.set_ylabel("MISO − RF")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commit", default="?", help="the commit this script ran at, for the record")
    args = ap.parse_args()
    here = Path(__file__).parent
    scores = {run: bin_scores(root, miso) for run, (root, miso) in RUNS.items()}
    tables = {run: summarise(s) for run, s in scores.items()}
    text = markdown(tables, {run: order_recall(s, "region") for run, s in scores.items()})
    print(text)
    (here / "climate_novelty.md").write_text(
        f"Climate novelty of test pedons, three worlds, commit {args.commit} (`climate_novelty.py`). "
        "Mean over worlds of pooled scores per bin; Δ = MISO − RF.\n\n" + text)
    figure(tables, here / "climate_novelty.png")
