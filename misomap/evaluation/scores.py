"""Score the cross-validated predictions of ANY model on the shared folds: per fold with mean ± sd,
and pooled by region, by permafrost zone and by distance to the nearest training pedon.

A model hands in one predictions table (`<workdir>/models/<model>/predictions.parquet`):

    pedon_id (str), target ('permafrost' | 'soil_order'), scheme (a folds.parquet column),
    fold (int), y_true (str class label), y_pred (str), p_<class> (float) for every class of
    the target (permafrost classes '0', '1'; soil orders by name, see misomap.labels.pedons.TARGETS).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from misomap.core.config_base import StorageConfig
from misomap.core.errors import MisomapError
from misomap.core.storage import Target
from misomap.evaluation.config import EvaluationConfig
from misomap.labels.folds import distance_to_training, scheme_columns
from misomap.labels.pedons import TARGETS
from misomap.models.metrics import (binary_metrics, confusion, mean_sd, multiclass_calibration,
                                    multiclass_metrics, reliability)

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ("pedon_id", "target", "scheme", "fold", "y_true", "y_pred")


class EvaluationError(MisomapError):
    """Predictions cannot be evaluated; the message names the file, column or scheme at fault."""


@dataclass
class TargetEvaluation:
    """Every figure of one target: tables keyed by scheme, ready for the report."""

    target: str
    classes: tuple[str, ...]
    per_fold: pd.DataFrame  # scheme, fold, metrics...
    summary: pd.DataFrame  # scheme, metric, mean, sd
    by_region: pd.DataFrame  # scheme, region, metrics...
    by_zone: pd.DataFrame
    by_distance: pd.DataFrame  # scheme, distance, metrics...
    confusion: dict[str, np.ndarray] = field(default_factory=dict)  # scheme -> counts
    reliability: pd.DataFrame = field(default_factory=pd.DataFrame)  # scheme, bin_low, n, confidence, observed


def model_dir(workdir: str, model: str) -> str:
    """Where a model's files, predictions and report live."""
    return f"{workdir}/models/{model}"


def check_predictions(preds: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate a predictions table against the layout in this module's docstring."""
    missing = [c for c in PREDICTION_COLUMNS if c not in preds.columns]
    if missing:
        raise EvaluationError(f"{source}: missing column(s) {missing}; have {list(preds.columns)}")
    unknown = sorted(set(preds["target"]) - set(TARGETS))
    if unknown:
        raise EvaluationError(f"{source}: unknown target(s) {unknown}; expected {list(TARGETS)}")
    for target, classes in TARGETS.items():
        sub = preds[preds["target"] == target]
        if sub.empty:
            continue
        if target == "permafrost" and "p_1" not in sub.columns:
            raise EvaluationError(f"{source}: permafrost rows need a p_1 column")
        bad = sorted(set(sub["y_true"].astype(str)) - set(classes))
        if bad:
            raise EvaluationError(f"{source}: {target} y_true has unknown class(es) {bad}")
    dup = preds.duplicated(["pedon_id", "target", "scheme"])
    if dup.any():
        row = preds[dup].iloc[0]
        raise EvaluationError(f"{source}: pedon {row['pedon_id']!r} predicted twice for "
                              f"{row['target']}/{row['scheme']}; each pedon belongs to one fold")
    return preds.assign(y_true=preds["y_true"].astype(str), y_pred=preds["y_pred"].astype(str))


def check_against_folds(preds: pd.DataFrame, folds: pd.DataFrame, source: str) -> None:
    """Every prediction must sit in the fold folds.parquet gives its pedon under its scheme, so
    every model is judged on exactly the same folds."""
    unknown = sorted(set(preds["scheme"]) - set(scheme_columns(folds)))
    if unknown:
        raise EvaluationError(f"{source}: scheme(s) {unknown} are not in folds.parquet "
                              f"({scheme_columns(folds)})")
    long = folds.melt(id_vars="pedon_id", var_name="scheme", value_name="expected")
    joined = preds.merge(long, on=["pedon_id", "scheme"], how="left")
    wrong = joined["expected"].isna() | (joined["fold"] != joined["expected"])
    if wrong.any():
        row = joined[wrong].iloc[0]
        raise EvaluationError(
            f"{source}: {int(wrong.sum())} prediction(s) disagree with folds.parquet, e.g. pedon "
            f"{row['pedon_id']!r} scheme {row['scheme']!r} fold {row['fold']} (folds.parquet: "
            f"{'absent' if pd.isna(row['expected']) else int(row['expected'])}); predict on the "
            "shared folds")


def _score(target: str, classes: tuple[str, ...], rows: pd.DataFrame, cfg: EvaluationConfig,
           where: str, warn: bool = True) -> dict[str, float]:
    """Metrics of one group of rows; `classes` are the target's classes labelled anywhere, so a
    class no pedon carries is NaN without a warning per fold."""
    if target == "permafrost":
        return binary_metrics(rows["y_true"].to_numpy(), rows["p_1"].to_numpy(),
                              threshold=cfg.threshold, where=where, warn=warn)
    out = multiclass_metrics(rows["y_true"].to_numpy(), rows["y_pred"].to_numpy(), list(classes),
                             where=where, warn=warn)
    cols = [f"p_{c}" for c in TARGETS[target]]
    if all(c in rows.columns for c in cols):
        out |= multiclass_calibration(rows["y_true"].to_numpy(), rows[cols].to_numpy(np.float64),
                                      list(TARGETS[target]))
    return out | {f"recall_{c}": np.nan for c in TARGETS[target] if c not in classes}


def _grouped(target: str, classes: tuple[str, ...], rows: pd.DataFrame, by: str,
             cfg: EvaluationConfig, scheme: str) -> list[dict]:
    """Pooled metrics per value of `by` (a class missing from a group is expected: no warning)."""
    out = []
    for key, grp in rows.groupby(by, observed=True, dropna=True):
        if len(grp) < cfg.min_group:
            continue
        out.append({"scheme": scheme, by: key,
                    **_score(target, classes, grp, cfg, f"{target}/{scheme}/{by}={key}", warn=False)})
    return out


def distance_labels(bins_km: tuple[float, ...]) -> list[str]:
    """Readable names of the distance classes, e.g. ['<1 km', '1-10 km', '>=10 km']."""
    edges = [f"{b:g}" for b in bins_km]
    return ([f"<{edges[0]} km"] + [f"{a}-{b} km" for a, b in zip(edges, edges[1:])]
            + [f">={edges[-1]} km"])


def evaluate_target(target: str, preds: pd.DataFrame, table: pd.DataFrame,
                    cfg: EvaluationConfig) -> TargetEvaluation:
    """All figures of one target from its predictions joined to the table (x, y, region, zone)."""
    classes = TARGETS[target]
    info = table.set_index("pedon_id")[["x", "y", "region", "zone"]]
    rows = preds[preds["target"] == target].join(info, on="pedon_id")
    if rows[["x", "y"]].isna().any().any():
        bad = rows.loc[rows["x"].isna(), "pedon_id"].iloc[0]
        raise EvaluationError(f"{target}: predicted pedon {bad!r} is not in the training table")
    labelled = tuple(c for c in classes if (rows["y_true"] == c).any())
    if len(labelled) < len(classes):
        log.warning("%s: no pedon labelled %s; those classes are left out of every average",
                    target, [c for c in classes if c not in labelled])
    per_fold, regions, zones, dists, cms, rel = [], [], [], [], {}, []
    edges = np.array(cfg.distance_bins_km) * 1000.0
    names = distance_labels(cfg.distance_bins_km)
    for scheme, srows in rows.groupby("scheme", sort=False):
        srows = srows.copy()
        for fold, frows in srows.groupby("fold"):
            per_fold.append({"scheme": scheme, "fold": int(fold),
                             **_score(target, labelled, frows, cfg, f"{target}/{scheme}/fold {fold}")})
        dist = distance_to_training(srows[["x", "y"]].to_numpy(), srows["fold"].to_numpy())
        srows["distance_m"] = dist
        srows["distance"] = pd.Categorical.from_codes(np.searchsorted(edges, dist, side="right"),
                                                      categories=names)
        regions += _grouped(target, labelled, srows, "region", cfg, scheme)
        zones += _grouped(target, labelled, srows, "zone", cfg, scheme)
        dists += _grouped(target, labelled, srows, "distance", cfg, scheme)
        cms[scheme] = confusion(srows["y_true"], srows["y_pred"], list(classes))
        rel.append(_reliability(target, srows, cfg).assign(scheme=scheme))
    per_fold_df = pd.DataFrame(per_fold)
    summary = pd.concat(
        {s: mean_sd(g.drop(columns=["scheme", "fold", "n"])) for s, g in per_fold_df.groupby(
            "scheme", sort=False)}, names=["scheme", "metric"]).reset_index()
    by_distance = pd.DataFrame(dists)
    if not by_distance.empty:
        by_distance["distance"] = pd.Categorical(by_distance["distance"], categories=names,
                                                 ordered=True)
    return TargetEvaluation(target, classes, per_fold_df, summary, pd.DataFrame(regions),
                            pd.DataFrame(zones), by_distance, cms, pd.concat(rel, ignore_index=True))


def _reliability(target: str, rows: pd.DataFrame, cfg: EvaluationConfig) -> pd.DataFrame:
    """Reliability table of one scheme: P(permafrost) against the observed permafrost share; for
    soil order the top-class confidence against how often the top class is right."""
    if target == "permafrost":
        return reliability(rows["y_true"].to_numpy() == "1", rows["p_1"].to_numpy(), cfg.reliability_bins)
    cols = [f"p_{c}" for c in TARGETS[target]]
    if not all(c in rows.columns for c in cols):
        return pd.DataFrame(columns=["n", "confidence", "observed", "bin_low"])
    prob = rows[cols].to_numpy(np.float64)
    top = np.asarray(TARGETS[target])[prob.argmax(1)]
    return reliability(top == rows["y_true"].to_numpy(), prob.max(1), cfg.reliability_bins)


def evaluate(preds: pd.DataFrame, table: pd.DataFrame, cfg: EvaluationConfig,
             source: str = "<predictions>") -> dict[str, TargetEvaluation]:
    """Evaluate every target present in a predictions table."""
    preds = check_predictions(preds, source)
    return {t: evaluate_target(t, preds, table, cfg) for t in TARGETS if (preds["target"] == t).any()}


def read_predictions(location: str, storage: StorageConfig) -> pd.DataFrame:
    """A model's saved predictions table."""
    return pd.read_parquet(io.BytesIO(Target(location, storage).read_bytes()))
