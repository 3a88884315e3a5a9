"""#13, session 6, diagnostic (`python fit_budget.py STEPS SEED`, on /tmp/exp18): does MISO fit its own rare-class training pedons with a longer budget? Seed 0, every labelled
pedon, 240 steps (about what CV selects) vs 900; P(class) at the training pedons of each soil order."""
import sys, numpy as np, yaml, torch
from misomap.config import config_from_dict
from misomap.core.log import setup_logging
from misomap.labels.training_table import read_training
from misomap.training.miso_cv import FsCheckpointStore, _fit, weighted_config
from misomap.training.miso_inputs import load_arrays, read_weights, resolve_config, label_points, clip_to_pedons
from misomap.models.miso.train import predict_at
from misomap.core.classes import SOIL_ORDERS
setup_logging()
steps, k = int(sys.argv[1]), int(sys.argv[2])
d = yaml.safe_load(open(f"/tmp/exp18/seed{k}/run.yaml"))
d["miso"]["train"]["threads"] = 1
d["miso"]["train"]["epochs"] = max(10, steps // 30)
d["miso"]["train"]["max_steps"] = steps
run = config_from_dict(d, "diag")
cfg = run.miso
table, _ = read_training(run.workdir, run.storage)
arrays = load_arrays(run.cube_location(), run.storage, cfg)
ckpts = read_weights(cfg, run.storage)
cfg = resolve_config(weighted_config(cfg, run.evaluation), arrays, ckpts)
points = label_points(table)
lab = (points.permafrost >= 0) | (points.soil >= 0)
model, sampler, res = _fit(clip_to_pedons(cfg, table[lab]), arrays, ckpts, points, lab, np.zeros(len(points), bool),
                           FsCheckpointStore(f"/tmp/diag_fit/s{k}_{steps}", run.storage), run.seed, steps)
pts = points.subset(np.flatnonzero(lab))
pred = predict_at(model, sampler, pts, torch.device("cpu"))
P = pred["soil_order"]
for c, name in enumerate(SOIL_ORDERS):
    m = pts.soil == c
    if m.any():
        print(f"seed {k} steps {steps} {name:12s} n={m.sum():4d} median P {np.median(P[m, c]):.3f} "
              f"argmax right {(P[m].argmax(1) == c).mean():.2f}", flush=True)
