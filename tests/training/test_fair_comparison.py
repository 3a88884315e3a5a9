"""The MISO-vs-RF comparison's rules: one class-weighting rule, maps scored against the demo
world's truth, the demo MISO's pretraining learning, and `misomap experiment`'s bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch

from misomap.jobs.experiment import ExperimentError, check_request
from misomap.models.weighting import (
    DecisionOffsets,
    balance_weights,
    fit_permafrost_offset,
    fit_soil_offsets,
    median_offsets,
)

torch.set_num_threads(1)


def test_threshold_rule_moves_the_decision_to_the_validation_optimum() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.2).astype(int)
    p = np.clip(0.25 * y + rng.normal(0.2, 0.08, len(y)), 0, 1)  # a model that under-calls permafrost
    b = fit_permafrost_offset(y, p)
    t = 1 / (1 + np.exp(b))
    assert 0.25 < t < 0.45, "the F1-optimal threshold lies between the two score clusters"
    adjusted = DecisionOffsets(b).apply_permafrost(p)
    assert np.array_equal(adjusted >= 0.5, p >= t - 1e-9)
    assert fit_permafrost_offset(np.ones(5), np.full(5, 0.3)) == 0.0, "one class: no offset"


def test_prior_correction_helps_a_rare_class_and_none_wins_ties() -> None:
    rng = np.random.default_rng(1)
    y = rng.choice(3, 3000, p=[0.8, 0.15, 0.05])
    logits = np.eye(3)[y] * 1.0 + rng.normal(0, 0.6, (len(y), 3)) + np.log([0.8, 0.15, 0.05])
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    offsets = fit_soil_offsets(y, prob, np.array([0.8, 0.15, 0.05]))
    assert offsets and offsets[2] > offsets[0], "the rare class is lifted"
    adjusted = DecisionOffsets(soil_order=offsets).apply_soil_order(prob)
    assert np.allclose(adjusted.sum(1), 1)
    assert ((adjusted.argmax(1) == 2) & (y == 2)).sum() > ((prob.argmax(1) == 2) & (y == 2)).sum()
    assert fit_soil_offsets(np.zeros(10, int), np.tile([1.0, 0, 0], (10, 1)), np.array([0.9, 0.05, 0.05])) == ()
    med = median_offsets([DecisionOffsets(1.0, (0.0, 1.0)), DecisionOffsets(3.0, ()), DecisionOffsets(2.0, (0.0, 3.0))])
    assert med.permafrost == 2.0 and med.soil_order == (0.0, 1.0)


def _truth(world, name: str) -> np.ndarray:
    with rasterio.open(world / "truth" / f"{name}.tif") as src:
        return src.read(1)


def test_map_vs_truth_scores_a_map_in_the_real_map_layout(demo_world, tmp_path) -> None:
    from misomap.cube.grid import Grid
    from misomap.evaluation.map_truth import MapTruthError, map_vs_truth
    from misomap.mapping.store import _template

    manifest = json.loads((demo_world / "world.json").read_text())
    g = manifest["grid"]
    grid = Grid(g["crs"], g["resolution"], *g["bounds"])
    pf, so, region = _truth(demo_world, "permafrost"), _truth(demo_world, "soil_order"), _truth(demo_world, "region")
    (_, ds, enc), *_ = _template(grid, 64, {}, zarr_format=3)  # the map itself, not its overviews
    pf_map = np.where(pf == 255, np.nan, pf).astype(np.float32)
    wrong = region == region[pf != 255].min()  # one region's permafrost called the other way round
    pf_map[wrong] = 1 - pf_map[wrong]
    pf_map[:8, :8] = np.nan  # an unmapped corner
    ds["permafrost_class"] = (("y", "x"), pf_map, ds["permafrost_class"].attrs)
    ds["soil_order_class"] = (("y", "x"), np.where(so == 255, np.nan, so).astype(np.float32),
                              ds["soil_order_class"].attrs)
    url = str(tmp_path / "map.zarr")
    ds.to_zarr(url, encoding=enc, zarr_format=3, consolidated=True)

    table = map_vs_truth(url, demo_world)
    land = (pf != 255)
    mapped = land.copy()
    mapped[:8, :8] = False
    expected = 1 - (wrong & mapped).sum() / mapped.sum()
    overall = table[(table["target"] == "permafrost") & (table["by"] == "all")].iloc[0]
    assert overall["accuracy"] == pytest.approx(expected)
    assert overall["coverage"] == pytest.approx(mapped.sum() / land.sum())
    by_region = table[(table["target"] == "permafrost") & (table["by"] == "region")].set_index("group")
    name = manifest["truth_classes"]["region"][int(region[pf != 255].min())]
    assert by_region.loc[name, "accuracy"] == 0 and (by_region.drop(index=name)["accuracy"] == 1).all()
    soil = table[table["target"] == "soil_order"]
    assert (soil["accuracy"] == 1).all() and (soil["f1_macro"].dropna() == 1).all()
    assert set(table["by"]) == {"all", "region", "zone", "distance", "inputs"}
    dist = table[(table["target"] == "permafrost") & (table["by"] == "distance")]
    assert len(dist) == 3 and dist["n"].sum() == mapped.sum()
    with pytest.raises(MapTruthError, match="no map at"):
        map_vs_truth(str(tmp_path / "absent.zarr"), demo_world)


def test_demo_pretraining_loss_falls() -> None:
    """The demo MISO's SimMIM pretraining, at the demo's settings, on smooth multi-band tiles."""
    from misomap.demo.run_sections import S1_BANDS, S2_BANDS, demo_miso_section
    from misomap.models.miso.config import MisoConfig, PretrainConfig
    from misomap.models.miso.pretrain import pretrain_encoder

    section = demo_miso_section({"bands": [f"s2_summer_{b}" for b in S2_BANDS] + list(S1_BANDS)},
                                {"bands": ["elevation"]}, None)
    cfg = MisoConfig.model_validate(section)
    assert cfg.contrastive.enabled and cfg.crops.unlabelled_fraction > 0 and set(S1_BANDS) <= set(cfg.imagery.bands)
    size, n_bands = cfg.crops.size_px, len(cfg.imagery.bands)
    yy, xx = np.mgrid[0:size, 0:size] / size

    def tiles(n, rng):
        f = rng.uniform(1, 4, (n, n_bands, 1, 1))
        ph = rng.uniform(0, 6, (n, n_bands, 1, 1))
        return np.sin(f * 6 * xx + ph) * np.cos(f * 4 * yy).astype(np.float32)

    pcfg = PretrainConfig.model_validate(section["pretrain"])
    _, history = pretrain_encoder(cfg.imagery, size, lambda n, rng: tiles(n, rng).astype(np.float32),
                                  pcfg, 0, torch.device("cpu"))
    assert len(history) == pcfg.epochs >= 3
    assert history[-1] < 0.8 * history[0], history


def test_experiment_refuses_repeated_seeds_and_unknown_schemes() -> None:
    with pytest.raises(ExperimentError, match=r"seed\(s\) \[1\] given more than once"):
        check_request([0, 1, 1], None)
    with pytest.raises(ExperimentError, match=r"unknown fold scheme\(s\) \['kmeans'\]"):
        check_request([0], ["region", "kmeans"])
    with pytest.raises(ExperimentError, match="no seed"):
        check_request([], None)
    with pytest.raises(ExperimentError, match="two or more distinct candidates"):
        check_request([0], None, ["miso", "miso"])
    with pytest.raises(ExperimentError, match="two or more distinct candidates"):
        check_request([0], None, ["miso", "no_locations"])
    with pytest.raises(ExperimentError, match="add --scheme region"):
        check_request([0], ["dbscan"], ["miso", "no_location"])
    with pytest.raises(ExperimentError, match="--class-balance 1.5: give a power from 0"):
        check_request([0], None, None, 1.5)


def test_class_balance_weighs_pedons_by_class_share() -> None:
    labels = np.array([0] * 90 + [1] * 10 + [-1] * 5)
    w = balance_weights(labels, 0.0)
    assert (w[:100] == 1).all() and (w[100:] == 0).all()
    w = balance_weights(labels, 1.0)
    assert w[:90].sum() == pytest.approx(w[90:100].sum()), "power 1: every class weighs alike"
    w = balance_weights(labels, 0.5)
    assert w[90] / w[0] == pytest.approx(3.0), "square root: 9x rarer, 3x the weight"
    assert w[:100].mean() == pytest.approx(1.0) and (w[100:] == 0).all()


def test_class_balance_is_one_rule_for_the_rf_and_miso() -> None:
    from pydantic import ValidationError

    from misomap.evaluation.config import EvaluationConfig
    from misomap.models.baseline_config import RFConfig
    from misomap.models.miso.config import EncoderConfig, LossConfig, MisoConfig, TrainConfig
    from misomap.models.miso.heads import TaskLoss
    from misomap.models.rf import fit_rf
    from misomap.models.weighting import TrainingWeights
    from misomap.training.miso_cv import weighted_config

    with pytest.raises(ValidationError, match="would both even out the classes"):
        EvaluationConfig(class_weighting="balanced", class_balance=0.5)
    rules = EvaluationConfig(class_balance=0.5)
    cfg = weighted_config(MisoConfig(imagery=EncoderConfig(bands=["b"]), loss=LossConfig(tasks=["soil_order"]),
                                     train=TrainConfig()), rules)
    assert cfg.train.class_balance == 0.5 and cfg.loss.class_weights == "none"
    # MISO: each label's loss weight is the RF's sample weight of a pedon of that class, per task.
    soil = np.array([1] * 80 + [2] * 15 + [5] * 5 + [-1] * 10)
    pf = np.array([0, 0, 0, 1] * 25 + [-1] * 10)
    loss = TaskLoss(cfg.loss)
    loss.fit_weights(torch.as_tensor(pf), torch.as_tensor(soil), cfg.train.class_balance)
    lab = soil >= 0
    assert np.allclose(loss.soil_weight.numpy()[soil[lab]], balance_weights(soil, 0.5)[lab], rtol=1e-5)
    rf_pf = balance_weights(pf, 0.5)
    assert float(loss.pos_weight) == pytest.approx(rf_pf[3] / rf_pf[0]), "positives weigh as in the RF"
    unweighted = TaskLoss(cfg.loss)
    unweighted.fit_weights(torch.as_tensor(pf), torch.as_tensor(soil), 0.0)
    assert float(unweighted.pos_weight) == 1 and (unweighted.soil_weight == 1).all()
    # The RF: the same weights, as sample weights of its forest.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2)).astype(np.float32)
    y = np.where(X[:, 0] + rng.normal(scale=1.0, size=400) > 1.6, "Mollisols", "Inceptisols")
    rf = RFConfig(n_estimators=30, min_samples_leaf=30)
    share = [float(fit_rf(X, y, ["a", "b"], "soil_order", rf, 0, TrainingWeights(balance=b)).proba(X)[:, 1].mean())
             for b in (0.0, 1.0)]
    assert share[0] < 0.15 and share[1] > 3 * share[0], share


def test_experiment_bad_input_is_one_line_exit_2(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-c", "from misomap.cli import run_cli; run_cli()", "experiment",
                           "--seeds", "0", "1", "0", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "seed(s) [0] given more than once" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists(), "checked before any work"
    proc = subprocess.run([sys.executable, "-c", "from misomap.cli import run_cli; run_cli()", "experiment",
                           "--seeds", "0", "--design", "miso", "--design", "no_loc", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--design ['miso', 'no_loc']: give two or more distinct candidates" in proc.stderr
    assert not (tmp_path / "x").exists()
    proc = subprocess.run([sys.executable, "-c", "from misomap.cli import run_cli; run_cli()", "experiment",
                           "--seeds", "0", "--class-balance", "2", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--class-balance 2.0: give a power from 0" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_experiment_over_two_seeds_writes_one_table(tmp_path) -> None:
    from misomap.jobs.experiment import run_experiment

    md = run_experiment(tmp_path / "exp", [0, 1], "tiny", ["region"], max_folds=1, ablations=False,
                        class_balance=0.5)
    text = md.read_text()
    for model in ("rf", "miso"):  # both models trained under the one rule, and their reports say so
        report = (tmp_path / "exp" / "seed0" / "models" / model / "report" / "report.md").read_text()
        assert "class balance 0.5" in report, model
    assert "## Cross-validation pooled over each scheme's pedons: soil_order" in text
    folds = pd.read_csv(tmp_path / "exp" / "experiment_folds.csv")
    assert set(folds["seed"]) == {0, 1} and {"rf", "miso"} <= set(folds["model"])
    for needle in ("| rf | region |", "| miso | region |", "Maps against the truth", "Training time per fold"):
        assert needle in text
    truth = pd.read_csv(tmp_path / "exp" / "experiment_truth.csv")
    assert set(truth["model"]) == {"rf", "miso"} and truth["accuracy"].between(0, 1).all()
    dist = pd.read_csv(tmp_path / "exp" / "experiment_distance.csv")
    assert {"rf", "miso"} <= set(dist["model"]) and set(dist["bin"]) <= {"near", "middle", "far"}
    assert "by distance to the nearest training pedon" in text and "| far |" in text
    rebuilt = run_experiment(tmp_path / "exp", [0, 1], tables_only=True).read_text()
    assert rebuilt.split("\n")[4:] == text.split("\n")[4:], "tables from the seed folders alone"


def test_offsets_baked_into_the_heads_match_the_scored_adjustment() -> None:
    """The final map model carries the decision offsets in its head biases, so the map applies the
    same rule the cross-validation scores were adjusted with."""
    from misomap.models.miso.config import EncoderConfig, MisoConfig
    from misomap.models.miso.model import MisoModel
    from misomap.models.miso.offsets import apply_offsets, bake_offsets

    torch.manual_seed(0)
    cfg = MisoConfig(imagery=EncoderConfig(bands=["a", "b"], embed_dim=16), feature_dim=16)
    model = MisoModel(cfg, (0.0, 0.0, 3200.0, 3200.0))
    img, pix = torch.randn(3, 2, 64, 64), torch.rand(3, 1, 2) * 64
    xy = pix.double() * 50
    before = {k: v[:, 0].numpy() for k, v in model.predict_points(img, None, pix, xy).items()}
    offsets = DecisionOffsets(0.7, tuple(np.linspace(-1, 1, 7)))
    bake_offsets(model, offsets)
    after = {k: v[:, 0].numpy() for k, v in model.predict_points(img, None, pix, xy).items()}
    expected = apply_offsets(before, offsets)
    for key in ("permafrost", "soil_order", "soil_order_entropy"):
        assert np.allclose(after[key], expected[key], atol=1e-5), key


def test_offsets_bake_into_a_model_on_another_device() -> None:
    """The final model trains on the GPU where there is one: the offsets must go to the heads' own
    device (a GPU run of the final model failed here: CPU offsets added to CUDA biases). The meta
    device stands in for the GPU; it would accept CPU operands silently, so a torch function mode
    refuses any operation that mixes the two, as CUDA does."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_leaves

    from misomap.models.miso.config import EncoderConfig, MisoConfig
    from misomap.models.miso.model import MisoModel
    from misomap.models.miso.offsets import bake_offsets

    class OneDevice(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            devices = {t.device.type for t in tree_leaves((args, kwargs or {}))
                       if isinstance(t, torch.Tensor) and t.dim() > 0}
            assert len(devices) <= 1, f"{func.__name__} mixes devices {sorted(devices)}"
            return func(*args, **(kwargs or {}))

    cfg = MisoConfig(imagery=EncoderConfig(bands=["a", "b"], embed_dim=16), feature_dim=16)
    model = MisoModel(cfg, (0.0, 0.0, 3200.0, 3200.0)).to("meta")
    with OneDevice():
        bake_offsets(model, DecisionOffsets(0.7, tuple(np.linspace(-1, 1, 7))))
    assert model.heads.heads["soil_order"].bias.device.type == "meta"


def test_experiment_tables_report_the_gap_per_distance_bin_and_per_fold() -> None:
    """The distance table's MISO − RF cell is the mean over seeds of the per-seed differences; the
    per-fold table pairs both models on the same fold."""
    from misomap.evaluation.experiment import summarise

    rng = np.random.default_rng(0)
    folds, dist = [], []
    for seed in (0, 1, 2):
        for model, shift in (("rf", 0.0), ("miso", 0.1)):
            for fold in (0, 1):
                folds.append({"seed": seed, "model": model, "scheme": "region", "fold": fold,
                              "target": "permafrost", "recall_1": 0.5 + shift + 0.01 * fold, "f1_1": 0.5,
                              "accuracy": 0.8, "balanced_accuracy": 0.7, "brier": 0.1, "train_seconds": 10.0})
                folds.append({"seed": seed, "model": model, "scheme": "region", "fold": fold,
                              "target": "soil_order", "recall_macro": 0.4 + shift, "f1_macro": 0.4,
                              "accuracy": 0.7, "brier": 0.5, "train_seconds": 10.0})
            for code, b in enumerate(("near", "middle", "far")):
                gain = shift * code + 0.01 * seed
                dist.append({"seed": seed, "model": model, "scheme": "region", "bin": b, "n": 100,
                             "target": "permafrost", "recall_1": 0.6 + gain, "f1_1": rng.random()})
    text = summarise(pd.DataFrame(folds), pd.DataFrame(), pd.DataFrame(dist), pd.DataFrame(), [0, 1, 2],
                     "abc1234", None)
    assert "| permafrost | region | far | 100 | recall_1 | 0.610 ± 0.010 | 0.810 ± 0.010 | 0.200 ± 0.000 |" in text
    assert "| permafrost | region | near | 100 | recall_1 | 0.610 ± 0.010 | 0.610 ± 0.010 | 0.000 ± 0.000 |" in text
    assert "| region | 2 | 1 | 0.510 | 0.610 | 0.400 | 0.500 |" in text
    assert "commit `abc1234`" in text


def test_experiment_scores_the_claim_on_the_nested_selection_when_a_design_was_chosen() -> None:
    """With `miso_selected` present the per-fold and distance tables pit it against the RF, and the
    design table counts each candidate's choices with its mean inner score and the map's design."""
    from misomap.evaluation.experiment import summarise

    folds, dist = [], []
    for seed in (0, 1):
        for model, shift in (("rf", 0.0), ("miso", 0.1), ("miso_selected", 0.3)):
            folds.append({"seed": seed, "model": model, "scheme": "region", "fold": 0, "target": "permafrost",
                          "recall_1": 0.5 + shift, "f1_1": 0.5, "accuracy": 0.8, "balanced_accuracy": 0.7,
                          "brier": 0.1, "train_seconds": 10.0})
            folds.append({"seed": seed, "model": model, "scheme": "region", "fold": 0, "target": "soil_order",
                          "recall_macro": 0.4, "f1_macro": 0.4, "accuracy": 0.7, "brier": 0.5, "train_seconds": 10.0})
            dist.append({"seed": seed, "model": model, "scheme": "region", "bin": "far", "n": 50,
                         "target": "permafrost", "recall_1": 0.5 + shift, "f1_1": 0.5})
    design = pd.DataFrame({"seed": [0, 0, 1], "scheme": "region", "fold": [0, 1, 0], "miso": [0.6, 0.7, 0.5],
                           "miso_no_location": [0.7, 0.6, 0.7],
                           "chosen": ["miso_no_location", "miso", "miso_no_location"],
                           "map_model": ["miso_no_location", "miso_no_location", "miso"]})
    text = summarise(pd.DataFrame(folds), pd.DataFrame(), pd.DataFrame(dist), pd.DataFrame(), [0, 1],
                     "abc1234", None, None, design)
    assert "| region | 0 | 0 | 0.500 | 0.800 | 0.400 | 0.400 |" in text
    assert "PF recall miso_selected" in text
    assert "| permafrost | region | far | 50 | recall_1 | 0.500 ± 0.000 | 0.800 ± 0.000 | 0.300 ± 0.000 |" in text
    assert "| region | 3 | 0.600 ± 0.100 · 1 | 0.667 ± 0.058 · 2 |" in text
    assert "seed 0: miso_no_location, seed 1: miso." in text


def test_pooled_scores_weigh_each_fold_by_its_pedons() -> None:
    """A region fold of 2 permafrost pedons and one of 8: the fold mean of recall gives the small
    fold half the say (0.75), pooling gives each pedon one (0.9); both models on the same pedons."""
    from misomap.evaluation.config import EvaluationConfig
    from misomap.evaluation.experiment import fold_scores, pooled_scores, summarise

    ids = [f"P{i}" for i in range(12)]
    table = pd.DataFrame({"pedon_id": ids, "x": np.arange(12) * 500.0, "y": 0.0, "region": "a", "zone": "z"})
    fold = [0, 0, 0, 0] + [1] * 8
    truth = ["1", "1", "0", "0"] + ["1"] * 7 + ["0"]
    miso = ["1", "0", "0", "0"] + ["1"] * 7 + ["0"]
    rf = ["1", "1", "0", "0"] + ["1"] * 6 + ["0", "0"]

    def preds(pred: list[str]) -> pd.DataFrame:
        p1 = np.where(np.array(pred) == "1", 0.8, 0.2)
        return pd.DataFrame({"pedon_id": ids, "target": "permafrost", "scheme": "region", "fold": fold,
                             "y_true": truth, "y_pred": pred, "p_0": 1 - p1, "p_1": p1, "train_seconds": 1.0})

    all_preds = {"rf": (preds(rf), "rf"), "miso": (preds(miso), "miso")}
    per_fold = fold_scores(EvaluationConfig(), table, all_preds).assign(seed=0)
    pooled = pooled_scores(EvaluationConfig(), table, all_preds).assign(seed=0)
    assert per_fold[per_fold["model"] == "miso"]["recall_1"].mean() == pytest.approx(0.75)
    got = pooled.set_index("model")["recall_1"]
    assert got["miso"] == pytest.approx(8 / 9) and got["rf"] == pytest.approx(8 / 9)
    assert len(pooled) == 2, "one pooled row per model and scheme"
    text = summarise(per_fold, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), [0], "abc", None, pooled=pooled)
    assert "## Cross-validation pooled over each scheme's pedons: permafrost" in text
    assert "| miso | region | 1 | 0.889 ± 0.000 |" in text


def test_max_folds_takes_the_largest_test_folds() -> None:
    from misomap.training.miso_cv import scored_folds

    col = np.array([0] * 5 + [1] * 2 + [2] * 9 + [3] * 5 + [-1] * 20)
    assert scored_folds(col, 2) == [0, 2] and scored_folds(col, 3) == [0, 2, 3]
    assert scored_folds(col, None) == [0, 1, 2, 3]
