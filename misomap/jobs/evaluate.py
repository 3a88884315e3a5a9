"""`misomap evaluate`: regenerate a model's report from its saved cross-validated predictions."""

from __future__ import annotations

from misomap.config import RunConfig
from misomap.evaluation.report import write_report
from misomap.evaluation.scores import check_against_folds, evaluate, model_dir, read_predictions
from misomap.labels.folds import scheme_columns
from misomap.labels.training_table import read_training


def run_evaluation(config: RunConfig, model: str = "rf") -> str:
    """Regenerate a model's report from its saved predictions; returns the report's location."""
    mdir = model_dir(config.workdir, model)
    preds_loc = f"{mdir}/predictions.parquet"
    preds = read_predictions(preds_loc, config.storage)
    table, folds = read_training(config.workdir, config.storage)
    check_against_folds(preds, folds, preds_loc)
    results = evaluate(preds, table, config.evaluation, source=preds_loc)
    missing = [s for s in scheme_columns(folds) if s not in set(preds["scheme"])]
    notes = [f"Fold schemes without predictions (no usable folds, see the folds log): {missing}"
             ] if missing else []
    return write_report(results, model, f"{mdir}/report", config.evaluation, config.storage, notes)
