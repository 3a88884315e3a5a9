"""#13, session 6: both models under `evaluation.class_balance` 0.5 on the three demo worlds of
session 5's run (/tmp/exp14: worlds, cubes, pretrained encoders; models left behind), in /tmp/exp18.
Session 7 reran MISO with `BALANCE_SRC=/tmp/exp18 BALANCE_OUT=/tmp/exp19` after β became per-label
loss weights (session 6 had drawn crops by their centre pedon's odds); the RF, whose rule did not
change, is copied from the source when it ran at β = 0.5 there.

MISO keeps the design nested validation chose in every world at class balance 0 (no location).
`python balance_run.py` runs, two processes at a time: each seed's RF (`train_rf`), then every MISO
test fold by the fold procedure of `cross_validate` (`fit_fold`, in the checkpoint folder
train-miso resumes from); then, one seed after another, `run_train_miso` (finished folds resume to their saved best:
predictions, report, comparison, the final model), both maps against the truth, and the tables.
"""
import logging
import os
import shutil
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import yaml

SRC = Path(os.environ.get("BALANCE_SRC", "/tmp/exp14"))
E = Path(os.environ.get("BALANCE_OUT", "/tmp/exp18"))
SEEDS = (0, 1, 2)
SCHEMES = ("dbscan_256m", "region")


def prepare(k: int) -> None:
    src, out = SRC / f"seed{k}", E / f"seed{k}"
    if (out / "run.yaml").exists():
        return
    out.mkdir(parents=True)
    d = yaml.safe_load((src / "run.yaml").read_text().replace(str(src), str(out)))
    parts = ["cube.zarr", "cube.zarr.progress", "training", "miso"]
    if d["evaluation"].get("class_balance") == 0.5:  # the RF already ran under this rule: reuse it
        parts.append("models/rf")
    for part in parts:
        shutil.copytree(src / part, out / part)
    (out / "world").symlink_to((src / "world").resolve())
    d["evaluation"]["class_balance"] = 0.5
    d["miso"]["location"]["enabled"] = False
    d["miso"].update(ablations=[], schemes=list(SCHEMES), include_full=True, final_model=True)
    d["miso"].pop("design", None)
    d["miso"]["train"]["threads"] = 1
    (out / "run.yaml").write_text(yaml.safe_dump(d, sort_keys=False))


def config(k: int):
    from misomap.config import config_from_dict
    return config_from_dict(yaml.safe_load((E / f"seed{k}/run.yaml").read_text()), f"seed {k}")


def job(task: tuple) -> str:
    from misomap.core.log import setup_logging
    setup_logging()
    t0 = time.perf_counter()
    if task[0] == "rf":
        from misomap.jobs.train_rf import train_rf
        train_rf(config(task[1]))
    else:
        from misomap.jobs.train_miso import context
        from misomap.labels.training_table import read_training
        from misomap.training.miso_cv import FsCheckpointStore, fit_fold, ready_config
        from misomap.training.miso_inputs import load_arrays
        from misomap.evaluation.scores import model_dir
        from misomap.models.miso.train import select_device
        _, k, scheme, fold = task
        run = config(k)
        cfg = run.miso
        table, folds = read_training(run.workdir, run.storage)
        arrays = load_arrays(run.cube_location(), run.storage, cfg)
        cfg, ckpts = ready_config(context(run), cfg, arrays)
        store = FsCheckpointStore(f"{model_dir(run.workdir, 'miso')}/checkpoints/{scheme}/fold{fold}", run.storage)
        fit_fold(context(run), cfg, arrays, ckpts, table, folds[scheme].to_numpy(), fold, store,
                 select_device(cfg.train))
    return f"{task} in {time.perf_counter() - t0:.0f} s"


def finish(k: int) -> str:
    from misomap.core.log import setup_logging
    from misomap.evaluation.map_truth import map_vs_truth
    from misomap.jobs.predict import run_predict, with_map
    from misomap.jobs.train_miso import run_train_miso
    from misomap.mapping.chunk import zarr_url
    setup_logging()
    run, out = config(k), E / f"seed{k}"
    miso = run_train_miso(run)
    truth = []
    for model, path in (("rf", str(out / "models" / "rf")), ("miso", miso.final_model)):
        c = with_map(run, model, path)
        run_predict(c, overwrite=True)
        truth.append(map_vs_truth(zarr_url(c.map), out / "world").assign(model=model))
    pd.concat(truth).to_csv(out / "map_truth.csv", index=False)
    return f"seed {k} finished"


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    for k in SEEDS:
        prepare(k)
    from misomap.labels.training_table import read_training
    from misomap.training.miso_cv import scored_folds
    tasks = [("rf", k) for k in SEEDS if not (E / f"seed{k}/models/rf/predictions.parquet").exists()]
    for k in (k for k in SEEDS if not (E / f"seed{k}/models/miso/training.json").exists()):
        folds = read_training(str(E / f"seed{k}"), config(k).storage)[1]
        tasks += [("miso", k, s, f) for s in SCHEMES for f in scored_folds(folds[s].to_numpy(), None)]
    t0 = time.perf_counter()
    with get_context("spawn").Pool(2, maxtasksperchild=1) as pool:
        for msg in pool.imap_unordered(job, tasks):
            print(f"[{time.perf_counter() - t0:.0f} s] {msg}", flush=True)
    for k in SEEDS:  # here: the map job starts its own worker processes, which a pool's cannot
        print(f"[{time.perf_counter() - t0:.0f} s] {finish(k)}", flush=True)
    from misomap.jobs.experiment import write_tables
    print(write_tables(E, list(SEEDS), sys.argv[1] if len(sys.argv) > 1 else "unknown",
                       time.perf_counter() - t0))
