"""#13 diagnostics: region folds of the full model, its clamped and no-location variants, the RF."""
import logging, sys, warnings
logging.disable(logging.WARNING); warnings.filterwarnings("ignore")
from pathlib import Path
import pandas as pd
from misomap.config import load_config
from misomap.labels.training_table import read_training
from misomap.evaluation.scores import read_predictions
from misomap.jobs.experiment import fold_scores
rows = []
seeds = [int(s) for s in sys.argv[1].split(",")]
scheme = sys.argv[2]
MODELS = sys.argv[3].split(",")
for k in seeds:
    config = load_config(Path(f"/tmp/exp14/seed{k}/run.yaml"))
    table, _ = read_training(config.workdir, config.storage)
    src = {"rf": f"/tmp/exp14/seed{k}/models/rf", "miso": f"/tmp/exp14/seed{k}/models/miso",
           "location_input": f"/tmp/exp14/seed{k}/models/miso_location_input",
           "clip": f"/tmp/exp14clip/seed{k}/models/miso", "no_location": f"/tmp/exp14nl/seed{k}/models/miso_no_location" if scheme != "region" else f"/tmp/exp14nl/region_only/seed{k}"}
    src = {n: d for n, d in src.items() if n in MODELS}
    preds = {}
    for name, d in src.items():
        p = Path(d) / "predictions.parquet"
        if p.exists():
            df = read_predictions(str(p), config.storage)
            preds[name] = (df[df["scheme"] == scheme], str(p))
    rows.append(fold_scores(config, table, preds).assign(seed=k))
df = pd.concat(rows)
df.to_csv(f"/tmp/exp14/diag_{scheme}.csv", index=False)
for t, ms in (("permafrost", ["recall_1", "f1_1", "accuracy", "balanced_accuracy"]), ("soil_order", ["recall_macro", "f1_macro", "accuracy"])):
    g = df[df.target == t].groupby("model")
    print(t, "folds:", g.size().to_dict()); print(g[ms].mean().round(3))
