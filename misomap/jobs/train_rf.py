"""`misomap train-rf`: training table and folds → cross-validated RF predictions on every fold
scheme → final forests fitted on all pedons (skops) → the evaluation report, all beside the model.

A run configuration for it (every key optional but the label location)::

    workdir: runs/demo                     # training/, models/rf/{*.skops,predictions.parquet,report/}
    labels: {world: demo-out/world, cube: runs/demo/cube.zarr, window: 1}
    folds: {k: 5, dbscan_eps_m: [1000, 10000], block_size_m: 20000}
    rf: {n_estimators: 100, class_weight: null, radar: true, use_xy: false}
    evaluation: {distance_bins_km: [1, 10]}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm import tqdm

from misomap.jobs.evaluate import model_dir, run_evaluation
from misomap.jobs.labels import TARGETS, write_bytes, write_parquet
from misomap.jobs.training_table import build_training_table, feature_bands, read_training
from misomap.models.folds import scheme_columns
from misomap.models.rf import (
    RFConfig,
    RFModelError,
    dumps_model,
    fit_rf,
    predict_proba,
    select_features,
)

if TYPE_CHECKING:
    from misomap.config import RunConfig

log = logging.getLogger(__name__)
MODEL = "rf"


@dataclass(frozen=True)
class RFOutputs:
    """Locations written by one train-rf run."""

    predictions: str
    models: dict[str, str]
    report: str


def target_rows(table: pd.DataFrame, target: str, features: list[str]) -> pd.DataFrame:
    """Rows with a label for `target` and finite values in every feature (dropped ones logged)."""
    rows = table[table[target].notna()]
    values = np.isfinite(rows[features].to_numpy(dtype=np.float64))
    finite = values.all(axis=1)
    if (~finite).any():
        per_band = {f: int(n) for f, n in zip(features, (~values).sum(axis=0)) if n}
        log.warning("%s: %d labelled pedon(s) have nodata in some feature band, left out "
                    "(e.g. %s); nodata count per band: %s", target, int((~finite).sum()),
                    list(rows.loc[~finite, "pedon_id"][:5]), per_band)
    rows = rows[finite]
    if target == "permafrost":
        rows = rows.assign(permafrost=rows["permafrost"].astype(int))
    return rows.assign(label=rows[target].astype(str))


def cross_validate(rows: pd.DataFrame, folds: pd.DataFrame, target: str, features: list[str],
                   config: RFConfig, seed: int) -> pd.DataFrame:
    """Out-of-fold predictions of `target` for every scheme in `folds` (predictions layout of
    misomap.jobs.evaluate); a fold whose training part has one class is skipped with a warning."""
    classes = list(TARGETS[target])
    fold_of = folds.set_index("pedon_id").loc[rows["pedon_id"]]
    X = rows[features].to_numpy(dtype=np.float32)
    y = rows["label"].to_numpy()
    out = []
    jobs = [(s, f) for s in scheme_columns(folds) for f in sorted(set(fold_of[s]) - {-1})]
    for scheme, fold in tqdm(jobs, desc=f"RF CV {target}", leave=False):
        f_arr = fold_of[scheme].to_numpy()
        test, train = f_arr == fold, (f_arr >= 0) & (f_arr != fold)
        if not test.any():
            continue
        try:
            model = fit_rf(X[train], y[train], features, target, config, seed)
        except RFModelError as err:
            log.warning("%s %s fold %d skipped: %s", target, scheme, fold, err)
            continue
        prob = predict_proba(model, X[test], classes)
        pred = pd.DataFrame({"pedon_id": rows["pedon_id"].to_numpy()[test], "target": target,
                             "scheme": scheme, "fold": fold, "y_true": y[test],
                             "y_pred": np.asarray(classes)[prob.argmax(axis=1)]})
        out.append(pd.concat([pred, pd.DataFrame(prob, columns=[f"p_{c}" for c in classes])], axis=1))
    return pd.concat(out, ignore_index=True)


def train_rf(config: RunConfig) -> RFOutputs:
    """The whole RF baseline of a run: table, folds (rebuilt; the same seed gives the same
    folds), CV predictions, final models, report."""
    build_training_table(config)
    table, folds = read_training(config)
    mdir = model_dir(config.workdir, MODEL)
    features = select_features(feature_bands(table), config.rf)
    preds, models = [], {}
    for target in TARGETS:
        rows = target_rows(table, target, features)
        log.info("%s: %d pedons, %d features", target, len(rows), len(features))
        preds.append(cross_validate(rows, folds, target, features, config.rf, config.seed))
        model = fit_rf(rows[features].to_numpy(), rows["label"].to_numpy(), features, target,
                       config.rf, config.seed)
        models[target] = f"{mdir}/{target}.skops"
        write_bytes(models[target], dumps_model(model), config.storage)
    preds_loc = f"{mdir}/predictions.parquet"
    write_parquet(preds_loc, pd.concat(preds, ignore_index=True), config.storage)
    log.info("RF predictions -> %s, models -> %s", preds_loc, list(models.values()))
    return RFOutputs(preds_loc, models, run_evaluation(config, MODEL))

