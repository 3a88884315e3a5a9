"""How much of the truth is pixel-local and how much is contextual, measured two ways:
the latent field's own variance split (from the truth model) and a classifier test — the same
learner given the covariates at a pixel only, or also their neighbourhood, scored on held-out
spatial blocks (never on the pixels it was trained on)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from misomap.demo.climate import Climate
from misomap.demo.fields import rng_for, smooth
from misomap.demo.terrain import Terrain
from misomap.demo.truth import Truth

NEIGHBOURHOOD_SIGMAS_PX = (2.0, 6.0, 15.0)


@dataclass(frozen=True)
class ContextScore:
    """Held-out permafrost accuracy of a per-pixel and a neighbourhood-aware classifier."""

    pixel_accuracy: float
    context_accuracy: float
    n_train: int
    n_test: int

    @property
    def gain(self) -> float:
        return self.context_accuracy - self.pixel_accuracy


def _features(terrain: Terrain, climate: Climate, with_context: bool) -> np.ndarray:
    layers = [*terrain.covariates().values(), *climate.covariates().values()]
    feats = list(layers)
    if with_context:
        for layer in layers:
            for s in NEIGHBOURHOOD_SIGMAS_PX:
                m = smooth(layer, s)
                feats += [m, layer - m]
    return np.stack([f.ravel() for f in feats], axis=1)


def context_score(seed: int, terrain: Terrain, climate: Climate, truth: Truth,
                  block_px: int = 32, n_train: int = 12000) -> ContextScore:
    """Train on half of the spatial blocks (checkerboard), test on the other half."""
    h, w = terrain.elevation.shape
    rows, cols = np.mgrid[0:h, 0:w]
    test_block = ((rows // block_px + cols // block_px) % 2 == 1).ravel()
    land = (~terrain.water).ravel()
    y = truth.permafrost.ravel()
    rng = rng_for(seed, "context-score")
    train = np.flatnonzero(land & ~test_block)
    test = np.flatnonzero(land & test_block)
    train = rng.choice(train, size=min(n_train, train.size), replace=False)
    test = rng.choice(test, size=min(n_train, test.size), replace=False)
    scores = []
    for with_context in (False, True):
        x = _features(terrain, climate, with_context)
        clf = HistGradientBoostingClassifier(max_iter=150, random_state=0)
        clf.fit(x[train], y[train])
        scores.append(float((clf.predict(x[test]) == y[test]).mean()))
    return ContextScore(scores[0], scores[1], int(train.size), int(test.size))
