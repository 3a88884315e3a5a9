"""The published map's model (`map.model: auto`): per target, the candidate nested spatial
validation chose (`misomap choose-map`, misomap.training.auto) — the RF, MISO, or their logistic
stack on both models' probabilities. Its folder holds auto.json (the choice, margins, stack
coefficients) and copies of the RF's forests and MISO's map checkpoint, so the map's digest covers
every file that made it."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from misomap.mapping.config import MapConfig
from misomap.mapping.layers import MapProbabilities
from misomap.mapping.predictors.api import MapPredictor, PredictorError
from misomap.mapping.predictors.rf import TARGET_FILES, load_rf_predictor
from misomap.models.stack import Stack, stack_features

log = logging.getLogger(__name__)

CHOICE = "auto.json"
MISO_FILE = "miso.safetensors"


def model_files(model_dir: str) -> list[str]:
    """auto.json, the RF's two forests and MISO's checkpoint, all inside the auto folder."""
    root = model_dir.rstrip("/")
    return [f"{root}/{CHOICE}", *(f"{root}/rf/{name}" for name in TARGET_FILES.values()), f"{root}/{MISO_FILE}"]


class AutoMapPredictor:
    """Runs the models the chosen candidates need (MISO only when a target uses it) on the union of
    their bands and combines them per target."""

    def __init__(self, choice: dict[str, Any], parts: dict[str, MapPredictor]) -> None:
        self.models = {t: c["model"] for t, c in choice["targets"].items()}
        self.stacks = {t: Stack.from_dict(c["stack"]) for t, c in choice["targets"].items() if c["model"] == "stack"}
        self.parts = parts
        self.bands = tuple(dict.fromkeys(b for p in parts.values() for b in p.bands))
        self.halo_px = max(p.halo_px for p in parts.values())
        self.align_px = max(p.align_px for p in parts.values())
        self.stac_properties = {"misomap:auto": {
            t: {"model": c["model"], "margin": c["margin"], "scores": c["scores"],
                "criterion": choice.get("criterion", ""), "scheme": choice.get("scheme", "")}
            for t, c in choice["targets"].items()}}

    @property
    def dense(self) -> Any:
        """MISO's dense decoder when a target uses MISO (its tile size describes the map's input)."""
        return getattr(self.parts.get("miso"), "dense", None)

    def predict(self, window: np.ndarray, wx: np.ndarray, wy: np.ndarray,
                qx: np.ndarray, qy: np.ndarray) -> MapProbabilities:
        out = {name: p.predict(window[[self.bands.index(b) for b in p.bands]], wx, wy, qx, qy)
               for name, p in self.parts.items()}
        pf = self._target("permafrost", {k: v.permafrost[None] for k, v in out.items()})
        so = self._target("soil_order", {k: v.soil_order for k, v in out.items()})
        return MapProbabilities(pf[0], so)

    def _target(self, target: str, probs: dict[str, np.ndarray]) -> np.ndarray:
        """(classes, h, w) probabilities of `target` (permafrost: (1, h, w), P(present))."""
        model = self.models[target]
        if model != "stack":
            return probs[model]
        rf, miso = probs["rf"], probs["miso"]
        shape = rf.shape[1:]
        flat = [np.moveaxis(p, 0, -1).reshape(-1, p.shape[0]) for p in (rf, miso)]
        if target == "permafrost":
            flat = [np.concatenate([1 - p, p], axis=1) for p in flat]
        q = self.stacks[target].proba(stack_features(*flat)).astype(np.float32)
        if target == "permafrost":
            q = q[:, 1:]
        return np.moveaxis(q, -1, 0).reshape(-1, *shape)


def load_auto_predictor(blobs: dict[str, bytes], cfg: MapConfig) -> AutoMapPredictor:
    """Read the choice, then load only the models it needs."""
    by_name = {path.rsplit("/", 1)[-1]: (path, blob) for path, blob in blobs.items()}
    source, raw = by_name[CHOICE]
    choice = json.loads(raw)
    models = {c["model"] for c in choice.get("targets", {}).values()}
    if set(choice.get("targets", {})) != {"permafrost", "soil_order"} or not models <= {"rf", "miso", "stack"}:
        raise PredictorError(f"{source} does not choose rf, miso or stack for both permafrost and soil_order; "
                             "rerun `misomap choose-map`")
    need = models - {"stack"} | ({"rf", "miso"} if "stack" in models else set())
    parts: dict[str, MapPredictor] = {}
    if "rf" in need:
        parts["rf"] = load_rf_predictor({p: b for p, b in blobs.items() if p.rsplit("/", 2)[-2] == "rf"}, cfg)
    if "miso" in need:
        from misomap.mapping.predictors.miso import load_miso_predictor  # torch only when MISO is used

        path, blob = by_name[MISO_FILE]
        parts["miso"] = load_miso_predictor({path: blob}, cfg)
    log.info("auto predictor: %s", {t: c["model"] for t, c in choice["targets"].items()})
    return AutoMapPredictor(choice, parts)
