"""`map.model: auto` as a map: the published model's folder (auto.json and copies of the model
files) maps the cube with the chosen candidate per target, and the map's STAC item names the
winner per target and its margin."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from misomap.config import config_from_dict
from misomap.cube.grid import Grid
from misomap.jobs.predict import run_predict
from misomap.mapping.predictors.api import PredictorError, model_digest
from misomap.models.baseline_config import RFConfig
from misomap.models.rf import dumps_model, fit_rf
from tests.support.map_cube import write_cube

GRID = Grid("EPSG:3338", 30.0, 300000.0, 1710000.0, 300000.0 + 64 * 30, 1710000.0 + 48 * 30)
CHOICE = {"scheme": "blocks", "criterion": "mean inner-fold macro recall", "targets": {
    "permafrost": {"model": "rf", "margin": 0.031, "scores": {"rf": 0.81, "miso": 0.779, "stack": 0.77}},
    "soil_order": {"model": "rf", "margin": 0.004, "scores": {"rf": 0.52, "miso": 0.51, "stack": 0.516}}}}


def _auto_folder(root: Path, choice: dict) -> Path:
    """An auto folder as `misomap choose-map` writes it, with small forests on the cube's bands."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)).astype(np.float32)
    labels = {"permafrost": np.where(X[:, 0] > 0, "1", "0"),
              "soil_order": np.where(X[:, 1] > 0.3, "Gelisols", np.where(X[:, 1] < -0.3, "Histosols", "Entisols"))}
    folder = root / "models" / "auto"
    (folder / "rf").mkdir(parents=True)
    for target, y in labels.items():
        model = fit_rf(X, y, ["b0", "b1"], target, RFConfig(n_estimators=5), seed=0)
        (folder / "rf" / f"{target}.skops").write_bytes(dumps_model(model))
    (folder / "miso.safetensors").write_bytes(b"not read: no target chose MISO")
    (folder / "auto.json").write_text(json.dumps(choice))
    return folder


def _config(root: Path, folder: Path):
    return config_from_dict({"name": "t", "map": {
        "cube": str(root / "cube.zarr"), "output": str(root / "maps" / "auto"), "model": "auto",
        "model_path": str(folder), "chunk_px": 32, "workers": 1, "cogs": False}})


def test_auto_map_and_its_stac_item_name_the_winner(tmp_path) -> None:
    write_cube(tmp_path / "cube.zarr", GRID)
    folder = _auto_folder(tmp_path, CHOICE)
    cfg = _config(tmp_path, folder)
    run_predict(cfg)
    ds = xr.open_zarr(tmp_path / "maps" / "auto" / "map.zarr")
    assert ds.attrs["misomap_model"] == "auto"
    assert np.isfinite(ds["permafrost_probability"].values).mean() > 0.5
    (item,) = glob.glob(str(tmp_path / "maps" / "auto" / "stac" / "*" / "*.json"))
    doc = json.loads(Path(item).read_text())
    auto = doc["properties"]["misomap:auto"]
    assert {t: c["model"] for t, c in auto.items()} == {"permafrost": "rf", "soil_order": "rf"}
    assert auto["permafrost"]["margin"] == pytest.approx(0.031) and auto["soil_order"]["scores"]["stack"] == 0.516
    assert {"model_auto", "model_permafrost", "model_soil_order", "model_miso"} <= set(doc["assets"])
    # every file of the folder is in the map's digest: a new choice is a new model
    before = model_digest(cfg.map, cfg.storage)
    (folder / "auto.json").write_text(json.dumps(CHOICE | {"scheme": "region"}))
    assert model_digest(cfg.map, cfg.storage) != before


def test_auto_folder_that_chooses_nothing_known_is_refused(tmp_path) -> None:
    write_cube(tmp_path / "cube.zarr", GRID)
    bad = {"targets": {"permafrost": {"model": "svm", "margin": 0, "scores": {}}}}
    cfg = _config(tmp_path, _auto_folder(tmp_path, bad))
    with pytest.raises(PredictorError, match="does not choose rf, miso or stack"):
        run_predict(cfg)
