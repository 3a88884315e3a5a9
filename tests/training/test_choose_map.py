"""`misomap choose-map` end to end on the small MISO test world: inner predictions of both models
inside each training part, the choice per target, the procedure's scored predictions, and a map
whose STAC item names the winner per target and its margin."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from misomap.config import config_from_dict
from misomap.evaluation.scores import check_against_folds, check_predictions
from misomap.jobs.choose_map import run_choose_map
from misomap.jobs.predict import run_predict, with_map
from misomap.jobs.train_miso import run_train_miso
from misomap.jobs.train_rf import train_rf
from tests.support.map_cube import IMAGERY_PERIOD
from tests.training.test_miso_job import miso_section, world  # noqa: F401 - the module's world fixture

torch.set_num_threads(1)


def _config(world: dict, workdir) -> object:  # noqa: F811
    miso = miso_section() | {"ablations": []}
    return config_from_dict({"workdir": str(workdir), "seed": 3,
                             "labels": {"world": world["world"], "cube": world["cube"]},
                             "folds": {"k": 3, "dbscan_eps_m": [300.0], "block_size_m": 3000.0},
                             "rf": {"n_estimators": 10}, "miso": miso,
                             "map": {"cube": world["cube"], "output": str(workdir / "maps" / "auto"),
                                     "model": "auto", "chunk_px": 48, "workers": 1,
                                     "auto": {"inner_folds": 1, "scheme": "blocks"}}})


@pytest.mark.slow
def test_choose_map_then_map_auto(world, tmp_path) -> None:  # noqa: F811
    workdir = tmp_path / "run"
    cfg = _config(world, workdir)
    train_rf(cfg)
    run_train_miso(cfg)
    out = run_choose_map(cfg)

    folds = pd.read_parquet(workdir / "training" / "folds.parquet")
    inner = pd.read_parquet(workdir / "models" / "auto" / "inner_predictions.parquet")
    joined = inner.merge(folds[["pedon_id", "blocks"]], on="pedon_id")
    assert (joined["blocks"] == joined["inner_fold"]).all() and (joined["inner_fold"] != joined["fold"]).all()
    assert set(inner["model"]) == {"rf", "miso"}
    preds = check_predictions(pd.read_parquet(out.predictions), "auto")
    check_against_folds(preds, folds, "auto")
    miso = pd.read_parquet(workdir / "models" / "miso" / "predictions.parquet")
    assert set(preds["fold"]) == set(miso["fold"]), "auto is scored on the test folds MISO was run on"
    record = json.loads((workdir / "models" / "auto" / "auto.json").read_text())
    scores = pd.read_csv(workdir / "models" / "auto" / "inner_scores.csv")
    for target, c in record["targets"].items():
        mean = scores[scores["target"] == target].groupby("candidate")["score"].mean()
        assert c["model"] == mean.idxmax() and np.isclose(c["margin"], mean.max() - mean.nlargest(2).iloc[1])
        assert (c["model"] == "stack") == ("stack" in c)
    for f in record["folds"]:
        mine = preds[(preds["target"] == f["target"]) & (preds["fold"] == f["fold"])]
        assert set(mine["candidate"]) == {f["chosen"]}

    group = zarr.open_group(world["cube"], mode="r+")  # the dates a built cube records, for the STAC item
    group.attrs["misomap"] = {"imagery_datetime": IMAGERY_PERIOD}
    zarr.consolidate_metadata(world["cube"])
    summary = run_predict(with_map(cfg, "auto", out.model_path))
    item = next((tmp_path / "run" / "maps" / "auto" / "stac").glob("*/*.json"))
    props = json.loads(item.read_text())["properties"]
    assert props["misomap:model"] == "auto"
    for target, c in record["targets"].items():
        assert props["misomap:auto"][target]["model"] == c["model"]
        assert props["misomap:auto"][target]["margin"] == pytest.approx(c["margin"])
    assert summary.chunks_total > 0
