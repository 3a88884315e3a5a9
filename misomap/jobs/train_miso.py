"""`misomap pretrain` and `misomap train-miso`: the cube and the training table/folds of a run →
self-supervised encoder pretraining → MISO cross-validated on exactly the saved folds (plus the
configured ablations) → the shared evaluation report, a MISO-vs-RF comparison, and a final model
trained on every labelled pedon for the map job.

Layout under `<workdir>/models/<model>/`: predictions.parquet, report/, checkpoints/<scheme>/
fold<k>/{best,last}.safetensors, final/{best,last}.safetensors, config.json; the comparison goes to
`<workdir>/models/miso/comparison.md` (+ .png, .csv).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from misomap.config import RunConfig
from misomap.core.errors import ConfigError
from misomap.core.storage import Target
from misomap.evaluation.comparison import compare
from misomap.evaluation.report import write_report
from misomap.evaluation.scores import evaluate, model_dir
from misomap.labels.pedons import write_parquet
from misomap.labels.training_table import read_training
from misomap.models.miso.config import ABLATIONS, MisoConfig
from misomap.training import pretrain
from misomap.training.miso_cv import MODEL, TrainingContext, cross_validate, train_final, variant_config
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
    """Cross-validate MISO and its ablations, report, compare with the RF, train the final model."""
    cfg = miso_section(config)
    table, folds = read_training(config.workdir, config.storage)
    arrays = load_arrays(config.cube_location(), config.storage, cfg)
    ctx = context(config)
    preds, reports = {}, {}
    for variant in ["miso"] * cfg.include_full + list(cfg.ablations):
        name = MODEL if variant == "miso" else f"{MODEL}_{variant}"
        t0 = time.perf_counter()
        frame, st = cross_validate(ctx, variant_config(cfg, variant), name, arrays, table, folds)
        log.info("%s cross-validated in %.0f s", name, time.perf_counter() - t0)
        loc = f"{model_dir(config.workdir, name)}/predictions.parquet"
        write_parquet(loc, frame, config.storage)
        preds[name] = loc
        Target(f"{model_dir(config.workdir, name)}/training.json", config.storage).write_bytes(
            json.dumps(st).encode())
        results = evaluate(frame, table, config.evaluation, source=loc)
        out = f"{model_dir(config.workdir, name)}/report"
        reports[name] = write_report(results, name, out, config.evaluation, config.storage)
    comparison = compare(config.workdir, config.storage, config.evaluation,
                         ["rf", MODEL, *[f"{MODEL}_{a}" for a in ABLATIONS]])
    final = train_final(ctx, cfg, arrays, table) if cfg.final_model else None
    return MisoOutputs(preds, reports, comparison, final)


def run_pretrain(config: RunConfig) -> dict[str, str]:
    """Pretrain the Swin-V2 encoders (SimMIM) on unlabelled cube tiles; returns where each went."""
    cfg = miso_section(config)
    arrays = load_arrays(config.cube_location(), config.storage, cfg)
    out = cfg.pretrain.output or f"{config.workdir}/miso/pretrained"
    return pretrain.pretrain(cfg, arrays, out, config.storage, config.seed)
