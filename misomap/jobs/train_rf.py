"""`misomap train-rf`: training table and folds → cross-validated RF predictions on every fold
scheme → final forests fitted on all pedons (skops) → the evaluation report, all beside the model.

A run configuration for it (every key optional but the label location)::

    workdir: runs/demo                     # training/, models/rf/{*.skops,predictions.parquet,report/}
    labels: {world: demo-out/world, cube: runs/demo/cube.zarr, window: 1}
    folds: {k: 5, dbscan_eps_m: [1000, 10000], block_size_m: 20000}
    rf: {n_estimators: 100, radar: true, use_xy: false}
    evaluation: {distance_bins_km: [1, 10], class_weighting: threshold, val_fraction: 0.15}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from misomap.config import RunConfig
from misomap.core.storage import Target
from misomap.evaluation.scores import model_dir
from misomap.jobs.evaluate import run_evaluation
from misomap.labels.pedons import TARGETS, write_parquet
from misomap.labels.training_table import build_training_table, feature_bands, read_training
from misomap.models.rf import RFModel, dumps_model, fallback_features, fit_rf, select_features, with_fallback
from misomap.training.rf_cv import cross_validate, forest_weights, target_rows

log = logging.getLogger(__name__)
MODEL = "rf"


@dataclass(frozen=True)
class RFOutputs:
    """Locations written by one train-rf run."""

    predictions: str
    models: dict[str, str]
    report: str


def _final(rows: pd.DataFrame, features: list[str], target: str, offsets: list[dict[str, float]],
           config: RunConfig) -> RFModel:
    """The forest fitted on every row; under `threshold`, per class the median of the folds' offsets."""
    model = fit_rf(rows[features].to_numpy(), rows["label"].to_numpy(), features, target,
                   config.rf, config.seed, forest_weights(config.evaluation))
    if any(any(o.values()) for o in offsets):
        model = replace(model, offsets=tuple(float(np.median([o.get(c, 0.0) for o in offsets]))
                                             for c in model.classes))
    return model


def train_rf(config: RunConfig) -> RFOutputs:
    """The whole RF baseline of a run: table, folds (rebuilt; the same seed gives the same
    folds), CV predictions, final models (every labelled pedon; under `threshold`, the median of
    the folds' decision offsets), report."""
    build_training_table(config.labels, config.folds, config.cube_location(), config.workdir, config.storage,
                         config.seed)
    table, folds = read_training(config.workdir, config.storage)
    mdir = model_dir(config.workdir, MODEL)
    features = select_features(feature_bands(table), config.rf)
    fallback = fallback_features(features)
    if fallback:
        log.info("fallback forest on %s where an optional input has no data", fallback)
    preds, models = [], {}
    for target in TARGETS:
        rows = target_rows(table, target, fallback or features)
        log.info("%s: %d pedons, %d features, class weighting %s, class balance %g", target, len(rows),
                 len(features), config.evaluation.class_weighting, config.evaluation.class_balance)
        frame, offsets, fb_offsets = cross_validate(rows, folds, target, features, config.evaluation,
                                                    config.rf, config.seed, fallback or None)
        preds.append(frame)
        full = np.isfinite(rows[features].to_numpy(np.float64)).all(axis=1)
        model = _final(rows[full], features, target, offsets, config)
        if fallback:
            model = with_fallback(model, _final(rows, fallback, target, fb_offsets, config))
        models[target] = f"{mdir}/{target}.skops"
        Target(models[target], config.storage).write_bytes(dumps_model(model))
    preds_loc = f"{mdir}/predictions.parquet"
    write_parquet(preds_loc, pd.concat(preds, ignore_index=True), config.storage)
    log.info("RF predictions -> %s, models -> %s", preds_loc, list(models.values()))
    return RFOutputs(preds_loc, models, run_evaluation(config, MODEL))
