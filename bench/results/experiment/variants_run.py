"""#13, diagnostic: MISO design variants against a class-balance run's MISO and the RF, on the
largest test fold of each scheme in each world (the folds the ablations ran on; chosen by size, never
by score). Each variant is the run's MISO config with some fields replaced; it is cross-validated on
those folds only (two one-thread processes at a time) and scored beside `miso` and `rf` on the same
pedons. Prints one Markdown table and writes it beside this script. A diagnostic on test folds: a
variant is adopted only through nested validation.

The records and the calls that made them:
- capacity.md (session 6, /tmp/exp18, crop draws): `--run /tmp/exp18 --variants miso_wide --out capacity.md`
- rare_orders.md (session 7, /tmp/exp18): `--run /tmp/exp18 --variants miso_dihedral miso_pixhead
  miso_dihedral_pixhead --out rare_orders.md`
- rare_orders_exp19.md (session 7, the exact rule): the same with `--run /tmp/exp19`.
"""
import argparse
import time
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import yaml

SEEDS, SCHEMES = (0, 1, 2), ("dbscan_256m", "region")
VARIANTS = {  # replacements inside the run's `miso` section (nested sections merged)
    "miso_wide": {"feature_dim": 128, "liif": {"hidden": 128}},  # capacity: a decoder twice as wide
    "miso_dihedral": {"crops": {"dihedral": True}},  # each training crop in one of 8 orientations
    "miso_pixhead": {"loss": {"pixel_head": 0.5}},  # auxiliary heads on the query pixel's bands
    "miso_dihedral_pixhead": {"crops": {"dihedral": True}, "loss": {"pixel_head": 0.5}},
}


def config(run: Path, k: int, variant: str | None):
    """World k's run configuration, with `variant`'s replacements."""
    from misomap.config import config_from_dict
    d = yaml.safe_load((run / f"seed{k}/run.yaml").read_text())
    for key, value in VARIANTS.get(variant, {}).items():
        if isinstance(value, dict):
            d["miso"][key].update(value)
        else:
            d["miso"][key] = value
    return config_from_dict(d, f"seed {k}")


def job(task: tuple[Path, str, int, str]) -> str:
    """Cross-validate one variant on the largest fold of one scheme in one world."""
    from misomap.core.log import setup_logging
    from misomap.evaluation.scores import model_dir
    from misomap.jobs.train_miso import context
    from misomap.labels.pedons import write_parquet
    from misomap.labels.training_table import read_training
    from misomap.training.miso_cv import cross_validate
    from misomap.training.miso_inputs import load_arrays
    setup_logging()
    root, name, k, scheme = task
    run = config(root, k, name)
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


def scores(root: Path, variants: list[str]) -> pd.DataFrame:
    """Per-fold scores of rf, miso and the variants over the same pedons, every world."""
    from misomap.evaluation.comparison import common_folds
    from misomap.evaluation.scores import evaluate, model_dir, read_predictions
    from misomap.labels.training_table import read_training
    rows = []
    for k in SEEDS:
        run = config(root, k, None)
        table, _ = read_training(run.workdir, run.storage)
        preds = {m: (read_predictions(f"{model_dir(run.workdir, m)}/predictions.parquet", run.storage), m)
                 for m in ("rf", "miso")}
        for name in variants:
            preds[name] = (pd.concat([pd.read_parquet(f"{model_dir(run.workdir, name)}/predictions_{s}.parquet")
                                      for s in SCHEMES]), name)
        for name, (p, loc) in preds.items():
            for target, ev in evaluate(common_folds(p, preds), table, run.evaluation, source=loc).items():
                rows.append(ev.per_fold.assign(model=name, target=target, seed=k))
    return pd.concat(rows, ignore_index=True)


def table(s: pd.DataFrame) -> str:
    """The Markdown table: fold means per scheme and model."""
    pf_cols = ["recall_1", "f1_1", "accuracy"]
    so_cols = ["recall_macro", "f1_macro", "accuracy", "recall_Mollisols", "recall_Andisols", "recall_Spodosols"]
    header = ("| scheme | model | folds | PF recall | PF F1 | PF acc | SO macro recall | SO macro F1 | SO acc | "
              "Mollisols | Andisols | Spodosols |")
    lines = [header, "|---" * 12 + "|"]
    for (scheme, model), g in s[s["scheme"].isin(SCHEMES)].groupby(["scheme", "model"]):
        pf, so = g[g["target"] == "permafrost"], g[g["target"] == "soil_order"]
        cells = [pf[c].mean() for c in pf_cols] + [so[c].mean() for c in so_cols]
        lines.append(f"| {scheme} | {model} | {len(pf)} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a class-balance run (balance_run.py's output)")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), required=True)
    ap.add_argument("--out", required=True, help="file name of the table beside this script")
    ap.add_argument("--commit", default="?", help="the commit this script ran at, for the record")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with get_context("spawn").Pool(2, maxtasksperchild=1) as pool:
        tasks = [(args.run, v, k, s) for v in args.variants for k in SEEDS for s in SCHEMES]
        for msg in pool.imap_unordered(job, tasks):
            print(f"[{time.perf_counter() - t0:.0f} s] {msg}", flush=True)
    text = table(scores(args.run, args.variants))
    print(text)
    (Path(__file__).parent / args.out).write_text(
        f"Largest test fold of each scheme per seed, run {args.run}, commit {args.commit}; "
        f"{time.perf_counter() - t0:.0f} s on 2 cores.\n\n{text}\n")
