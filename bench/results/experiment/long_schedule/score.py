import glob, json, sys, pandas as pd, numpy as np
from types import SimpleNamespace
from misomap.config import load_config
from misomap.evaluation.comparison import common_folds
from misomap.evaluation.scores import evaluate, read_predictions
from misomap.labels.training_table import read_training
run = load_config("/tmp/exp18/seed0/run.yaml")
table, _ = read_training(run.workdir, run.storage)
preds = {"rf": read_predictions("/tmp/exp18/seed0/models/rf/predictions.parquet", run.storage),
         "miso_300": read_predictions("/tmp/exp18/seed0/models/miso/predictions.parquet", run.storage)}
for name, d in (("miso_900_p3", "/tmp/long3"), ("miso_900_p30", "/tmp/long30")):
    preds[name] = pd.concat([pd.read_parquet(f) for f in sorted(glob.glob(f"{d}/*.parquet"))], ignore_index=True)
allp = {k: (v, k) for k, v in preds.items()}
rows = []
for name, (p, loc) in allp.items():
    c = common_folds(p[p.scheme.isin(["dbscan_256m", "region"])], allp)
    for target, ev in evaluate(c, table, run.evaluation, source=loc).items():
        rows.append(ev.per_fold.assign(model=name, target=target, pooled=False))
    for target, ev in evaluate(c.assign(fold=0), table, run.evaluation, source=loc).items():
        rows.append(ev.per_fold.assign(model=name, target=target, pooled=True))
s = pd.concat(rows)
print("| scheme | model | PF recall | PF F1 | SO macro recall | SO macro F1 | SO acc | Mollisols | Andisols | Spodosols | pooled SO macro recall | pooled PF recall |")
print("|---" * 12 + "|")
for (scheme, model), g in s.groupby(["scheme", "model"]):
    f, p = g[~g.pooled], g[g.pooled]
    pf, so = f[f.target == "permafrost"], f[f.target == "soil_order"]
    cells = [pf.recall_1.mean(), pf.f1_1.mean(), so.recall_macro.mean(), so.f1_macro.mean(), so.accuracy.mean(),
             so.recall_Mollisols.mean(), so.recall_Andisols.mean(), so.recall_Spodosols.mean(),
             p[p.target == "soil_order"].recall_macro.mean(), p[p.target == "permafrost"].recall_1.mean()]
    print(f"| {scheme} | {model} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
