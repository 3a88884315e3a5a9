"""MISO training: learns a held-out signal, deterministic for a seed, resumable, best checkpoint
with its config, validation carved from the training folds only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from misomap.cube.grid import Grid
from misomap.labels.folds import FoldsError, carve_validation
from misomap.models.miso.config import (CropConfig, EncoderConfig, LiifConfig, LocationConfig, MisoConfig,
                                        TrainConfig)
from misomap.models.miso.crops import CropSampler, Points
from misomap.models.miso.errors import TrainingError
from misomap.models.miso.model import MisoModel
from misomap.models.miso.train import BEST, LAST, load_model_state, predict_at, train_miso, validation_score

torch.set_num_threads(1)
GRID = Grid("EPSG:3338", 30.0, 0.0, 0.0, 3600.0, 3600.0)  # 120 x 120 px


class MemoryStore(dict):
    def save(self, name: str, data: bytes) -> None:
        self[name] = data

    def load(self, name: str) -> bytes | None:
        return self.get(name)


class Interrupted(Exception):
    pass


class CrashingStore(MemoryStore):
    """Raises after the n-th save of the last checkpoint, like a killed job."""

    def __init__(self, crash_after: int) -> None:
        super().__init__()
        self.left = crash_after

    def save(self, name: str, data: bytes) -> None:
        super().save(name, data)
        if name == LAST:
            self.left -= 1
            if self.left == 0:
                raise Interrupted


def world(seed: int = 0, n: int = 240) -> tuple[np.ndarray, np.ndarray, Points]:
    """Permafrost where band 0 is high, soil order from band 1 terciles; a pedon's label is a
    function of the pixels around it, so it can be predicted on unseen pedons."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:120, 0:120] / 120
    b0 = np.sin(9 * xx) * np.cos(7 * yy)
    b1 = np.cos(5 * xx + 3 * yy)
    img = np.stack([b0, b1, rng.normal(size=b0.shape)]).astype(np.float32)
    cov = np.stack([yy, xx]).astype(np.float32)
    x, y = rng.uniform(0, 3600, n), rng.uniform(0, 3600, n)
    row, col = ((3600 - y) / 30).astype(int), (x / 30).astype(int)
    pf = (b0[row, col] > 0).astype(np.int64)
    so = np.digitize(b1[row, col], [-0.5, 0.5]).astype(np.int64) + 1  # Entisols..Histosols
    return img, cov, Points(x, y, pf, so)


def cfg(epochs: int = 2, steps: int = 3, **kw) -> MisoConfig:
    return MisoConfig(imagery=EncoderConfig(bands=["b0", "b1", "noise"], embed_dim=16),
                      covariates=EncoderConfig(bands=["yy", "xx"], embed_dim=16),
                      feature_dim=32, liif=LiifConfig(hidden=32), location=LocationConfig(num_scales=8, hidden=32),
                      crops=CropConfig(size_px=32, jitter_px=4, label_slots=3, pseudo_points=4, grid=3),
                      train=TrainConfig(epochs=epochs, batch_size=8, steps_per_epoch=steps, lr=2e-3,
                                        patience=10, warmup_epochs=0, device="cpu"), **kw)


def run(c: MisoConfig, store, seed: int = 0, n_train: int = 160, n_val: int = 40):
    img, cov, p = world()
    torch.manual_seed(seed)
    model = MisoModel(c, GRID.bounds)
    sampler = CropSampler(img, cov, GRID, p.subset(np.arange(n_train)), c.crops)
    res = train_miso(model, sampler, np.arange(n_train), p.subset(np.arange(n_train, n_train + n_val)),
                     c, store, seed)
    return model, sampler, res, p


def test_training_learns_a_signal_on_unseen_pedons() -> None:
    c = cfg(epochs=10, steps=6)
    c = c.model_copy(update={"train": c.train.model_copy(update={"lr": 5e-3})})
    model, sampler, res, p = run(c, MemoryStore())
    test = p.subset(np.arange(200, 240))  # neither trained on nor used for validation
    score = validation_score(predict_at(model, sampler, test, torch.device("cpu")), test)
    assert res.epochs_run == 10 and len(res.history) == 10
    assert score > 0.7, f"mean macro recall on unseen pedons {score:.3f} (chance 0.42)"


class Recording(CropSampler):
    """Keeps the training pedons whose labelled crops were drawn."""

    drawn: list[int]

    def labelled(self, idx: np.ndarray, rng: np.random.Generator):
        self.drawn = [*getattr(self, "drawn", []), *map(int, idx)]
        return super().labelled(idx, rng)


def test_class_balance_weighs_every_labelled_query_and_leaves_the_draws_alone() -> None:
    """Under β the loss weighs each label by its class share^−β (a crop's neighbour slots too, not
    only its centre pedon); which crops are drawn does not change."""
    from safetensors.torch import load as load_safetensors
    img, cov, p = world()
    soil = np.where(np.arange(len(p)) < 8, 6, 1)  # 8 of 160 training pedons are Mollisols
    p = Points(p.x, p.y, p.permafrost, soil)
    drawn, weights = [], []
    for balance in (0.0, 1.0):
        c = cfg(epochs=1, steps=8)
        c = c.model_copy(update={"train": c.train.model_copy(update={"class_balance": balance})})
        sampler = Recording(img, cov, GRID, p.subset(np.arange(160)), c.crops)
        store = MemoryStore()
        train_miso(MisoModel(c, GRID.bounds), sampler, np.arange(160), p.subset(np.arange(160, 200)), c, store, 0)
        drawn.append(sampler.drawn)
        weights.append(load_safetensors(store[BEST]))
    assert drawn[0] == drawn[1]
    assert torch.equal(weights[0]["loss.soil_weight"], torch.ones(7))
    w = weights[1]["loss.soil_weight"]
    assert float(w[6] / w[1]) == pytest.approx(152 / 8, rel=1e-5)  # share^−1: 19× for a class 19× rarer
    pf = p.permafrost[:160]
    assert float(weights[1]["loss.pos_weight"]) == pytest.approx((pf == 0).sum() / (pf == 1).sum(), rel=1e-5)


def test_pixel_head_and_dihedral_crops_train_and_change_the_weights() -> None:
    """Both training options run end to end; the pixel head's loss reaches the pixel path (from the
    same initial weights, its weights end elsewhere), turned crops change what is learnt."""
    base = cfg(epochs=1, steps=3)
    ref, _, _, _ = run(base, MemoryStore())
    with_head = base.model_copy(update={"loss": base.loss.model_copy(update={"pixel_head": 1.0})})
    head, _, res, _ = run(with_head, MemoryStore())
    turned, _, _, _ = run(base.model_copy(update={"crops": base.crops.model_copy(update={"dihedral": True})}),
                          MemoryStore())
    assert res.epochs_run == 1 and head.pixel_heads is not None
    w = "pixel.0.weight"
    assert not torch.equal(ref.state_dict()[w], head.state_dict()[w])
    assert not torch.equal(ref.state_dict()[w], turned.state_dict()[w])


def test_max_steps_caps_the_budget_across_epochs() -> None:
    c = cfg(epochs=5, steps=3)
    c = c.model_copy(update={"train": c.train.model_copy(update={"max_steps": 7})})
    _, _, res, _ = run(c, MemoryStore())
    assert res.epochs_run == 3 and len(res.history) == 3  # 3 + 3 + 1 steps
    assert res.history[-1].lr < 0.2 * c.train.lr  # the cosine schedule ends at the cap


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, *_ = run(cfg(), MemoryStore(), seed=1)
    b, *_ = run(cfg(), MemoryStore(), seed=1)
    c, *_ = run(cfg(), MemoryStore(), seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_resume_after_a_crash_gives_the_uninterrupted_result() -> None:
    straight, _, res_s, _ = run(cfg(epochs=3), MemoryStore())
    store = CrashingStore(crash_after=2)
    with pytest.raises(Interrupted):
        run(cfg(epochs=3), store)
    store.left = -1
    resumed, _, res_r, _ = run(cfg(epochs=3), store)
    assert res_r.epochs_run == 3 and [h.epoch for h in res_r.history] == [0, 1, 2]
    assert res_r.best_epoch == res_s.best_epoch
    s1, s2 = straight.state_dict(), resumed.state_dict()
    assert all(torch.allclose(s1[k], s2[k], atol=1e-6) for k in s1)


def test_best_checkpoint_holds_the_best_epoch_and_its_config() -> None:
    store = MemoryStore()
    model, sampler, res, p = run(cfg(epochs=3), store)
    assert BEST in store and LAST in store
    fresh = MisoModel(cfg(epochs=3), GRID.bounds)
    meta = load_model_state(fresh, store[BEST], BEST)
    assert MisoConfig.model_validate_json(meta["miso_config"]) == cfg(epochs=3)
    val = p.subset(np.arange(160, 200))
    a = predict_at(model, sampler, val, torch.device("cpu"))
    b = predict_at(fresh, sampler, val, torch.device("cpu"))
    assert np.allclose(a["permafrost"], b["permafrost"], atol=1e-6)
    assert validation_score(a, val) == pytest.approx(res.best_score)
    with pytest.raises(TrainingError, match="different MISO config"):
        load_model_state(MisoModel(cfg(epochs=3).model_copy(update={"feature_dim": 16}), GRID.bounds),
                         store[BEST], BEST)


def test_early_stopping_stops_after_patience() -> None:
    c = cfg(epochs=8, steps=1)
    c = c.model_copy(update={"train": c.train.model_copy(update={"patience": 1, "lr": 1e-9})})
    _, _, res, _ = run(c, MemoryStore())
    assert res.stopped_early and res.epochs_run < 8


def test_no_training_points_is_an_error() -> None:
    img, cov, p = world()
    c = cfg()
    with pytest.raises(TrainingError, match="no labelled training points"):
        train_miso(MisoModel(c, GRID.bounds), CropSampler(img, cov, GRID, p, c.crops), np.array([], int),
                   p, c, MemoryStore(), 0)


def test_validation_comes_from_training_folds_only() -> None:
    rng = np.random.default_rng(0)
    folds = np.repeat([0, 1, 2, 3, 4, -1], 60)
    xy = rng.uniform(0, 10_000, (len(folds), 2))
    for test in range(5):
        train, val = carve_validation(folds, test, 0.25, 0, xy)
        assert not (train & val).any()
        assert not val[folds == test].any() and not train[folds == test].any()
        assert not (train | val)[folds == -1].any()
        assert (train | val).sum() == 240 and abs(val.sum() / 240 - 0.25) <= 0.02
        for f in set(range(5)) - {test}:
            assert train[folds == f].any(), "a whole training fold went to validation"
    with pytest.raises(FoldsError, match="need 2"):
        carve_validation(np.array([0, 0, 1]), 0, 0.2, 0, xy[:3])


def test_validation_holds_its_fraction_of_pedons_even_with_a_tiny_fold() -> None:
    rng = np.random.default_rng(1)
    folds = np.array([0] * 50 + [1] * 2 + [2] * 50 + [3] * 40)  # fold 1: a tiny region
    xy = rng.uniform(0, 5_000, (len(folds), 2))
    for seed in range(10):
        train, val = carve_validation(folds, 3, 0.15, seed, xy)
        assert abs(val.sum() / 102 - 0.15) <= 0.02 and train[folds == 1].any()
        assert not (train | val)[folds == 3].any()


def test_run_only_fields_do_not_block_loading_a_checkpoint() -> None:
    store = MemoryStore()
    run(cfg(epochs=1, steps=1), store)
    other_run = cfg(epochs=1, steps=1).model_copy(update={"schemes": ["region"], "ablations": ["no_location"]})
    load_model_state(MisoModel(other_run, GRID.bounds), store[BEST], BEST)
