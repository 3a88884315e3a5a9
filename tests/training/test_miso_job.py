"""`misomap pretrain` and `misomap train-miso` end to end on a small contract-following world:
cube + RF training table/folds → pretrained encoders → MISO on exactly the saved folds (+ an
ablation) → shared report, MISO-vs-RF comparison, final model; resumes from its checkpoints."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from misomap.cli import app
from misomap.config import config_from_dict
from misomap.core.errors import ConfigError
from misomap.cube.grid import Grid
from misomap.cube.store import COMPLETE_KEY, template
from misomap.evaluation.scores import check_predictions
from misomap.jobs.train_miso import run_pretrain, run_train_miso
from misomap.models.miso.config import MisoConfig
from misomap.models.miso.model import MisoModel
from misomap.models.miso.train import load_model_state, stored_config
from misomap.models.miso.weights import safetensors_metadata
from misomap.training.miso_inputs import MisoJobError, load_arrays
from tests.support.label_layers import write_regions_and_zones

torch.set_num_threads(1)
RES, SIZE = 100.0, 96
GRID = Grid("EPSG:3338", RES, 300_000.0, 1_600_000.0, 300_000.0 + SIZE * RES, 1_600_000.0 + SIZE * RES)
IMAGERY = ["s2_summer_red", "s2_summer_nir", "s2_summer_swir16"]
COVARIATES = ["elevation", "jan_min_temp"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A cube (contract §2) with a nodata corner, pedons whose labels follow the pixels, regions/zones."""
    root = tmp_path_factory.mktemp("misoworld")
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    fields = np.stack([np.sin(7 * xx) * np.cos(5 * yy), np.cos(6 * xx + 2 * yy), rng.normal(size=xx.shape),
                       yy * 300, -10 - 20 * (1 - yy)]).astype(np.float32)
    fields[:, :10, 86:] = np.nan
    ds = template(GRID, IMAGERY + COVARIATES, 48, {"source": "miso test world"})
    ds["data"] = (("band", "y", "x"), fields, {"grid_mapping": "spatial_ref"})
    ds.attrs[COMPLETE_KEY] = {"records_sha256": "written-whole", "chunks": 0}  # written whole: finished
    ds.chunk({"band": -1, "y": 48, "x": 48}).to_zarr(root / "cube.zarr", zarr_format=3, consolidated=True)
    n = 260
    r, c = rng.integers(0, SIZE, n), rng.integers(0, SIZE, n)
    keep = ~((r < 10) & (c >= 86))
    r, c = r[keep], c[keep]
    pf = (fields[0, r, c] > 0).astype(int)
    so = np.where(fields[1, r, c] > 0.3, "Gelisols", np.where(fields[1, r, c] < -0.3, "Histosols", "Inceptisols"))
    gdf = gpd.GeoDataFrame({"pedon_id": [f"p{i:03d}" for i in range(len(r))],
                            "permafrost": pd.array(pf, dtype="Int8"), "soil_order": so.astype(object)},
                           crs="EPSG:3338", geometry=gpd.points_from_xy(GRID.x_coords()[c], GRID.y_coords()[r]))
    labels = root / "world" / "labels"
    labels.mkdir(parents=True)
    gdf.to_parquet(labels / "pedons.parquet")
    write_regions_and_zones(labels, GRID)
    return {"cube": str(root / "cube.zarr"), "world": str(root / "world")}


def miso_section(pretrained: str | None = None) -> dict:
    def enc(bands, which):
        out = {"bands": bands, "embed_dim": 16}
        if pretrained:
            out["weights"] = {"path": f"{pretrained}/{which}.safetensors"}
        return out

    return {"imagery": enc(IMAGERY, "imagery"), "covariates": enc(COVARIATES, "covariates"),
            "feature_dim": 32, "liif": {"hidden": 32}, "location": {"num_scales": 8, "hidden": 32},
            "crops": {"size_px": 32, "jitter_px": 4, "label_slots": 3, "pseudo_points": 4, "grid": 3},
            "train": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 8, "lr": 3e-3, "device": "cpu"},
            "pretrain": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4},
            "schemes": ["blocks"], "ablations": ["no_location"], "max_folds": 2}


def run_config(world: dict, workdir, miso: dict | None):
    return config_from_dict({"workdir": str(workdir), "seed": 3,
                             "labels": {"world": world["world"], "cube": world["cube"]},
                             "folds": {"k": 3, "dbscan_eps_m": [300.0], "block_size_m": 3000.0},
                             "rf": {"n_estimators": 10}, **({"miso": miso} if miso else {})})


def test_pretrain_then_train_miso_end_to_end(world, tmp_path) -> None:
    from misomap.jobs.train_rf import train_rf

    workdir = tmp_path / "run"
    pre = run_config(world, workdir, miso_section())
    train_rf(pre)  # the training table, the shared folds and the RF predictions
    written = run_pretrain(pre)
    assert set(written) == {"imagery", "covariates"}
    cfg = run_config(world, workdir, miso_section(str(workdir / "miso" / "pretrained")))
    out = run_train_miso(cfg)

    folds = pd.read_parquet(workdir / "training" / "folds.parquet")
    preds = check_predictions(pd.read_parquet(out.predictions["miso"]), "miso")
    assert set(preds["scheme"]) == {"blocks"}
    sizes = folds.loc[folds["blocks"] >= 0, "blocks"].value_counts()
    assert set(preds["fold"]) == set(sizes.index[:2]), "max_folds=2 cross-validates the two largest folds"
    joined = preds.merge(folds[["pedon_id", "blocks"]], on="pedon_id")
    assert (joined["fold"] == joined["blocks"]).all(), "a pedon predicted by a model that trained on it"
    assert not preds.duplicated(["pedon_id", "target"]).any()
    assert preds["entropy"].between(0, np.log(7) + 1e-6).all()
    assert (workdir / "models" / "miso_no_location" / "report" / "report.md").exists()
    comparison = (workdir / "models" / "miso" / "comparison.md").read_text()
    assert "nan" not in comparison  # schemes a model was not run on show as a dash
    for row in ("| rf |", "| miso |", "| miso_no_location |", "recall_1", "recall_macro", "parameters"):
        assert row in comparison
    assert (workdir / "models" / "miso" / "comparison.png").read_bytes()[:4] == b"\x89PNG"

    stored = json.loads((workdir / "models" / "miso" / "config.json").read_text())
    resolved = MisoConfig.model_validate(stored)
    assert resolved.imagery.mean is not None and resolved.location.bounds == GRID.bounds
    model = MisoModel(resolved, GRID.bounds)
    load_model_state(model, open(out.final_model, "rb").read(), out.final_model)
    stats = json.loads((workdir / "models" / "miso" / "training.json").read_text())
    assert stats["selected_steps"] == int(np.median([f["best_step"] for f in stats["folds"]]))
    for f in stats["folds"]:  # validation: 15% ± 2 points of the training part, never the test fold
        assert abs(f["val_pedons"] / (f["train_pedons"] + f["val_pedons"]) - 0.15) <= 0.02
    last = safetensors_metadata((workdir / "models" / "miso" / "final" / "last.safetensors").read_bytes())
    progress = json.loads(last["progress"])
    assert progress["epoch"] * 2 >= stats["selected_steps"] > (progress["epoch"] - 1) * 2, \
        "the final model trains for the step count cross-validation selected (2 steps per epoch)"
    assert all(np.isnan(h["val_loss"]) for h in progress["history"]), "nothing held out for the final model"

    # a second run finds every fold's checkpoints and resumes instead of retraining
    (tmp_path / "run.yaml").write_text(cfg.model_dump_json())
    first = pd.read_parquet(out.predictions["miso"])
    before = (workdir / "models" / "miso" / "checkpoints" / "blocks" / "fold0" / "last.safetensors").stat().st_mtime_ns
    res = CliRunner().invoke(app, ["train-miso", "--config", str(tmp_path / "run.yaml")])
    assert res.exit_code == 0, res.output
    after = (workdir / "models" / "miso" / "checkpoints" / "blocks" / "fold0" / "last.safetensors").stat().st_mtime_ns
    assert before == after
    pd.testing.assert_frame_equal(pd.read_parquet(out.predictions["miso"]), first)


def test_missing_section_band_and_scheme_are_named(world, tmp_path) -> None:
    with pytest.raises(ConfigError, match="no `miso` section"):
        run_pretrain(run_config(world, tmp_path, None))
    bad = miso_section()
    bad["covariates"]["bands"] = ["elevation", "permafrost_depth"]
    cfg = run_config(world, tmp_path, bad)
    with pytest.raises(MisoJobError, match=r"lacks the covariates band\(s\) \['permafrost_depth'\]"):
        load_arrays(cfg.cube_location(), cfg.storage, cfg.miso)


def test_design_chosen_by_nested_validation_end_to_end(world, tmp_path) -> None:
    """Under miso.design every candidate is cross-validated and validated again inside each
    training part (never on the test fold); each fold takes the best inner score's predictions,
    and the map model is the chosen variant, trained for that variant's selected step count."""
    from misomap.jobs.train_rf import train_rf

    workdir = tmp_path / "run"
    miso = miso_section() | {"ablations": [], "design": {"candidates": ["miso", "no_location"],
                                                         "map_scheme": "blocks", "inner_folds": 1}}
    cfg = run_config(world, workdir, miso)
    train_rf(cfg)
    # refused before any training: the map scheme is not cross-validated; two regions leave a held-out
    # region's training part one region, nothing to hold out inside it
    for change, match in (({"map_scheme": "region"}, "map_scheme 'region' is not among the schemes"),
                          ({"map_scheme": "region", "schemes": ["region"]},
                           "scheme region: fold 0: its training part has 1 fold")):
        schemes = change.pop("schemes", miso["schemes"])
        bad = run_config(world, workdir, miso | {"schemes": schemes, "design": miso["design"] | change})
        with pytest.raises(MisoJobError, match=match):
            run_train_miso(bad)
        assert not (workdir / "models" / "miso").exists()
    out = run_train_miso(cfg)
    models, folds = workdir / "models", pd.read_parquet(workdir / "training" / "folds.parquet")
    col = folds["blocks"].to_numpy()
    inner = pd.concat([pd.read_parquet(models / m / "inner.parquet") for m in ("miso", "miso_no_location")])
    assert len(inner) == 4, "two test folds x one inner fold x two candidates"
    for row in inner.itertuples():
        assert row.inner_fold != row.fold and row.pedons == (col == row.inner_fold).sum()
        assert 0 <= row.score <= 1
    record = json.loads((models / "miso_selected" / "design.json").read_text())
    means = inner.groupby(["fold", "model"])["score"].mean().unstack()
    for f in record["folds"]:
        assert f["chosen"] == means.loc[f["fold"]].idxmax()
    selected = pd.read_parquet(out.predictions["miso_selected"])
    for f in record["folds"]:
        mine = selected[selected["fold"] == f["fold"]].drop(columns="candidate").reset_index(drop=True)
        theirs = pd.read_parquet(out.predictions[f["chosen"]])
        pd.testing.assert_frame_equal(mine, theirs[theirs["fold"] == f["fold"]].reset_index(drop=True))
    map_model = record["map_model"]
    assert map_model == means.mean().idxmax()
    assert out.final_model == str(models / map_model / "final" / "model.safetensors")
    meta = safetensors_metadata(open(out.final_model, "rb").read())
    assert stored_config(meta)["location"]["enabled"] == (map_model == "miso")
    assert "| miso_selected |" in (models / "miso" / "comparison.md").read_text()
    assert (models / "miso_selected" / "report" / "report.md").exists()
