"""MISO's design chosen by nested cross-validation: each candidate variant is cross-validated again
inside every test fold's training part (on the same scheme), each test fold is predicted by the
candidate its inner folds score best, and the map model takes the candidate the `map_scheme`'s
inner folds score best. The test folds never take part in a choice; the selected predictions are
an honest estimate of the whole procedure, choice included."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from misomap.evaluation.scores import model_dir
from misomap.labels.folds import FoldsError, inner_folds, scheme_columns
from misomap.models.miso.config import DesignConfig, MisoConfig
from misomap.models.miso.train import macro_recall, select_device, validation_score
from misomap.models.miso.crops import Points
from misomap.training.miso_cv import (FsCheckpointStore, TrainingContext, fit_fold, prediction_rows, ready_config,
                                     scored_folds)
from misomap.training.miso_inputs import CubeArrays, MisoJobError, label_points

log = logging.getLogger(__name__)

def variant_name(variant: str) -> str:
    """The model folder of a variant: `miso` for the full model, `miso_<ablation>` otherwise."""
    return "miso" if variant == "miso" else f"miso_{variant}"


def check_design(cfg: MisoConfig, folds: pd.DataFrame) -> None:
    """Refuse, before any training, a design choice that cannot be made: `map_scheme` not among the
    schemes cross-validated, or a test fold whose training part has no inner fold to hold out."""
    if cfg.design is None:
        return
    schemes = cfg.schemes or scheme_columns(folds)
    if cfg.design.map_scheme not in schemes:
        raise MisoJobError(f"miso.design.map_scheme {cfg.design.map_scheme!r} is not among the schemes "
                           f"cross-validated ({schemes}): add it to miso.schemes or choose one of them")
    for scheme in schemes:
        col = folds[scheme].to_numpy()
        for fold in scored_folds(col, cfg.max_folds):
            try:
                inner_folds(col, fold, cfg.design.inner_folds, cfg.design.min_share)
            except FoldsError as err:
                raise MisoJobError(f"scheme {scheme}: {err}") from None


def inner_validate(config: TrainingContext, cfg: MisoConfig, name: str, n_inner: int, min_share: float,
                   arrays: CubeArrays, table: pd.DataFrame, folds: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One candidate's inner scores: per test fold of each scheme, per inner fold (`inner_folds`,
    at most `n_inner` holding `min_share` of the training part), the validation score (mean over
    tasks of macro recall; what early stopping selects with) on the held-out inner fold, with each
    task's recall; and the inner folds' predictions (evaluation layout, `fold` the test fold, plus
    `inner_fold`). Checkpoints under `<name>/inner/`, so a rerun resumes."""
    cfg, ckpts = ready_config(config, cfg, arrays)
    points, device, mdir = label_points(table), select_device(cfg.train), model_dir(config.workdir, name)
    ids = table["pedon_id"].astype(str).to_numpy()
    rows, preds = [], []
    for scheme in cfg.schemes or scheme_columns(folds):
        col = folds[scheme].to_numpy()
        for fold in scored_folds(col, cfg.max_folds):
            inner = np.where(col == fold, -1, col)  # the training part alone, folds as they are
            for g in inner_folds(col, fold, n_inner, min_share):
                log.info("%s: %s fold %d, inner fold %d", name, scheme, fold, g)
                store = FsCheckpointStore(f"{mdir}/inner/{scheme}/fold{fold}/fold{g}", config.storage)
                fit = fit_fold(config, cfg, arrays, ckpts, table, inner, g, store, device)
                held = points.subset(np.flatnonzero(inner == g))
                preds.append(prediction_rows(fit.pred, ids[inner == g], held, scheme, fold, cfg.loss.tasks)
                             .assign(inner_fold=g))
                rows.append({"model": name, "scheme": scheme, "fold": int(fold), "inner_fold": g,
                             "pedons": len(held.x), "score": validation_score(fit.pred, held),
                             **_task_recalls(fit.pred, held), "seconds": fit.result.seconds})
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True)


def _task_recalls(pred: dict[str, np.ndarray], points: Points) -> dict[str, float]:
    """Permafrost recall and soil-order macro recall on the held-out points (for the report)."""
    ok, out = pred["valid"], {}
    if "permafrost" in pred:
        m = ok & (points.permafrost >= 0)
        y, hit = points.permafrost[m], pred["permafrost"][m] >= 0.5
        out["permafrost_recall"] = float(hit[y == 1].mean()) if (y == 1).any() else float("nan")
    if "soil_order" in pred:
        m = ok & (points.soil >= 0)
        out["soil_order_recall"] = macro_recall(points.soil[m], pred["soil_order"][m].argmax(-1))
    return out


def choose(inner: pd.DataFrame, design: DesignConfig) -> tuple[pd.DataFrame, str]:
    """Per test fold, the candidate (its folder name) with the best mean inner score, ties to the
    earlier one in `design.candidates`; and the map model's variant: the best mean over the test
    folds of `design.map_scheme`. `inner` holds every candidate's rows (`model` = its folder name)."""
    names = [variant_name(c) for c in design.candidates]
    missing = sorted(set(names) - set(inner["model"]))
    if missing:
        raise MisoJobError(f"no inner validation of design candidate(s) {missing}")
    mean = inner.groupby(["scheme", "fold", "model"])["score"].mean().unstack("model")[names]
    if mean.isna().any().any():
        raise MisoJobError("a design candidate has no inner score on some test fold: "
                           f"{mean[mean.isna().any(axis=1)].index.tolist()}")
    per_fold = mean.assign(chosen=mean.idxmax(axis=1)).reset_index()  # idxmax: first maximum
    if design.map_scheme not in set(per_fold["scheme"]):
        raise MisoJobError(f"miso.design.map_scheme {design.map_scheme!r} is not among the schemes cross-"
                           f"validated ({sorted(set(per_fold['scheme']))}): add it to miso.schemes")
    on_map = mean.loc[design.map_scheme].mean()
    return per_fold, design.candidates[names.index(on_map.idxmax())]


def selected_predictions(per_fold: pd.DataFrame, preds: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The nested-CV predictions: each test fold's rows from the candidate chosen for it."""
    parts = []
    for row in per_fold.itertuples():
        p = preds[row.chosen]
        parts.append(p[(p["scheme"] == row.scheme) & (p["fold"] == row.fold)].assign(candidate=row.chosen))
    return pd.concat(parts, ignore_index=True)
