"""Supervised + contrastive training of MISO: AdamW with warmup + cosine, early stopping and the
best checkpoint chosen on a validation split carved from the training folds, deterministic for a
seed, resumable from the last checkpoint. Checkpoints are safetensors bytes handed to a store the
job provides (models never touch storage), with the config that made them in the metadata.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor
from tqdm.auto import tqdm

from misomap.models.miso.config import MisoConfig, TrainConfig
from misomap.models.miso.contrastive import info_nce
from misomap.models.miso.crops import CropBatch, CropSampler, Points
from misomap.models.miso.errors import TrainingError
from misomap.models.miso.heads import TaskLoss
from misomap.models.miso.model import MisoModel
from misomap.models.miso.weights import safetensors_metadata

log = logging.getLogger(__name__)

LAST, BEST = "last.safetensors", "best.safetensors"


class CheckpointStore(Protocol):
    """Where checkpoints go (the job implements it on a local folder or s3://)."""

    def save(self, name: str, data: bytes) -> None: ...

    def load(self, name: str) -> bytes | None: ...


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float
    val_score: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """How training went; the model holds the best epoch's weights afterwards."""

    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    history: list[EpochLog]
    steps_per_epoch: int

    @property
    def best_step(self) -> int:
        """Optimiser steps up to the end of the best epoch: the budget cross-validation selects."""
        return (self.best_epoch + 1) * self.steps_per_epoch


def select_device(cfg: TrainConfig) -> torch.device:
    """CUDA when asked or available under 'auto', else the CPU."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but no CUDA device is available")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def _autocast(device: torch.device, cfg: TrainConfig):
    if device.type == "cuda" and cfg.bf16:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def _tensors(batch: CropBatch, device: torch.device) -> dict[str, Tensor | None]:
    def t(a: np.ndarray | None, dtype: torch.dtype) -> Tensor | None:
        return None if a is None else torch.as_tensor(a, dtype=dtype, device=device)

    return {"imagery": t(batch.imagery, torch.float32), "covariates": t(batch.covariates, torch.float32),
            "pix": t(batch.pix, torch.float32), "xy": t(batch.xy, torch.float64),
            "permafrost": t(batch.permafrost, torch.int64), "soil": t(batch.soil, torch.int64),
            "valid": t(batch.valid, torch.bool)}


def batch_loss(model: MisoModel, task_loss: TaskLoss, batch: CropBatch, device: torch.device,
               cfg: MisoConfig) -> Tensor:
    """Supervised losses on labelled valid points (plus the auxiliary pixel heads', weighted) +
    weighted InfoNCE on all valid points."""
    b = _tensors(batch, device)
    with _autocast(device, cfg.train):
        out = model(b["imagery"], b["covariates"], b["pix"], b["xy"])
    loss = sum(task_loss(out.logits, b["permafrost"], b["soil"]).values())
    if out.pixel_logits is not None:
        loss = loss + cfg.loss.pixel_head * sum(task_loss(out.pixel_logits, b["permafrost"], b["soil"]).values())
    if cfg.contrastive.enabled:
        v = b["valid"]
        for a, c in [(out.imagery, out.covariates), (out.visual, out.location)]:
            if a is not None and c is not None:
                loss = loss + cfg.contrastive.weight * info_nce(a[v].float(), c[v].float(),
                                                                cfg.contrastive.temperature)
    return loss


@torch.no_grad()
def predict_at(model: MisoModel, sampler: CropSampler, points: Points, device: torch.device
               ) -> dict[str, np.ndarray]:
    """Probabilities, entropies and validity at points — through the map's own dense path (the
    global tile grid, each point at its pixel centre), so what is scored is what is mapped."""
    from misomap.models.miso.dense import DenseMiso, predict_pedons

    return predict_pedons(DenseMiso(model, device), sampler.imagery, sampler.covariates, sampler.grid,
                          points.x, points.y)


def macro_recall(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in y (NaN when y is empty)."""
    classes = np.unique(y)
    if not len(classes):
        return float("nan")
    return float(np.mean([(pred[y == c] == c).mean() for c in classes]))


def validation_score(pred: dict[str, np.ndarray], points: Points) -> float:
    """Mean over tasks of macro recall (balanced accuracy for permafrost) on valid labelled points."""
    scores = []
    ok = pred["valid"]
    if "permafrost" in pred:
        m = ok & (points.permafrost >= 0)
        scores.append(macro_recall(points.permafrost[m], (pred["permafrost"][m] >= 0.5).astype(int)))
    if "soil_order" in pred:
        m = ok & (points.soil >= 0)
        scores.append(macro_recall(points.soil[m], pred["soil_order"][m].argmax(-1)))
    scores = [s for s in scores if not math.isnan(s)]
    return float(np.mean(scores)) if scores else float("nan")


def _validation_loss(pred: dict[str, np.ndarray], points: Points) -> float:
    losses = []
    ok = pred["valid"]
    if "permafrost" in pred:
        m = ok & (points.permafrost >= 0)
        p = np.clip(pred["permafrost"][m], 1e-6, 1 - 1e-6)
        y = points.permafrost[m]
        if len(y):
            losses.append(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))))
    if "soil_order" in pred:
        m = ok & (points.soil >= 0)
        if m.any():
            q = np.clip(pred["soil_order"][m][np.arange(m.sum()), points.soil[m]], 1e-9, 1)
            losses.append(float(-np.mean(np.log(q))))
    return float(np.sum(losses)) if losses else float("nan")


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warmup then cosine decay to 0."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _pack(model: MisoModel, task_loss: TaskLoss, opt: torch.optim.Optimizer | None,
          meta: dict[str, str]) -> bytes:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"loss.{k}": v.detach().cpu().contiguous() for k, v in task_loss.state_dict().items()})
    meta = {**meta, "miso_config": model.cfg.model_dump_json()}
    if opt is not None:
        sd = opt.state_dict()
        for pid, st in sd["state"].items():
            for k, v in st.items():
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous()
        meta["param_groups"] = json.dumps(sd["param_groups"])
    return save_safetensors(tensors, metadata=meta)


def model_checkpoint_bytes(model: MisoModel, task_loss: TaskLoss | None = None) -> bytes:
    """A model-only checkpoint (safetensors, config in the metadata)."""
    return _pack(model, task_loss or TaskLoss(model.cfg.loss), None, {"format": "misomap-miso"})


RUN_ONLY_FIELDS = ("schemes", "ablations", "include_full", "final_model", "pretrain", "max_folds", "design")
"""Config fields that choose what a run does, not what a model or its training is."""


def _model_fields(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in RUN_ONLY_FIELDS}


def stored_config(meta: dict[str, str]) -> dict | None:
    """The MISO config a checkpoint's metadata holds (None if it holds none). Checkpoints written
    before `location.role` existed fed location to the heads: they read as `input` models."""
    if "miso_config" not in meta:
        return None
    cfg = json.loads(meta["miso_config"])
    if isinstance(cfg.get("location"), dict):
        cfg["location"].setdefault("role", "input")
    return cfg


def load_model_state(model: MisoModel, data: bytes, source: str) -> dict[str, str]:
    """Load a checkpoint's model weights; refuse one made by another config. Returns its metadata."""
    meta = safetensors_metadata(data)
    stored = stored_config(meta)
    if stored is not None:  # through the model, so fields added since (with defaults) compare equal
        stored = json.loads(MisoConfig.model_validate(stored).model_dump_json())
    if stored is not None and _model_fields(stored) != _model_fields(json.loads(model.cfg.model_dump_json())):
        raise TrainingError(f"{source} was made by a different MISO config; start a new run folder "
                            "or restore that config")
    tensors = load_safetensors(data)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise TrainingError(f"{source} does not fit this model: {err}") from None
    return meta


def _restore(data: bytes, model: MisoModel, task_loss: TaskLoss, opt: torch.optim.Optimizer) -> dict:
    meta = load_model_state(model, data, LAST)
    tensors = load_safetensors(data)
    task_loss.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("loss.")})
    state: dict[int, dict[str, Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta["progress"])


def train_miso(model: MisoModel, sampler: CropSampler, train_idx: np.ndarray, val_points: Points,
               cfg: MisoConfig, store: CheckpointStore, seed: int, max_steps: int | None = None) -> TrainResult:
    """Train on the sampler's points `train_idx`; validate on `val_points` (carved from the training
    folds by the caller, never the test fold). Resumes from `last` in the store if present.
    `max_steps` overrides `train.max_steps` (e.g. the final model's budget, selected by
    cross-validation). Without validation points it trains the whole budget and keeps the last
    weights (the final model, trained on every labelled pedon)."""
    tc = cfg.train
    if len(train_idx) == 0:
        raise TrainingError("no labelled training points: check the folds and the label columns")
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = select_device(tc)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    model.to(device)
    task_loss = TaskLoss(cfg.loss).to(device)
    task_loss.fit_weights(torch.as_tensor(sampler.points.permafrost[train_idx]).to(device),
                          torch.as_tensor(sampler.points.soil[train_idx]).to(device), tc.class_balance)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    n_unl = round(tc.batch_size * cfg.crops.unlabelled_fraction) if cfg.contrastive.enabled else 0
    n_lab = max(tc.batch_size - n_unl, 1)
    steps = tc.steps_per_epoch or math.ceil(len(train_idx) / n_lab)
    total = min(steps * tc.epochs, max_steps or tc.max_steps or steps * tc.epochs)
    epochs, warmup = math.ceil(total / steps), min(steps * tc.warmup_epochs, total // 2)
    progress = {"epoch": 0, "best_score": -math.inf, "best_epoch": -1, "bad": 0, "history": [], "seconds": 0.0}
    last = store.load(LAST)
    if last is not None:
        progress = _restore(last, model, task_loss, opt)
        log.info("resumed from epoch %d (best %.4f at epoch %d)", progress["epoch"],
                 progress["best_score"], progress["best_epoch"])
    stopped = progress["bad"] >= tc.patience
    while progress["epoch"] < epochs and not stopped:
        epoch, t0 = progress["epoch"], time.perf_counter()
        rng = np.random.default_rng([seed, epoch])
        torch.manual_seed(seed * 100_003 + epoch)
        model.train()
        n_steps = min(steps, total - epoch * steps)
        order = rng.permutation(np.resize(rng.permutation(train_idx), n_steps * n_lab))
        losses = []
        for s in tqdm(range(n_steps), desc=f"epoch {epoch}", leave=False, disable=None):
            lr = lr_at(epoch * steps + s, total, warmup, tc.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = batch_loss(model, task_loss, sampler.labelled(order[s * n_lab:(s + 1) * n_lab], rng),
                                 device, cfg)
            if n_unl:
                loss = loss + batch_loss(model, task_loss, sampler.unlabelled(n_unl, rng), device, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
        if len(val_points):
            pred = predict_at(model, sampler, val_points, device)
            score, vloss = validation_score(pred, val_points), _validation_loss(pred, val_points)
            if math.isnan(score):
                score = -vloss
        else:  # no validation: every epoch is the newest, hence the best
            score, vloss = float(epoch), float("nan")
        rec = EpochLog(epoch, float(np.mean(losses)), vloss, score, lr, time.perf_counter() - t0)
        progress["history"].append(asdict(rec))
        progress["seconds"] += rec.seconds
        progress["epoch"] = epoch + 1
        if score > progress["best_score"]:
            progress.update(best_score=score, best_epoch=epoch, bad=0)
            store.save(BEST, model_checkpoint_bytes(model, task_loss))
        else:
            progress["bad"] += 1
        stopped = progress["bad"] >= tc.patience
        store.save(LAST, _pack(model, task_loss, opt, {"format": "misomap-miso-last",
                                                       "progress": json.dumps(progress)}))
        if len(val_points):
            log.info("epoch %d: loss %.4f val loss %.4f val score %.4f (%.1f s)", epoch, rec.train_loss,
                     vloss, score, rec.seconds)
        else:
            log.info("epoch %d: loss %.4f (no validation set: every pedon trains) (%.1f s)", epoch,
                     rec.train_loss, rec.seconds)
    best = store.load(BEST)
    if best is not None:
        load_model_state(model, best, BEST)
    return TrainResult(progress["best_epoch"], progress["best_score"], progress["epoch"], stopped,
                       progress["seconds"], [EpochLog(**h) for h in progress["history"]], steps)
