"""Metrics and the model-agnostic evaluation report: defined when a class is absent, never crashing."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from misomap.config import RunConfig
from misomap.evaluation.scores import EvaluationError, evaluate
from misomap.evaluation.config import EvaluationConfig
from misomap.labels.pedons import SOIL_ORDERS
from misomap.evaluation.report import write_report
from misomap.models.metrics import binary_metrics, confusion, mean_sd, multiclass_metrics


def test_binary_metrics_known_values():
    y = np.array(["1", "1", "0", "0"])
    p = np.array([0.9, 0.4, 0.2, 0.6])
    m = binary_metrics(y, p)
    assert m["accuracy"] == 0.5
    assert m["recall_1"] == 0.5 and m["precision_1"] == 0.5 and m["recall_0"] == 0.5
    assert m["roc_auc"] == 0.75
    assert m["brier"] == pytest.approx(np.mean([0.01, 0.36, 0.04, 0.36]))
    assert 0 < m["pr_auc"] <= 1


def test_binary_fold_without_positives_is_defined_with_warning(caplog):
    with caplog.at_level(logging.WARNING):
        m = binary_metrics(np.array(["0", "0", "0"]), np.array([0.1, 0.7, 0.2]), where="fold 3")
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert np.isnan(m["roc_auc"]) and np.isnan(m["pr_auc"]) and np.isnan(m["recall_1"])
    assert m["recall_0"] == pytest.approx(2 / 3)
    assert "class '1' absent in fold 3" in caplog.text


def test_multiclass_absent_class_defined_with_warning(caplog):
    classes = ["A", "B", "C"]
    y = np.array(["A", "A", "B", "B"])
    pred = np.array(["A", "B", "B", "C"])
    with caplog.at_level(logging.WARNING):
        m = multiclass_metrics(y, pred, classes, where="blocks/fold 1")
    assert m["accuracy"] == 0.5
    assert m["recall_A"] == 0.5 and m["recall_B"] == 0.5 and np.isnan(m["recall_C"])
    assert m["recall_macro"] == pytest.approx(0.5)  # over A and B, the classes present
    assert "['C'] absent in blocks/fold 1" in caplog.text
    assert confusion(y, pred, classes).tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]


def test_mean_sd_skips_nan():
    out = mean_sd(pd.DataFrame({"a": [1.0, 3.0, np.nan]}))
    assert out.loc["a", "mean"] == 2.0 and out.loc["a", "sd"] == pytest.approx(np.sqrt(2))


def _any_model_predictions(n: int = 120) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions as any model (here a fake one) would write them, plus the pedon table."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"pedon_id": [f"p{i}" for i in range(n)], "x": rng.uniform(0, 3e4, n),
                          "y": rng.uniform(0, 3e4, n), "region": rng.choice(["r1", "r2"], n),
                          "zone": rng.choice(["continuous", "sporadic"], n)})
    rows = []
    for scheme in ("random", "blocks"):
        fold = rng.integers(0, 3, n)
        pf = rng.integers(0, 2, n).astype(str)
        p1 = np.clip(np.where(pf == "1", 0.7, 0.3) + rng.normal(0, 0.2, n), 0, 1)
        rows.append(pd.DataFrame({"pedon_id": table["pedon_id"], "target": "permafrost",
                                  "scheme": scheme, "fold": fold, "y_true": pf,
                                  "y_pred": np.where(p1 >= 0.5, "1", "0"), "p_0": 1 - p1, "p_1": p1}))
        so = rng.choice(SOIL_ORDERS[:4], n)  # Mollisols, Spodosols, Andisols absent everywhere
        probs = rng.dirichlet(np.ones(len(SOIL_ORDERS)), n)
        so_rows = pd.DataFrame({"pedon_id": table["pedon_id"], "target": "soil_order",
                                "scheme": scheme, "fold": fold, "y_true": so,
                                "y_pred": np.where(rng.random(n) < 0.6, so, "Gelisols")})
        rows.append(pd.concat([so_rows, pd.DataFrame(probs, columns=[f"p_{c}" for c in SOIL_ORDERS])],
                              axis=1))
    return pd.concat(rows, ignore_index=True), table


def test_report_from_any_models_predictions(tmp_path):
    preds, table = _any_model_predictions()
    results = evaluate(preds, table, EvaluationConfig())
    assert set(results) == {"permafrost", "soil_order"}
    so = results["soil_order"]
    assert set(so.per_fold["scheme"]) == {"random", "blocks"} and len(so.per_fold) == 6
    assert so.per_fold["recall_Mollisols"].isna().all()
    assert set(so.by_region["region"]) == {"r1", "r2"}
    assert not so.by_distance.empty
    run = RunConfig(workdir=str(tmp_path))
    out = write_report(results, "fake", str(tmp_path / "report"), run.evaluation, run.storage)
    text = (tmp_path / "report" / "report.md").read_text()
    assert out.endswith("report.md")
    assert "| random |" in text and " ± " in text and "By permafrost zone" in text
    for target in ("permafrost", "soil_order"):
        for kind in ("confusion", "recall_distance", "regions"):
            png = tmp_path / "report" / f"{target}_{kind}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "report" / f"{target}_per_fold.csv").exists()


@pytest.mark.parametrize("mutate,match", [
    (lambda p: p.drop(columns="fold"), r"missing column\(s\) \['fold'\]"),
    (lambda p: p.assign(target="ph"), r"unknown target\(s\) \['ph'\]"),
    (lambda p: pd.concat([p, p.iloc[:1]]), "predicted twice"),
    (lambda p: p.assign(y_true=np.where(p["target"] == "soil_order", "Oxisols", p["y_true"])),
     "unknown class"),
])
def test_bad_predictions_named(mutate, match):
    preds, table = _any_model_predictions(30)
    with pytest.raises(EvaluationError, match=match):
        evaluate(mutate(preds), table, EvaluationConfig())


def test_prediction_for_unknown_pedon_named():
    preds, table = _any_model_predictions(30)
    with pytest.raises(EvaluationError, match="'p0' is not in the training table"):
        evaluate(preds, table.iloc[1:], EvaluationConfig())


def test_predictions_must_use_the_shared_folds():
    from misomap.evaluation.scores import check_against_folds

    preds, _ = _any_model_predictions(30)
    folds = (preds[preds["target"] == "permafrost"]
             .pivot(index="pedon_id", columns="scheme", values="fold").reset_index())
    check_against_folds(preds, folds, "ok.parquet")
    moved = preds.copy()
    moved.loc[0, "fold"] = (moved.loc[0, "fold"] + 1) % 3
    with pytest.raises(EvaluationError, match=r"1 prediction\(s\) disagree with folds.parquet, e.g. "
                                              r"pedon 'p0' scheme 'random'"):
        check_against_folds(moved, folds, "moved.parquet")
    with pytest.raises(EvaluationError, match=r"scheme\(s\) \['blocks'\] are not in folds.parquet"):
        check_against_folds(preds, folds.drop(columns="blocks"), "x.parquet")
