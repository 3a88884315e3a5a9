"""#13, session 7, diagnostic: do the rare orders gain from more varied examples? Training options
against the class-balance run's MISO (/tmp/exp18, β = 0.5, no location) and the RF, on the largest
test fold of each scheme in each world (the folds the ablations and the capacity run used; chosen by
size, never by score): `crops.dihedral` (each training crop in one of 8 orientations), `loss.
pixel_head` 0.5 (auxiliary heads on the query pixel's bands) and both. Two processes at a time;
prints one Markdown table and writes it beside this script as rare_orders.md. A diagnostic on test
folds: an option is adopted only through nested validation. Session 7 ran it on /tmp/exp18 (crop
draws, rare_orders.md) and on /tmp/exp19 (the exact rule, rare_orders_exp19.md)."""
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import yaml

E = Path(os.environ.get("RARE_ORDERS_RUN", "/tmp/exp18"))  # /tmp/exp19: the exact class-balance rule
SEEDS, SCHEMES = (0, 1, 2), ("dbscan_256m", "region")
OUT = "rare_orders.md" if E.name == "exp18" else f"rare_orders_{E.name}.md"
VARIANTS = {"miso_dihedral": {"crops": {"dihedral": True}}, "miso_pixhead": {"loss": {"pixel_head": 0.5}},
            "miso_dihedral_pixhead": {"crops": {"dihedral": True}, "loss": {"pixel_head": 0.5}}}


def config(k: int, variant: str | None):
    from misomap.config import config_from_dict
    d = yaml.safe_load((E / f"seed{k}/run.yaml").read_text())
    for section, update in VARIANTS.get(variant, {}).items():
        d["miso"][section].update(update)
    return config_from_dict(d, f"seed {k}")


def job(task: tuple[str, int, str]) -> str:
    from misomap.core.log import setup_logging
    from misomap.evaluation.scores import model_dir
    from misomap.jobs.train_miso import context
    from misomap.labels.pedons import write_parquet
    from misomap.labels.training_table import read_training
    from misomap.training.miso_cv import cross_validate
    from misomap.training.miso_inputs import load_arrays
    setup_logging()
    name, k, scheme = task
    run = config(k, name)
    out = f"{model_dir(run.workdir, name)}/predictions_{scheme}.parquet"
    if Path(out).exists():
        return f"{task} done before"
    cfg = run.miso.model_copy(update={"schemes": [scheme], "max_folds": 1})
    table, folds = read_training(run.workdir, run.storage)
    arrays = load_arrays(run.cube_location(), run.storage, cfg)
    t0 = time.perf_counter()
    frame, _ = cross_validate(context(run), cfg, name, arrays, table, folds)
    write_parquet(out, frame, run.storage)
    return f"{task} in {time.perf_counter() - t0:.0f} s"


def scores() -> pd.DataFrame:
    from misomap.evaluation.comparison import common_folds
    from misomap.evaluation.scores import evaluate, model_dir, read_predictions
    from misomap.labels.training_table import read_training
    rows = []
    for k in SEEDS:
        run = config(k, None)
        table, _ = read_training(run.workdir, run.storage)
        preds = {"rf": (read_predictions(f"{model_dir(run.workdir, 'rf')}/predictions.parquet", run.storage), "rf"),
                 "miso": (read_predictions(f"{model_dir(run.workdir, 'miso')}/predictions.parquet", run.storage), "miso")}
        for name in VARIANTS:
            preds[name] = (pd.concat([pd.read_parquet(f"{model_dir(run.workdir, name)}/predictions_{s}.parquet")
                                      for s in SCHEMES]), name)
        for name, (p, loc) in preds.items():
            for target, ev in evaluate(common_folds(p, preds), table, run.evaluation, source=loc).items():
                rows.append(ev.per_fold.assign(model=name, target=target, seed=k))
    return pd.concat(rows, ignore_index=True)


if __name__ == "__main__":
    t0 = time.perf_counter()
    with get_context("spawn").Pool(2, maxtasksperchild=1) as pool:
        for msg in pool.imap_unordered(job, [(v, k, s) for v in VARIANTS for k in SEEDS for s in SCHEMES]):
            print(f"[{time.perf_counter() - t0:.0f} s] {msg}", flush=True)
    s = scores()
    cols = {"permafrost": ["recall_1", "f1_1", "accuracy"], "soil_order": ["recall_macro", "f1_macro", "accuracy",
                                                                          "recall_Mollisols", "recall_Andisols",
                                                                          "recall_Spodosols"]}
    lines = ["| scheme | model | folds | PF recall | PF F1 | PF acc | SO macro recall | SO macro F1 | SO acc | "
             "Mollisols | Andisols | Spodosols |", "|---" * 12 + "|"]
    for (scheme, model), g in s[s["scheme"].isin(SCHEMES)].groupby(["scheme", "model"]):
        pf, so = g[g["target"] == "permafrost"], g[g["target"] == "soil_order"]
        cells = [pf[c].mean() for c in cols["permafrost"]] + [so[c].mean() for c in cols["soil_order"]]
        lines.append(f"| {scheme} | {model} | {len(pf)} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    text = "\n".join(lines)
    print(text)
    (Path(__file__).parent / OUT).write_text(
        f"Largest test fold of each scheme per seed, β = 0.5, commit {sys.argv[1] if len(sys.argv) > 1 else '?'}; "
        f"{time.perf_counter() - t0:.0f} s on 2 cores.\n\n{text}\n")
