"""One MISO test fold of world 0 at β = 0.5 with a 900-step cap (device preview for #13)."""
import json, sys, time
import numpy as np, yaml
from misomap.config import config_from_dict
from misomap.core.log import setup_logging
from misomap.jobs.train_miso import context
from misomap.labels.pedons import write_parquet
from misomap.labels.training_table import read_training
from misomap.models.miso.train import select_device
from misomap.training.miso_cv import FsCheckpointStore, fit_fold, prediction_rows, weighted_config
from misomap.training.miso_inputs import label_points, load_arrays, read_weights, resolve_config
setup_logging()
work, out, scheme, fold = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
run = config_from_dict(yaml.safe_load(open(f"{work}/run.yaml").read().replace("WORK", work)), "long")
cfg = run.miso
table, folds = read_training(run.workdir, run.storage)
arrays = load_arrays(run.cube_location(), run.storage, cfg)
ckpts = read_weights(cfg, run.storage)
cfg = resolve_config(weighted_config(cfg, run.evaluation), arrays, ckpts)
col = folds[scheme].to_numpy()
t0 = time.perf_counter()
fit = fit_fold(context(run), cfg, arrays, ckpts, table, col, fold,
               FsCheckpointStore(f"{work}/ckpt/{scheme}/fold{fold}", run.storage), select_device(cfg.train))
test = np.flatnonzero(col == fold)
ids = table["pedon_id"].astype(str).to_numpy()
rows = prediction_rows(fit.pred, ids[test], label_points(table).subset(test), scheme, fold, cfg.loss.tasks)
write_parquet(f"{out}/{scheme}_{fold}.parquet", rows.assign(train_seconds=fit.result.seconds), run.storage)
json.dump({"scheme": scheme, "fold": fold, "best_step": fit.result.best_step, "seconds": fit.result.seconds,
           "wall": time.perf_counter() - t0, "val_score": fit.result.best_score}, open(f"{out}/{scheme}_{fold}.json", "w"))
