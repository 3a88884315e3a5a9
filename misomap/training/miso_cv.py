"""MISO trained on the shared folds: the cross-validation loop (validation carved from each fold's
training part, decision offsets fitted on it, out-of-fold predictions in the evaluation layout) and
the final model on every labelled pedon, checkpointing to storage."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from misomap.core.config_base import StorageConfig
from misomap.core.errors import MissingObjectError
from misomap.core.storage import Target
from misomap.evaluation.config import EvaluationConfig
from misomap.evaluation.scores import model_dir
from misomap.labels.folds import carve_validation, scheme_columns
from misomap.models.miso.config import SOIL_ORDERS, MisoConfig
from misomap.models.miso.crops import CropSampler, Points
from misomap.models.miso.model import MisoModel, parameter_count
from misomap.models.miso.offsets import apply_offsets, bake_offsets, fit_offsets
from misomap.models.miso.train import (TrainResult, model_checkpoint_bytes, predict_at, select_device,
                                       train_miso)
from misomap.models.miso.weights import Checkpoint
from misomap.models.weighting import DecisionOffsets, median_offsets
from misomap.training.miso_inputs import (ENCODERS, CubeArrays, MisoJobError, build_model, clip_to_pedons,
                                          label_points, read_weights, resolve_config)

log = logging.getLogger(__name__)

MODEL = "miso"


@dataclass(frozen=True)
class TrainingContext:
    """What training reads of a run: where outputs go, storage, the shared evaluation rules, the seed
    (the fields keep the run configuration's names)."""

    workdir: str
    storage: StorageConfig
    evaluation: EvaluationConfig
    seed: int


@dataclass(frozen=True)
class FsCheckpointStore:
    """Checkpoints as files under `root` (local or s3://)."""

    root: str
    storage: StorageConfig

    def save(self, name: str, data: bytes) -> None:
        Target(f"{self.root}/{name}", self.storage).write_bytes(data)

    def load(self, name: str) -> bytes | None:
        try:
            return Target(f"{self.root}/{name}", self.storage).read_bytes()
        except MissingObjectError:
            return None

def prediction_rows(pred: dict[str, np.ndarray], ids: np.ndarray, points: Points, scheme: str,
                    fold: int, tasks: list[str]) -> pd.DataFrame:
    """Test-fold predictions in the layout of misomap.evaluation.scores (nodata pedons left out)."""
    frames = []
    ok = pred["valid"]
    if "permafrost" in tasks:
        m = ok & (points.permafrost >= 0)
        p = pred["permafrost"][m].astype(float)
        frames.append(pd.DataFrame({"pedon_id": ids[m], "target": "permafrost", "scheme": scheme,
                                    "fold": fold, "y_true": points.permafrost[m].astype(str),
                                    "y_pred": np.where(p >= 0.5, "1", "0"), "p_0": 1 - p, "p_1": p,
                                    "entropy": pred["permafrost_entropy"][m]}))
    if "soil_order" in tasks:
        m = ok & (points.soil >= 0)
        q = pred["soil_order"][m].astype(float)
        frame = pd.DataFrame({"pedon_id": ids[m], "target": "soil_order", "scheme": scheme, "fold": fold,
                              "y_true": np.asarray(SOIL_ORDERS)[points.soil[m]],
                              "y_pred": np.asarray(SOIL_ORDERS)[q.argmax(-1)],
                              "entropy": pred["soil_order_entropy"][m]})
        frames.append(pd.concat([frame, pd.DataFrame(q, columns=[f"p_{c}" for c in SOIL_ORDERS])], axis=1))
    if (~ok).any():
        log.warning("%s fold %d: %d test pedon(s) on nodata pixels left out: %s", scheme, fold,
                    int((~ok).sum()), list(ids[~ok][:5]))
    return pd.concat(frames, ignore_index=True)

def _fit(cfg: MisoConfig, arrays: CubeArrays, ckpts: dict[str, Checkpoint], points: Points,
         train: np.ndarray, val: np.ndarray, store: FsCheckpointStore, seed: int,
         max_steps: int | None = None) -> tuple[MisoModel, CropSampler, TrainResult]:
    torch.manual_seed(seed)  # the initial weights are part of the run's determinism
    model = build_model(cfg, arrays.grid, ckpts)
    sampler = CropSampler(arrays.imagery, arrays.covariates, arrays.grid, points.subset(np.flatnonzero(train)),
                          cfg.crops)
    result = train_miso(model, sampler, np.arange(int(train.sum())), points.subset(np.flatnonzero(val)),
                        cfg, store, seed, max_steps)
    log.info("trained in %.0f s, best epoch %d (step %d, val score %.3f)", result.seconds,
             result.best_epoch, result.best_step, result.best_score)
    return model, sampler, result

@dataclass(frozen=True)
class FoldFit:
    """One trained fold: its test-fold predictions (decision offsets applied), the training result,
    the offsets and the train/validation masks it used."""

    pred: dict[str, np.ndarray]
    result: TrainResult
    offsets: DecisionOffsets
    train: np.ndarray
    val: np.ndarray


def fit_fold(config: TrainingContext, cfg: MisoConfig, arrays: CubeArrays, ckpts: dict[str, Checkpoint],
             table: pd.DataFrame, col: np.ndarray, fold: int, store: FsCheckpointStore,
             device: torch.device) -> FoldFit:
    """Train on the training part of `fold` in `col` (validation carved inside it, per-fold input
    bounds, decision offsets fitted on validation under `threshold` weighting) and predict the
    fold. The one fold procedure of both the cross-validation and the nested validation."""
    points, xy = label_points(table), table[["x", "y"]].to_numpy(np.float64)
    train, val = carve_validation(col, fold, config.evaluation.val_fraction, config.seed, xy)
    model, sampler, res = _fit(clip_to_pedons(cfg, table[train]), arrays, ckpts, points, train, val, store,
                               config.seed)
    offsets = DecisionOffsets()
    if config.evaluation.class_weighting == "threshold":
        vpts = points.subset(np.flatnonzero(val))
        offsets = fit_offsets(predict_at(model, sampler, vpts, device), vpts, points.subset(np.flatnonzero(train)))
    pred = apply_offsets(predict_at(model, sampler, points.subset(np.flatnonzero(col == fold)), device), offsets)
    return FoldFit(pred, res, offsets, train, val)


def variant_config(cfg: MisoConfig, variant: str) -> MisoConfig:
    """The config of a variant: `miso` or one of `ABLATIONS`."""
    data = cfg.model_dump()
    if variant == "no_contrastive":
        data["contrastive"]["enabled"] = False
    elif variant == "no_location":
        data["location"]["enabled"] = False
    elif variant == "location_input":
        data["location"]["role"] = "input"
    elif variant == "no_pretraining":
        for which in ENCODERS:
            if data[which] is not None:
                data[which]["weights"] = None
    return MisoConfig.model_validate(data)

def weighted_config(cfg: MisoConfig, rules: EvaluationConfig) -> MisoConfig:
    """The MISO config under the run's class-weighting rules, the RF's too: balanced losses only
    for `balanced`, per-label loss weights under `class_balance`."""
    loss = cfg.loss.model_copy(update={"class_weights": "balanced" if rules.class_weighting == "balanced"
                                       else "none"})
    train = cfg.train.model_copy(update={"class_balance": rules.class_balance})
    return cfg.model_copy(update={"loss": loss, "train": train})

def ready_config(config: TrainingContext, cfg: MisoConfig, arrays: CubeArrays
                 ) -> tuple[MisoConfig, dict[str, Checkpoint]]:
    """What every training of a run starts from: the pretrained checkpoints, and `cfg` under the
    shared class-weighting rules with what it leaves open filled from them and the cube."""
    ckpts = read_weights(cfg, config.storage)
    return resolve_config(weighted_config(cfg, config.evaluation), arrays, ckpts), ckpts


def scored_folds(col: np.ndarray, max_folds: int | None) -> list[int]:
    """The test folds of one scheme to cross-validate: all, or the `max_folds` largest (ties to the
    lower id) — chosen by size, never by score, so a few-pedon fold does not stand for a scheme."""
    ids, counts = np.unique(col[col >= 0], return_counts=True)
    keep = ids[np.argsort(-counts, kind="stable")][:max_folds]
    return sorted(int(f) for f in keep)


def cross_validate(config: TrainingContext, cfg: MisoConfig, name: str, arrays: CubeArrays,
                   table: pd.DataFrame, folds: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Out-of-fold MISO predictions on every configured scheme; returns them and run statistics
    (per fold: training seconds, the step count validation selected and its validation score —
    the mean macro recall of the tasks, how variants are compared without the test folds — and the
    decision offsets)."""
    cfg, ckpts = ready_config(config, cfg, arrays)
    points, ids = label_points(table), table["pedon_id"].astype(str).to_numpy()
    schemes = cfg.schemes or scheme_columns(folds)
    unknown = sorted(set(schemes) - set(folds.columns))
    if unknown:
        raise MisoJobError(f"fold scheme(s) {unknown} not in the folds table; it has {scheme_columns(folds)}")
    mdir = model_dir(config.workdir, name)
    Target(f"{mdir}/config.json", config.storage).write_bytes(cfg.model_dump_json(indent=2).encode())
    out, per_fold, device = [], [], select_device(cfg.train)
    for scheme in schemes:
        col = folds[scheme].to_numpy()
        for fold in scored_folds(col, cfg.max_folds):
            log.info("%s: %s fold %d", name, scheme, fold)
            fit = fit_fold(config, cfg, arrays, ckpts, table, col, fold,
                           FsCheckpointStore(f"{mdir}/checkpoints/{scheme}/fold{fold}", config.storage), device)
            test = np.flatnonzero(col == fold)
            out.append(prediction_rows(fit.pred, ids[test], points.subset(test), scheme, fold, cfg.loss.tasks)
                       .assign(train_seconds=fit.result.seconds))
            per_fold.append({"scheme": scheme, "fold": int(fold), "seconds": fit.result.seconds,
                             "best_step": fit.result.best_step, "val_score": fit.result.best_score,
                             "train_pedons": int(fit.train.sum()),
                             "val_pedons": int(fit.val.sum()), "offsets": fit.offsets.as_dict()})
    seconds = [f["seconds"] for f in per_fold]
    stats = {"model": name, "parameters": parameter_count(build_model(cfg, arrays.grid, {})),
             "train_seconds_per_fold_mean": float(np.mean(seconds)), "folds_trained": len(seconds),
             "class_weighting": config.evaluation.class_weighting,
             "class_balance": config.evaluation.class_balance, "folds": per_fold,
             "selected_steps": int(np.median([f["best_step"] for f in per_fold]))}
    return pd.concat(out, ignore_index=True), stats

def train_final(config: TrainingContext, cfg: MisoConfig, arrays: CubeArrays, table: pd.DataFrame,
                name: str = MODEL) -> str:
    """One model of `cfg` on every labelled pedon, nothing held out, for the median step count the
    cross-validation of `name` (the same variant) selected, with the median of its folds' decision
    offsets baked into the heads. Returns the map model's location (`<name>/final/model.safetensors`)."""
    try:
        stats = json.loads(Target(f"{model_dir(config.workdir, name)}/training.json",
                                  config.storage).read_bytes())
    except MissingObjectError:
        raise MisoJobError(f"no cross-validation of {name} under {model_dir(config.workdir, name)}: "
                           "the final model's step count comes from it; run with miso.include_full "
                           "true (or the variant among the ablations)") from None
    cfg, ckpts = ready_config(config, cfg, arrays)
    points = label_points(table)
    labelled = (points.permafrost >= 0) | (points.soil >= 0)
    root = f"{model_dir(config.workdir, name)}/final"
    model, _, res = _fit(clip_to_pedons(cfg, table[labelled]), arrays, ckpts, points, labelled,
                         np.zeros(len(points), bool),
                         FsCheckpointStore(root, config.storage), config.seed, stats["selected_steps"])
    offsets = median_offsets([DecisionOffsets.from_dict(f["offsets"]) for f in stats["folds"]])
    bake_offsets(model, offsets)
    loc = f"{root}/model.safetensors"
    Target(loc, config.storage).write_bytes(model_checkpoint_bytes(model))
    log.info("final model: %d pedons, %d steps (selected by CV), offsets %s -> %s", int(labelled.sum()),
             stats["selected_steps"], offsets.as_dict(), loc)
    return loc
