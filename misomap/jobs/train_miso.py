"""`misomap pretrain` and `misomap train-miso`: the cube and the training table/folds of a run →
self-supervised encoder pretraining → MISO cross-validated on exactly the saved folds (plus the
configured ablations) → the shared evaluation report, a MISO-vs-RF comparison, and a final model
trained on every labelled pedon for the map job.

Layout under `<workdir>/models/<model>/`: predictions.parquet, report/, checkpoints/<scheme>/
fold<k>/{best,last}.safetensors, final/{best,last}.safetensors, config.json; the comparison goes to
`<workdir>/models/miso/comparison.md` (+ .png, .csv). Under `miso.design`, each candidate also has
inner.parquet and inner/<scheme>/fold<k>/fold<j>/ (nested validation), and `miso_selected/` holds
the nested-CV predictions, their report and design.json (every choice and the map model's).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import pandas as pd

from misomap.config import RunConfig
from misomap.core.errors import ConfigError
from misomap.core.storage import Target
from misomap.evaluation.comparison import compare
from misomap.evaluation.report import write_report
from misomap.evaluation.scores import evaluate, model_dir
from misomap.labels.pedons import write_parquet
from misomap.labels.training_table import read_training
from misomap.models.miso.config import ABLATIONS, SELECTED, DesignConfig, MisoConfig
from misomap.training import pretrain
from misomap.training.miso_cv import MODEL, TrainingContext, cross_validate, train_final, variant_config
from misomap.training.miso_design import check_design, choose, inner_validate, selected_predictions, variant_name
from misomap.training.miso_inputs import load_arrays

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MisoOutputs:
    """What one train-miso run wrote."""

    predictions: dict[str, str]
    reports: dict[str, str]
    comparison: str
    final_model: str | None


def miso_section(config: RunConfig) -> MisoConfig:
    """The run's `miso` section, or a ConfigError saying it is needed."""
    if config.miso is None:
        raise ConfigError("the run configuration has no `miso` section: add one with at least "
                          "miso.imagery.bands")
    return config.miso


def context(config: RunConfig) -> TrainingContext:
    """The part of the run the training wing reads."""
    return TrainingContext(str(config.workdir), config.storage, config.evaluation, config.seed)


def run_train_miso(config: RunConfig) -> MisoOutputs:
    """Cross-validate MISO and its ablations (and, under `miso.design`, each candidate again inside
    every training part, choosing the design per test fold and for the map), report, compare with
    the RF, train the final model of the chosen design."""
    cfg = miso_section(config)
    table, folds = read_training(config.workdir, config.storage)
    check_design(cfg, folds)
    arrays = load_arrays(config.cube_location(), config.storage, cfg)
    ctx = context(config)
    preds, reports, frames, inner = {}, {}, {}, []
    design = cfg.design.candidates if cfg.design else []
    variants = ["miso"] * cfg.include_full + list(cfg.ablations)
    for variant in variants + [v for v in design if v not in variants]:
        name = variant_name(variant)
        t0 = time.perf_counter()
        frame, st = cross_validate(ctx, variant_config(cfg, variant), name, arrays, table, folds)
        log.info("%s cross-validated in %.0f s", name, time.perf_counter() - t0)
        if variant in design:
            scores, _ = inner_validate(ctx, variant_config(cfg, variant), name, cfg.design.inner_folds,
                                       cfg.design.min_share, arrays, table, folds)
            inner.append(scores)
            write_parquet(f"{model_dir(config.workdir, name)}/inner.parquet", inner[-1], config.storage)
        Target(f"{model_dir(config.workdir, name)}/training.json", config.storage).write_bytes(
            json.dumps(st).encode())
        frames[name], preds[name], reports[name] = frame, *_report(config, name, frame, table)
    final_variant = "miso"
    if cfg.design:
        final_variant, preds[SELECTED], reports[SELECTED] = record_design(
            config, cfg.design, pd.concat(inner, ignore_index=True), frames, table)
    comparison = compare(config.workdir, config.storage, config.evaluation,
                         ["rf", MODEL, SELECTED, *[f"{MODEL}_{a}" for a in ABLATIONS]])
    final = (train_final(ctx, variant_config(cfg, final_variant), arrays, table, variant_name(final_variant))
             if cfg.final_model else None)
    return MisoOutputs(preds, reports, comparison, final)


def record_design(config: RunConfig, design: DesignConfig, inner: pd.DataFrame, frames: dict[str, pd.DataFrame],
                  table: pd.DataFrame) -> tuple[str, str, str]:
    """Choose the design from every candidate's inner scores, save `miso_selected` (its nested-CV
    predictions, report and design.json); returns the map model's variant and both locations."""
    per_fold, final_variant = choose(inner, design)
    loc, report = _report(config, SELECTED, selected_predictions(per_fold, frames), table)
    record = {"candidates": [variant_name(c) for c in design.candidates], "map_scheme": design.map_scheme,
              "map_model": variant_name(final_variant), "folds": per_fold.to_dict(orient="records")}
    Target(f"{model_dir(config.workdir, SELECTED)}/design.json", config.storage).write_bytes(
        json.dumps(record, indent=2).encode())
    log.info("design by nested validation: map model %s; per test fold %s", record["map_model"],
             per_fold[["scheme", "fold", "chosen"]].to_dict(orient="records"))
    return final_variant, loc, report


def _report(config: RunConfig, name: str, frame: pd.DataFrame, table: pd.DataFrame) -> tuple[str, str]:
    """Save one model's out-of-fold predictions and its evaluation report; returns both locations."""
    loc = f"{model_dir(config.workdir, name)}/predictions.parquet"
    write_parquet(loc, frame, config.storage)
    results = evaluate(frame, table, config.evaluation, source=loc)
    return loc, write_report(results, name, f"{model_dir(config.workdir, name)}/report", config.evaluation,
                             config.storage)


def run_pretrain(config: RunConfig) -> dict[str, str]:
    """Pretrain the Swin-V2 encoders (SimMIM) on unlabelled cube tiles; returns where each went."""
    cfg = miso_section(config)
    arrays = load_arrays(config.cube_location(), config.storage, cfg)
    out = cfg.pretrain.output or f"{config.workdir}/miso/pretrained"
    return pretrain.pretrain(cfg, arrays, out, config.storage, config.seed)
