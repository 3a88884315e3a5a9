"""`misomap demo` end to end on the tiny world: every stage runs and lands where it says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from misomap.jobs.demo import run_demo


def test_demo_pipeline_on_the_tiny_world(tmp_path):
    result = run_demo(tmp_path / "demo", seed=1, size="tiny")
    assert list(result.seconds) == ["demo world", "cube", "random forest", "MISO pretraining",
                                    "MISO training", "map choice", "rf map", "miso map", "auto map"]
    assert "s3://" not in (tmp_path / "demo" / "run.yaml").read_text()
    assert "weights" in (tmp_path / "demo" / "run.yaml").read_text(), "run.yaml names the pretrained encoders"
    out = tmp_path / "demo"
    assert (out / "run.yaml").exists() and (out / "world" / "world.json").exists()
    for model in ("rf", "miso", "auto"):
        ds = xr.open_zarr(out / "maps" / model / "map.zarr")
        pf = ds["permafrost_probability"].values
        assert np.isfinite(pf).mean() > 0.8 and np.nanstd(pf) > 0.02, model
        assert (out / "maps" / model / "cogs" / "soil_order_class.tif").exists()
    preds = pd.read_parquet(out / "models" / "miso" / "predictions.parquet")
    rf_preds = pd.read_parquet(out / "models" / "rf" / "predictions.parquet")
    scheme = preds["scheme"].iloc[0]
    # MISO is scored on test folds that the RF's predictions on the same scheme also hold
    assert set(preds["pedon_id"]) <= set(rf_preds.loc[rf_preds["scheme"] == scheme, "pedon_id"])
    assert "MISO vs Random Forest" in (out / "models" / "miso" / "comparison.md").read_text()
    # the last screen: both models' held-out figures on the same folds, and where to look
    assert [f.model for f in result.figures] == ["rf", "miso", "auto"]
    for f in result.figures:
        assert f.folds >= 1 and all(0 <= v <= 1 for v in f.values.values()), f
    assert set(result.map_scores) == {"rf", "miso", "auto"}
    assert all(0 < v <= 1 for scores in result.map_scores.values() for v in scores.values())
    screen = result.summary()
    assert result.scheme in screen and "PF recall" in screen and "map SO acc" in screen
    assert str(out / "maps" / "miso") in screen
    # the published map: a winner per target, chosen inside the training parts, scored on the same folds
    assert set(result.choice) == {"permafrost", "soil_order"}
    for target, c in result.choice.items():
        assert c["model"] in ("rf", "miso", "stack") and f"{target:<11} {c['model']}" in screen
    auto = pd.read_parquet(out / "models" / "auto" / "predictions.parquet")
    assert set(auto["fold"]) == set(preds["fold"]) and set(auto["scheme"]) == {scheme}
