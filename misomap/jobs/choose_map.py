"""`misomap choose-map`: the published map's model per target (`map.model: auto`), chosen by nested
spatial validation among the RF, MISO and their logistic stack (misomap.training.auto).

Needs `misomap train-rf` and `misomap train-miso` first (their out-of-fold predictions, the RF's
forests, MISO's final model). For every test fold MISO was cross-validated on, both models are
fitted again on the inner folds of its training part (MISO's inner checkpoints under
`models/miso/inner/`, shared with `miso.design` and resumed on rerun). Writes `models/auto/`:
auto.json (the choice per target, its margin and every candidate's score; a published stack's
coefficients), inner_scores.csv, predictions.parquet (the whole procedure's test-fold predictions,
choice included: the scored model), report/, and copies of the model files the map reads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pandas as pd

from misomap.config import RunConfig
from misomap.core.storage import Target
from misomap.evaluation.report import write_report
from misomap.evaluation.scores import evaluate, model_dir, read_predictions
from misomap.jobs.train_miso import context, miso_section
from misomap.labels.folds import inner_folds, scheme_columns
from misomap.labels.pedons import TARGETS, write_parquet
from misomap.labels.training_table import feature_bands, read_training
from misomap.mapping.config import AutoConfig
from misomap.mapping.predictors.auto import CHOICE, MISO_FILE
from misomap.mapping.predictors.rf import TARGET_FILES
from misomap.models.rf import select_features
from misomap.training.auto import AutoError, auto_predictions, choose, inner_scores, map_stack
from misomap.training.miso_cv import MODEL, scored_folds, variant_config
from misomap.training.miso_design import inner_validate
from misomap.training.miso_inputs import load_arrays
from misomap.training.rf_cv import nested_predictions, target_rows

log = logging.getLogger(__name__)

AUTO = "auto"
CRITERION = "mean inner-fold macro recall of the target (balanced accuracy for permafrost)"


@dataclass(frozen=True)
class AutoOutputs:
    """What one choose-map run wrote and chose."""

    model_path: str
    predictions: str
    report: str
    choice: dict


def auto_section(config: RunConfig) -> AutoConfig:
    """The run's `map.auto` settings (defaults when the run has no map section)."""
    return config.map.auto if config.map is not None else AutoConfig()


def run_choose_map(config: RunConfig) -> AutoOutputs:
    """Inner predictions of both models → candidates' inner scores → the choice per test fold and
    for the map → the procedure's report and the published model's folder."""
    cfg, auto, storage = miso_section(config), auto_section(config), config.storage
    table, folds = read_training(config.workdir, storage)
    table = table.assign(pedon_id=table["pedon_id"].astype(str))
    folds = folds.assign(pedon_id=folds["pedon_id"].astype(str))
    schemes = cfg.schemes or scheme_columns(folds)
    scheme = auto.scheme or (cfg.design.map_scheme if cfg.design else schemes[0])
    if scheme not in schemes:
        raise AutoError(f"map.auto.scheme {scheme!r} is not among the schemes MISO is cross-validated on "
                        f"({schemes})")
    plan = [(s, f, inner_folds(folds[s].to_numpy(), f, auto.inner_folds, auto.min_share))
            for s in schemes for f in scored_folds(folds[s].to_numpy(), cfg.max_folds)]
    mdir = model_dir(config.workdir, AUTO)
    final_miso = f"{model_dir(config.workdir, MODEL)}/final/model.safetensors"
    if not Target(final_miso, storage).exists():
        raise AutoError(f"no MISO map model at {final_miso}: run `misomap train-miso` with miso.final_model "
                        "true (and the full model among the variants) first")

    features = select_features(feature_bands(table), config.rf)
    rf_inner = pd.concat([nested_predictions(target_rows(table, t, features), folds, t, features,
                                             config.evaluation, config.rf, config.seed, plan) for t in TARGETS],
                         ignore_index=True)
    arrays = load_arrays(config.cube_location(), storage, cfg)
    _, miso_inner = inner_validate(context(config), variant_config(cfg, "miso"), MODEL, auto.inner_folds,
                                   auto.min_share, arrays, table, folds)
    inner = pd.concat([rf_inner.assign(model="rf"), miso_inner.assign(model="miso")], ignore_index=True)
    inner = inner.assign(pedon_id=inner["pedon_id"].astype(str), y_true=inner["y_true"].astype(str))
    write_parquet(f"{mdir}/inner_predictions.parquet", inner, storage)

    outer = pd.concat([read_predictions(f"{model_dir(config.workdir, m)}/predictions.parquet", storage)
                       .assign(model=m) for m in ("rf", MODEL)], ignore_index=True)
    keep = pd.MultiIndex.from_tuples([(s, f) for s, f, _ in plan])
    outer = outer[pd.MultiIndex.from_frame(outer[["scheme", "fold"]]).isin(keep)]
    outer = outer.assign(pedon_id=outer["pedon_id"].astype(str), y_true=outer["y_true"].astype(str))

    scores = inner_scores(inner, config.seed)
    Target(f"{mdir}/inner_scores.csv", storage).write_bytes(scores.to_csv(index=False).encode())
    candidates = tuple(auto.candidates)
    per_fold, choice = choose(scores, scheme, candidates)
    preds, _ = auto_predictions(per_fold, inner, outer, folds, config.seed)
    loc = f"{mdir}/predictions.parquet"
    write_parquet(loc, preds, storage)
    report = write_report(evaluate(preds, table, config.evaluation, source=loc), AUTO, f"{mdir}/report",
                          config.evaluation, storage)
    for target, c in choice.items():
        if c["model"] == "stack":
            c["stack"] = map_stack(outer, target, scheme, config.seed).as_dict()
    record = {"scheme": scheme, "criterion": CRITERION, "candidates": list(candidates),
              "inner_folds": auto.inner_folds, "min_share": auto.min_share, "targets": choice,
              "folds": per_fold.to_dict(orient="records"),
              "sources": {"rf": f"{model_dir(config.workdir, 'rf')}", "miso": final_miso}}
    Target(f"{mdir}/{CHOICE}", storage).write_bytes(json.dumps(record, indent=2).encode())
    for name in TARGET_FILES.values():  # the map reads copies: its digest covers every file it used
        src = Target(f"{model_dir(config.workdir, 'rf')}/{name}", storage).read_bytes()
        Target(f"{mdir}/rf/{name}", storage).write_bytes(src)
    Target(f"{mdir}/{MISO_FILE}", storage).write_bytes(Target(final_miso, storage).read_bytes())
    log.info("published model by nested validation on %s: %s", scheme,
             {t: f"{c['model']} (margin {c['margin']:.3f})" for t, c in choice.items()})
    return AutoOutputs(mdir, loc, report, record)
