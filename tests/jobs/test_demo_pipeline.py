"""`misomap demo` end to end on the tiny world: every stage runs and lands where it says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from misomap.jobs.demo import run_demo


def test_demo_pipeline_on_the_tiny_world(tmp_path):
    result = run_demo(tmp_path / "demo", seed=1, size="tiny")
    assert list(result.seconds) == ["demo world", "cube", "random forest", "MISO pretraining",
                                    "MISO training", "rf map", "miso map"]
    assert "s3://" not in (tmp_path / "demo" / "run.yaml").read_text()
    assert "weights" in (tmp_path / "demo" / "run.yaml").read_text(), "run.yaml names the pretrained encoders"
    out = tmp_path / "demo"
    assert (out / "run.yaml").exists() and (out / "world" / "world.json").exists()
    for model in ("rf", "miso"):
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
    assert [f.model for f in result.figures] == ["rf", "miso"]
    for f in result.figures:
        assert f.folds >= 1 and all(0 <= v <= 1 for v in f.values.values()), f
    assert set(result.map_scores) == {"rf", "miso"}
    for scores in result.map_scores.values():
        assert all(0 < scores[k] <= 1 for k in ("map PF acc", "map SO acc", "map SO F1")), scores
        # pixels without optical data are filled from the other inputs, and scored apart
        assert 0 <= scores["nodata %"] < 1 and 0 <= scores["filled %"] <= 100, scores
    screen = result.summary()
    assert result.scheme in screen and "PF recall" in screen and "map SO acc" in screen
    assert "PF acc filled" in screen and "nodata %" in screen
    assert str(out / "maps" / "miso") in screen
    # each map's permafrost area from a sample of the truth, with its interval, beside the true area
    assert set(result.areas) == {"rf", "miso"} and "Permafrost area" in screen
    for area in result.areas.values():
        assert area.estimate.low <= area.estimate.value <= area.estimate.high and area.true_km2 > 0
