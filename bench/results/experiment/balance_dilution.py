"""#13, session 7: what share of the soil-order labels MISO's loss saw under session 6's crop-draw
rule (crops drawn by their centre pedon's class share^−β, up to 11 neighbour pedons along as label
slots), against the unweighted share and the RF's sample-weight share, on world 0's labels
(/tmp/exp18, β = 0.5, 32 px crops of 30 m). Prints one line per order."""
import numpy as np
import yaml

from misomap.config import config_from_dict
from misomap.core.classes import SOIL_ORDERS
from misomap.labels.training_table import read_training
from misomap.models.weighting import balance_weights
from misomap.training.miso_inputs import label_points

BETA, HALF, SLOTS, DRAWS = 0.5, 32 * 30.0 / 2, 12, 4000
run = config_from_dict(yaml.safe_load(open("/tmp/exp18/seed0/run.yaml")), "seed 0")
p = label_points(read_training(run.workdir, run.storage)[0])
idx = np.flatnonzero(p.soil >= 0)
w = balance_weights(p.soil[idx], BETA)
seen = np.zeros(len(SOIL_ORDERS))
for i in np.random.default_rng(0).choice(idx, DRAWS, p=w / w.sum()):
    inside = idx[(np.abs(p.x[idx] - p.x[i]) < HALF) & (np.abs(p.y[idx] - p.y[i]) < HALF)]
    np.add.at(seen, p.soil[np.r_[i, inside[inside != i][:SLOTS - 1]]], 1)
share = np.bincount(p.soil[idx], minlength=len(SOIL_ORDERS)) / len(idx)
rf = share ** (1 - BETA) / (share ** (1 - BETA)).sum()
print(f"{seen.sum() / DRAWS:.1f} labelled slots per crop")
for k, name in enumerate(SOIL_ORDERS):
    print(f"{name:12s} labels {share[k]:.4f}  crop draws {seen[k] / seen.sum():.4f}  RF weights {rf[k]:.4f}")
