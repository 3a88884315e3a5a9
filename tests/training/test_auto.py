"""The published map chosen by nested validation (`map.model: auto`): the choice follows the inner
scores only, a stack learns from the training part's inner predictions only, and the map predictor
combines the chosen candidates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from misomap.labels.pedons import TARGETS
from misomap.mapping.layers import MapProbabilities
from misomap.mapping.predictors.auto import AutoMapPredictor
from misomap.models.stack import fit_stack, stack_features
from misomap.training.auto import AutoError, auto_predictions, choose, inner_scores

SO = TARGETS["soil_order"]


def _rows(model: str, target: str, fold: int, inner: int | None, ids: list[str], y: np.ndarray,
          p: np.ndarray) -> pd.DataFrame:
    classes = TARGETS[target]
    frame = pd.DataFrame({"model": model, "pedon_id": ids, "target": target, "scheme": "s", "fold": fold,
                          "y_true": y, "y_pred": np.asarray(classes)[p.argmax(1)]})
    if inner is not None:
        frame["inner_fold"] = inner
    return pd.concat([frame, pd.DataFrame(p, columns=[f"p_{c}" for c in classes])], axis=1)


def _onehot(y: np.ndarray, classes: tuple[str, ...], noise: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities that put `1 - noise` on the true class, the rest spread at random."""
    p = rng.dirichlet(np.ones(len(classes)), size=len(y)) * noise
    p[np.arange(len(y)), [classes.index(v) for v in y]] += 1 - noise
    return p


def _world(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Folds 0, 1, 2 of scheme `s` (40 pedons each); the RF knows permafrost (informative
    probabilities), MISO soil order; each test fold's inner folds are the two other folds."""
    ids = np.array([f"p{i}" for i in range(120)])
    fold = np.repeat([0, 1, 2], 40)
    y_pf = rng.choice(["0", "1"], 120)
    y_so = rng.choice(list(SO), 120)
    folds = pd.DataFrame({"pedon_id": ids, "s": fold})
    inner, outer = [], []
    for target, y in (("permafrost", y_pf), ("soil_order", y_so)):
        cls = TARGETS[target]
        good, bad = _onehot(y, cls, 0.3, rng), rng.dirichlet(np.ones(len(cls)), size=120)
        rf, miso = (good, bad) if target == "permafrost" else (bad, good)
        for test in (0, 1, 2):
            t = fold == test
            outer += [_rows("rf", target, test, None, list(ids[t]), y[t], rf[t]),
                      _rows("miso", target, test, None, list(ids[t]), y[t], miso[t])]
            for g in {0, 1, 2} - {test}:
                m = fold == g
                inner += [_rows("rf", target, test, g, list(ids[m]), y[m], rf[m]),
                          _rows("miso", target, test, g, list(ids[m]), y[m], miso[m])]
    return pd.concat(inner, ignore_index=True), pd.concat(outer, ignore_index=True), folds


def test_auto_takes_the_candidate_with_the_better_inner_score() -> None:
    inner, _, _ = _world(np.random.default_rng(0))
    scores = inner_scores(inner, seed=0)
    per_fold, choice = choose(scores, "s", ("rf", "miso"))
    assert choice["permafrost"]["model"] == "rf" and choice["soil_order"]["model"] == "miso"
    assert set(per_fold.loc[per_fold["target"] == "permafrost", "chosen"]) == {"rf"}
    pf = choice["permafrost"]["scores"]
    assert choice["permafrost"]["margin"] == pytest.approx(pf["rf"] - pf["miso"]) and pf["rf"] > 0.9
    # reverse the inner evidence: the choice follows it
    swapped = inner.assign(model=inner["model"].map({"rf": "miso", "miso": "rf"}))
    _, flipped = choose(inner_scores(swapped, seed=0), "s", ("rf", "miso"))
    assert flipped["permafrost"]["model"] == "miso" and flipped["soil_order"]["model"] == "rf"
    with pytest.raises(AutoError, match="no inner scores"):
        choose(scores, "other", ("rf", "miso"))


def test_stack_is_fitted_on_the_training_part_only() -> None:
    inner, outer, folds = _world(np.random.default_rng(1))
    per_fold, _ = choose(inner_scores(inner, seed=0), "s", ("stack",))
    preds, fitted_on = auto_predictions(per_fold, inner, outer, folds, seed=0)
    assert set(preds["candidate"]) == {"stack"}
    for (target, scheme, fold), pedons in fitted_on.items():
        test = set(folds.loc[folds[scheme] == fold, "pedon_id"])
        assert pedons and not set(pedons) & test
        assert set(pedons) == set(folds.loc[folds[scheme] != fold, "pedon_id"])
    # the stack learned both models' strengths: it beats each alone on the held-out folds
    so = preds[preds["target"] == "soil_order"]
    assert (so["y_pred"] == so["y_true"]).mean() > 0.8
    leaky = inner.copy()
    leaky.loc[(leaky["fold"] == 0) & (leaky["inner_fold"] == 1), "pedon_id"] = [
        f"p{i}" for i in range(int(((leaky["fold"] == 0) & (leaky["inner_fold"] == 1)).sum()) // 4)] * 4
    with pytest.raises(AutoError, match="in the test fold itself"):
        auto_predictions(per_fold, leaky, outer, folds, seed=0)


class _Part:
    """A fixed-output predictor standing in for the RF or MISO."""

    def __init__(self, bands: tuple[str, ...], pf: float, so: np.ndarray, halo: int) -> None:
        self.bands, self.halo_px, self.align_px = bands, halo, max(halo, 1)
        self.pf, self.so = pf, so

    def predict(self, window, wx, wy, qx, qy) -> MapProbabilities:
        assert window.shape[0] == len(self.bands)
        h, w = len(qy), len(qx)
        return MapProbabilities(np.full((h, w), self.pf, np.float32),
                                np.broadcast_to(self.so[:, None, None], (len(SO), h, w)).astype(np.float32))


def test_auto_predictor_combines_the_chosen_candidates() -> None:
    rng = np.random.default_rng(2)
    y = rng.choice(list(SO), 200)
    feats = stack_features(_onehot(y, SO, 0.5, rng), rng.dirichlet(np.ones(len(SO)), size=200))
    stack = fit_stack(feats, y, SO, seed=0)
    so_rf, so_miso = np.eye(len(SO))[2] * 0.9 + 0.1 / len(SO), np.full(len(SO), 1 / len(SO))
    choice = {"scheme": "s", "targets": {
        "permafrost": {"model": "miso", "margin": 0.02, "scores": {"rf": 0.7, "miso": 0.72}},
        "soil_order": {"model": "stack", "margin": 0.01, "scores": {"rf": 0.5, "miso": 0.4, "stack": 0.51},
                       "stack": stack.as_dict()}}}
    parts = {"rf": _Part(("a", "b"), 0.2, so_rf, 0), "miso": _Part(("b", "c"), 0.8, so_miso, 5)}
    pred = AutoMapPredictor(choice, parts)
    assert pred.bands == ("a", "b", "c") and pred.halo_px == 5
    out = pred.predict(np.zeros((3, 4, 4), np.float32), np.arange(4.0), -np.arange(4.0), np.arange(2.0),
                       -np.arange(3.0))
    assert out.permafrost.shape == (3, 2) and np.allclose(out.permafrost, 0.8)
    expected = stack.proba(stack_features(so_rf[None], so_miso[None]))[0]
    assert out.soil_order.shape == (len(SO), 3, 2)
    assert np.allclose(out.soil_order[:, 1, 1], expected, atol=1e-6) and out.soil_order[:, 0, 0].argmax() == 2
    assert pred.stac_properties["misomap:auto"]["soil_order"]["model"] == "stack"
