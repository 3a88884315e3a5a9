"""#13: class balance 0 (session 5, /tmp/exp14) against 0.5 (session 6, /tmp/exp18), both models,
from the two runs' experiment CSVs: cross-validation means over folds × seeds and the maps against
the truth, per soil order too. Prints Markdown."""
import sys
from pathlib import Path

import pandas as pd

RUNS = {0.0: Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/exp14"),
        0.5: Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/exp18")}
# (balance, model folder in that run) -> row label; at 0.5 `miso` is the no-location design.
CV = {(0.0, "rf"): "RF", (0.0, "miso_selected"): "MISO nested (no location chosen)",
      (0.0, "miso_no_location"): "MISO no location", (0.5, "rf"): "RF", (0.5, "miso"): "MISO no location"}
MAPS = {(0.0, "rf"): "RF", (0.0, "miso"): "MISO no location", (0.5, "rf"): "RF", (0.5, "miso"): "MISO no location"}
ORDERS = ["Gelisols", "Inceptisols", "Histosols", "Entisols", "Andisols", "Spodosols", "Mollisols"]


def cv_table() -> list[str]:
    rows = []
    for (b, model), label in CV.items():
        f = pd.read_csv(RUNS[b] / "experiment_folds.csv")
        f = f[(f["model"] == model) & f["scheme"].isin(["dbscan_256m", "region"])]
        for scheme, g in f.groupby("scheme"):
            pf, so = g[g["target"] == "permafrost"], g[g["target"] == "soil_order"]
            rows.append((scheme, b, label, len(pf), pf["recall_1"].mean(), pf["f1_1"].mean(), pf["accuracy"].mean(),
                         so["recall_macro"].mean(), so["f1_macro"].mean(), so["accuracy"].mean(),
                         so["recall_Mollisols"].mean(), so["recall_Andisols"].mean(), so["recall_Spodosols"].mean()))
    out = ["| scheme | balance | model | folds | PF recall | PF F1 | PF acc | SO macro recall | SO macro F1 | SO acc "
           "| Mollisols | Andisols | Spodosols |", "|---" * 13 + "|"]
    for r in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
        out.append(f"| {r[0]} | {r[1]:g} | {r[2]} | {r[3]} | " + " | ".join(f"{v:.3f}" for v in r[4:]) + " |")
    return out


def pooled_table() -> list[str]:
    """Recall pooled over every test pedon of a scheme (each fold weighs by its pedons), mean over
    seeds: a region fold of 7 permafrost pedons weighs 7, not 1/11 of the scheme."""
    from sklearn.metrics import recall_score
    out = ["| scheme | balance | model | PF recall | SO macro recall | SO accuracy |", "|---" * 6 + "|"]
    for (b, model), label in CV.items():
        cells = {}
        for seed in (0, 1, 2):
            p = pd.read_parquet(RUNS[b] / f"seed{seed}/models/{model}/predictions.parquet")
            r = pd.read_parquet(RUNS[b] / f"seed{seed}/models/rf/predictions.parquet")
            for (scheme, target), g in p[p["scheme"].isin(["dbscan_256m", "region"])].groupby(["scheme", "target"]):
                keep = set(r[(r["scheme"] == scheme) & (r["target"] == target)]["pedon_id"])
                g = g[g["pedon_id"].isin(keep)]
                y, q = g["y_true"].astype(str), g["y_pred"].astype(str)
                c = cells.setdefault(scheme, {"pf": [], "so": [], "acc": []})
                if target == "permafrost":
                    c["pf"].append(recall_score(y, q, pos_label="1"))
                else:
                    c["so"].append(recall_score(y, q, average="macro", labels=sorted(set(y)), zero_division=0))
                    c["acc"].append(float((y == q).mean()))
        for scheme, c in cells.items():
            out.append(f"| {scheme} | {b:g} | {label} | " + " | ".join(
                f"{sum(v) / len(v):.3f}" for v in (c["pf"], c["so"], c["acc"])) + " |")
    return out[:2] + sorted(out[2:])


def map_table() -> list[str]:
    out = ["| balance | map | PF acc | SO acc | SO macro recall | SO macro F1 | " + " | ".join(ORDERS) + " |",
           "|---" * (6 + len(ORDERS)) + "|"]
    for (b, model), label in MAPS.items():
        t = pd.read_csv(RUNS[b] / "experiment_truth.csv")
        t = t[(t["model"] == model) & (t["by"] == "all")]
        pf, so = t[t["target"] == "permafrost"], t[t["target"] == "soil_order"]
        cells = [pf["accuracy"].mean(), so["accuracy"].mean(), so["recall_macro"].mean(), so["f1_macro"].mean(),
                 *(so[f"recall_{o}"].mean() for o in ORDERS)]
        out.append(f"| {b:g} | {label} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    return out


if __name__ == "__main__":
    print("\n".join(["## Cross-validation (mean over folds × seeds)", "", *cv_table(), "",
                     "## Cross-validation, pooled over the pedons of each scheme (mean over seeds)", "",
                     *pooled_table(), "",
                     "## Maps against the truth (mean over seeds, every land pixel)", "", *map_table()]))
