"""The demo's last screen: what the run found (cross-validated figures of every model on the same
held-out folds of the demo's spatial scheme) and where to look next."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from misomap.core.config_base import StorageConfig
from misomap.core.errors import MissingObjectError
from misomap.evaluation.config import EvaluationConfig
from misomap.evaluation.map_truth import map_vs_truth
from misomap.evaluation.scores import evaluate, model_dir, read_predictions
from misomap.labels.training_table import read_training

log = logging.getLogger(__name__)

FIGURES = (  # (target, metric in the evaluation summary, column title)
    ("permafrost", "recall_1", "PF recall"),
    ("permafrost", "f1_1", "PF F1"),
    ("permafrost", "accuracy", "PF acc"),
    ("soil_order", "recall_macro", "SO macro recall"),
    ("soil_order", "accuracy", "SO acc"),
)


@dataclass(frozen=True)
class ModelFigures:
    """One model's mean figures over the shared test folds of one scheme."""

    model: str
    folds: int
    values: dict[str, float]  # column title -> mean over folds


def cv_figures(workdir: str, storage: StorageConfig, ev_cfg: EvaluationConfig, models: tuple[str, ...],
               scheme: str) -> list[ModelFigures]:
    """Every model's figures on `scheme`, each scored on the test folds all the models were run on
    (the demo runs MISO on fewer folds than the RF; a fair table uses the same held-out pedons)."""
    table, _ = read_training(workdir, storage)
    preds: dict[str, pd.DataFrame] = {}
    for name in models:
        try:
            p = read_predictions(f"{model_dir(workdir, name)}/predictions.parquet", storage)
        except MissingObjectError:
            log.info("no predictions of %s: left out of the summary", name)
            continue
        preds[name] = p[p["scheme"] == scheme]
    common: set[int] | None = None
    for p in preds.values():
        common = set(p["fold"]) if common is None else common & set(p["fold"])
    out = []
    for name, p in preds.items():
        p = p[p["fold"].isin(common or set())]
        metrics_log = logging.getLogger("misomap.models.metrics")
        level = metrics_log.level
        metrics_log.setLevel(logging.ERROR)  # absent classes were reported when the model was scored
        try:
            scores = evaluate(p, table, ev_cfg, source=name) if len(p) else {}
        finally:
            metrics_log.setLevel(level)
        values = {}
        for target, metric, title in FIGURES:
            ev = scores.get(target)
            row = ev.summary[(ev.summary["metric"] == metric)] if ev is not None else pd.DataFrame()
            values[title] = float(row["mean"].iloc[0]) if len(row) else float("nan")
        out.append(ModelFigures(name, len(common or ()), values))
    return out


def format_table(figures: list[ModelFigures], extra: dict[str, dict[str, float]] | None = None) -> str:
    """A fixed-width table, one row per model; `extra` adds columns per model (e.g. map vs truth)."""
    extra = extra or {}
    titles = [t for _, _, t in FIGURES] + sorted({k for v in extra.values() for k in v})
    lines = ["model".ljust(8) + "".join(t.rjust(len(t) + 3) for t in titles)]
    for f in figures:
        vals = {**f.values, **extra.get(f.model, {})}
        lines.append(f.model.ljust(8) + "".join(
            (f"{vals[t]:.3f}" if t in vals and vals[t] == vals[t] else "—").rjust(len(t) + 3)
            for t in titles))
    return "\n".join(lines)


def map_figures(maps: dict[str, str], world: str) -> dict[str, dict[str, float]]:
    """Each model's map against the demo world's truth rasters, over all land it covers:
    {model: {column title: value}} for `format_table`'s extra columns."""
    out = {}
    for model, url in maps.items():
        df = map_vs_truth(url, world)
        overall = df[df["by"] == "all"].set_index("target")
        out[model] = {"map PF acc": float(overall.loc["permafrost", "accuracy"]),
                      "map SO acc": float(overall.loc["soil_order", "accuracy"]),
                      "map SO F1": float(overall.loc["soil_order", "f1_macro"]),
                      "nodata %": 100 * (1 - float(overall.loc["permafrost", "coverage"]))}
        out[model] |= filled_figures(df)
    return out


FILL_COLUMNS = ("nodata %", "filled %", "PF acc filled", "PF acc rest", "SO acc filled", "SO acc rest")
"""`map_figures` columns about holes and filled pixels (shown apart by `fill_table`)."""


def split_fill(scores: dict[str, dict[str, float]]) -> tuple[dict[str, dict[str, float]], str]:
    """`map_figures` output split into the map columns (for `format_table`) and a table of the
    nodata share, the filled share and accuracy on filled pixels vs the rest, one row per model."""
    main = {m: {k: v for k, v in d.items() if k not in FILL_COLUMNS} for m, d in scores.items()}
    cols = [c for c in FILL_COLUMNS if any(c in d for d in scores.values())]
    lines = ["model".ljust(8) + "".join(c.rjust(len(c) + 3) for c in cols)]
    for m, d in scores.items():
        lines.append(m.ljust(8) + "".join((f"{d[c]:.3f}" if c in d and d[c] == d[c] else "—").rjust(len(c) + 3)
                                          for c in cols))
    return main, "\n".join(lines) if cols else ""


def filled_figures(df: pd.DataFrame) -> dict[str, float]:
    """From a `map_vs_truth` table: the share of mapped land pixels that were filled (predicted without
    some input) and PF / SO accuracy on filled pixels and on the rest."""
    by = df[df["by"] == "inputs"].set_index(["target", "group"])
    if by.empty:
        return {}
    n = by.loc["permafrost", "n"]
    out = {"filled %": 100 * float(n.get("filled", 0.0) / n.sum())}
    for target, short in (("permafrost", "PF"), ("soil_order", "SO")):
        acc = by.loc[target, "accuracy"]
        out[f"{short} acc filled"] = float(acc.get("filled", np.nan))
        out[f"{short} acc rest"] = float(acc.get("all inputs", np.nan))
    return out
