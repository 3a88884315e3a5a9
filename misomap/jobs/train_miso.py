"""`misomap pretrain` and `misomap train-miso`: the cube and the training table/folds of a run →
self-supervised encoder pretraining → MISO cross-validated on exactly the saved folds (plus the
configured ablations) → the shared evaluation report, a MISO-vs-RF comparison, and a final model
trained on every labelled pedon for the map job.

Layout under `<workdir>/models/<model>/`: predictions.parquet, report/, checkpoints/<scheme>/
fold<k>/{best,last}.safetensors, final/{best,last}.safetensors, config.json; the comparison goes to
`<workdir>/models/miso/comparison.md` (+ .png, .csv).
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from misomap.config_base import StorageConfig
from misomap.cube.grid import Grid
from misomap.errors import ConfigError, MisomapError
from misomap.jobs.evaluate import evaluate, model_dir, read_predictions
from misomap.jobs.labels import LabelsError, read_bytes, write_bytes, write_parquet
from misomap.cube.crops import LazyBands, band_mean_std, open_bands
from misomap.cube.store import open_cube
from misomap.jobs.training_table import cube_grid, cube_location, read_training
from misomap.models.folds import carve_validation, scheme_columns
from misomap.models.miso.config import SOIL_ORDERS, EncoderConfig, MisoConfig
from misomap.models.miso.crops import CropSampler, Points
from misomap.models.miso.model import MisoModel, parameter_count
from misomap.models.miso.pretrain import pretrain_encoder
from misomap.models.miso.train import (TrainResult, model_checkpoint_bytes, predict_at, select_device,
                                       train_miso)
from misomap.models.miso.weights import Checkpoint, load_encoder_weights, read_checkpoint
from misomap.models.weighting import (DecisionOffsets, class_priors, fit_permafrost_offset, fit_soil_offsets,
                                      median_offsets)

if TYPE_CHECKING:
    from misomap.config import RunConfig

log = logging.getLogger(__name__)
MODEL = "miso"
ENCODERS = ("imagery", "covariates")
COMPARED = {"permafrost": ("recall_1", "f1_1", "accuracy", "balanced_accuracy", "brier"),
            "soil_order": ("recall_macro", "f1_macro", "accuracy", "brier")}
"""Recall beside F1, accuracy and calibration, so a recall gain bought with accuracy shows."""
ABLATIONS = ("no_contrastive", "no_location", "no_pretraining")


class MisoJobError(MisomapError):
    """The MISO job cannot run: a missing band, label column, fold scheme or output."""


@dataclass(frozen=True)
class FsCheckpointStore:
    """Checkpoints as files under `root` (local or s3://)."""

    root: str
    storage: StorageConfig

    def save(self, name: str, data: bytes) -> None:
        write_bytes(f"{self.root}/{name}", data, self.storage)

    def load(self, name: str) -> bytes | None:
        try:
            return read_bytes(f"{self.root}/{name}", self.storage)
        except LabelsError:
            return None


@dataclass(frozen=True)
class CubeArrays:
    """The encoders' bands of the cube (band, y, x), NaN = nodata: lazy chunk-cached readers, so
    training memory does not grow with the cube (in-memory arrays work too)."""

    imagery: LazyBands | np.ndarray
    covariates: LazyBands | np.ndarray | None
    grid: Grid


@dataclass(frozen=True)
class MisoOutputs:
    """What one train-miso run wrote."""

    predictions: dict[str, str]
    reports: dict[str, str]
    comparison: str
    final_model: str | None


def miso_section(config: RunConfig) -> MisoConfig:
    """The run's `miso` section, or a ConfigError saying it is needed."""
    if config.miso is None:
        raise ConfigError("the run configuration has no `miso` section: add one with at least "
                          "miso.imagery.bands")
    return config.miso


def load_arrays(config: RunConfig, cfg: MisoConfig) -> CubeArrays:
    """Open the imagery and covariate bands of the cube lazily (crops read chunk by chunk, cached)."""
    location = cube_location(config)
    ds = open_cube(location, config.storage)
    if "data" not in ds or ds["data"].dims != ("band", "y", "x"):
        raise MisoJobError(f"{location}: no `data` variable (band, y, x); variables {list(ds.data_vars)}")
    data = ds["data"]
    names = [str(b) for b in data["band"].values]

    def read(enc: EncoderConfig | None, which: str) -> LazyBands | None:
        if enc is None:
            return None
        missing = [b for b in enc.bands if b not in names]
        if missing:
            raise MisoJobError(f"cube {location} lacks the {which} band(s) {missing}; it has {names}")
        log.info("opening %d %s bands of %s lazily", len(enc.bands), which, location)
        return open_bands(location, config.storage, list(enc.bands))

    return CubeArrays(read(cfg.imagery, "imagery"), read(cfg.covariates, "covariates"), cube_grid(data))


def read_weights(cfg: MisoConfig, storage: StorageConfig) -> dict[str, Checkpoint]:
    """Pretrained checkpoints named in the config, read from local paths or s3://."""
    out = {}
    for which in ENCODERS:
        enc = getattr(cfg, which)
        if enc is not None and enc.weights is not None:
            out[which] = read_checkpoint(read_bytes(enc.weights.path, storage), enc.weights.path)
    return out


def resolve_config(cfg: MisoConfig, arrays: CubeArrays, ckpts: dict[str, Checkpoint]) -> MisoConfig:
    """Fill what the config leaves open: per-band mean/std (the checkpoint's, else the cube's) and
    the location bounds (the cube's), so checkpoints carry a complete, self-describing config."""
    update: dict = {}
    for which in ENCODERS:
        enc: EncoderConfig | None = getattr(cfg, which)
        if enc is None or (enc.mean is not None and enc.std is not None):
            continue
        meta = ckpts[which].metadata if which in ckpts else {}
        if "mean" in meta and json.loads(meta.get("bands", "null")) == enc.bands:
            mean, std = json.loads(meta["mean"]), json.loads(meta["std"])
        else:
            arr = arrays.imagery if which == "imagery" else arrays.covariates
            mean, std = (v.astype(float) for v in band_mean_std(arr))
            bad = [b for b, m in zip(enc.bands, mean) if not np.isfinite(m)]
            if bad:
                raise MisoJobError(f"{which} band(s) {bad} are nodata everywhere in the cube")
            mean, std = mean.tolist(), np.where(std > 0, std, 1.0).tolist()
        update[which] = enc.model_copy(update={"mean": [float(v) for v in mean],
                                               "std": [float(v) for v in std]})
    if cfg.location.bounds is None:
        update["location"] = cfg.location.model_copy(update={"bounds": arrays.grid.bounds})
    return MisoConfig.model_validate({**cfg.model_dump(), **{k: v.model_dump() for k, v in update.items()}})


def build_model(cfg: MisoConfig, grid: Grid, ckpts: dict[str, Checkpoint]) -> MisoModel:
    """A MISO model with the configured pretrained encoder weights loaded."""
    model = MisoModel(cfg, grid.bounds)
    for which, ckpt in ckpts.items():
        enc_cfg: EncoderConfig = getattr(cfg, which)
        encoder = model.img_encoder if which == "imagery" else model.cov_encoder
        load_encoder_weights(encoder, ckpt, enc_cfg.weights, enc_cfg.bands)
    return model


def label_points(table: pd.DataFrame) -> Points:
    """Pedons as Points: permafrost 0/1 and soil-order index, -1 where unlabelled."""
    pf = pd.to_numeric(table["permafrost"], errors="coerce").fillna(-1).astype(np.int64).to_numpy()
    codes = {name: i for i, name in enumerate(SOIL_ORDERS)}
    so = table["soil_order"].map(codes).fillna(-1).astype(np.int64).to_numpy()
    return Points(table["x"].to_numpy(np.float64), table["y"].to_numpy(np.float64), pf, so)


def prediction_rows(pred: dict[str, np.ndarray], ids: np.ndarray, points: Points, scheme: str,
                    fold: int, tasks: list[str]) -> pd.DataFrame:
    """Test-fold predictions in the layout of misomap.jobs.evaluate (nodata pedons left out)."""
    frames = []
    ok = pred["valid"]
    if "permafrost" in tasks:
        m = ok & (points.permafrost >= 0)
        p = pred["permafrost"][m].astype(float)
        frames.append(pd.DataFrame({"pedon_id": ids[m], "target": "permafrost", "scheme": scheme,
                                    "fold": fold, "y_true": points.permafrost[m].astype(str),
                                    "y_pred": np.where(p >= 0.5, "1", "0"), "p_0": 1 - p, "p_1": p,
                                    "entropy": pred["permafrost_entropy"][m]}))
    if "soil_order" in tasks:
        m = ok & (points.soil >= 0)
        q = pred["soil_order"][m].astype(float)
        frame = pd.DataFrame({"pedon_id": ids[m], "target": "soil_order", "scheme": scheme, "fold": fold,
                              "y_true": np.asarray(SOIL_ORDERS)[points.soil[m]],
                              "y_pred": np.asarray(SOIL_ORDERS)[q.argmax(-1)],
                              "entropy": pred["soil_order_entropy"][m]})
        frames.append(pd.concat([frame, pd.DataFrame(q, columns=[f"p_{c}" for c in SOIL_ORDERS])], axis=1))
    if (~ok).any():
        log.warning("%s fold %d: %d test pedon(s) on nodata pixels left out: %s", scheme, fold,
                    int((~ok).sum()), list(ids[~ok][:5]))
    return pd.concat(frames, ignore_index=True)


def _fit(cfg: MisoConfig, arrays: CubeArrays, ckpts: dict[str, Checkpoint], points: Points,
         train: np.ndarray, val: np.ndarray, store: FsCheckpointStore, seed: int,
         max_steps: int | None = None) -> tuple[MisoModel, CropSampler, TrainResult]:
    torch.manual_seed(seed)  # the initial weights are part of the run's determinism
    model = build_model(cfg, arrays.grid, ckpts)
    sampler = CropSampler(arrays.imagery, arrays.covariates, arrays.grid, points.subset(np.flatnonzero(train)),
                          cfg.crops)
    result = train_miso(model, sampler, np.arange(int(train.sum())), points.subset(np.flatnonzero(val)),
                        cfg, store, seed, max_steps)
    log.info("trained in %.0f s, best epoch %d (step %d, val score %.3f)", result.seconds,
             result.best_epoch, result.best_step, result.best_score)
    return model, sampler, result


def variant_config(cfg: MisoConfig, variant: str) -> MisoConfig:
    """The config of an ablation: `miso`, `no_contrastive`, `no_location` or `no_pretraining`."""
    data = cfg.model_dump()
    if variant == "no_contrastive":
        data["contrastive"]["enabled"] = False
    elif variant == "no_location":
        data["location"]["enabled"] = False
    elif variant == "no_pretraining":
        for which in ENCODERS:
            if data[which] is not None:
                data[which]["weights"] = None
    return MisoConfig.model_validate(data)


def weighted_config(cfg: MisoConfig, weighting: str) -> MisoConfig:
    """The MISO config under the run's class-weighting rule (balanced losses only for `balanced`)."""
    loss = cfg.loss.model_copy(update={"class_weights": "balanced" if weighting == "balanced" else "none"})
    return cfg.model_copy(update={"loss": loss})


def fit_offsets(pred: dict[str, np.ndarray], points: Points, train_points: Points) -> DecisionOffsets:
    """Decision offsets fitted on validation predictions `pred` at `points` (the `threshold` rule)."""
    ok = pred["valid"]
    pf = so = None
    if "permafrost" in pred:
        m = ok & (points.permafrost >= 0)
        pf = fit_permafrost_offset(points.permafrost[m], pred["permafrost"][m])
    if "soil_order" in pred:
        m = ok & (points.soil >= 0)
        so = fit_soil_offsets(points.soil[m], pred["soil_order"][m],
                              class_priors(train_points.soil, len(SOIL_ORDERS)))
    return DecisionOffsets(pf or 0.0, so or ())


def apply_offsets(pred: dict[str, np.ndarray], offsets: DecisionOffsets) -> dict[str, np.ndarray]:
    """Predictions with the decision offsets applied (entropies recomputed from them)."""
    out = dict(pred)
    if "permafrost" in pred:
        p = offsets.apply_permafrost(pred["permafrost"])
        q = np.clip(p, 1e-7, 1 - 1e-7)
        out["permafrost"], out["permafrost_entropy"] = p, -(q * np.log(q) + (1 - q) * np.log(1 - q))
    if "soil_order" in pred:
        p = offsets.apply_soil_order(pred["soil_order"])
        out["soil_order"] = p
        out["soil_order_entropy"] = -(p * np.log(np.clip(p, 1e-9, None))).sum(-1)
    return out


def bake_offsets(model: MisoModel, offsets: DecisionOffsets) -> None:
    """Add the decision offsets to the heads' biases, so every inference path applies them."""
    with torch.no_grad():
        heads = model.heads.heads
        if "permafrost" in heads:
            heads["permafrost"].bias += offsets.permafrost
        if "soil_order" in heads and offsets.soil_order:
            heads["soil_order"].bias += torch.tensor(offsets.soil_order, dtype=heads["soil_order"].bias.dtype)


def scored_folds(col: np.ndarray, max_folds: int | None) -> list[int]:
    """The test folds of one scheme to cross-validate: all, or the `max_folds` largest (ties to the
    lower id) — chosen by size, never by score, so a few-pedon fold does not stand for a scheme."""
    ids, counts = np.unique(col[col >= 0], return_counts=True)
    keep = ids[np.argsort(-counts, kind="stable")][:max_folds]
    return sorted(int(f) for f in keep)


def cross_validate(config: RunConfig, cfg: MisoConfig, name: str, arrays: CubeArrays,
                   table: pd.DataFrame, folds: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Out-of-fold MISO predictions on every configured scheme; returns them and run statistics
    (per fold: training seconds, the step count validation selected, the decision offsets)."""
    ckpts = read_weights(cfg, config.storage)
    cfg = resolve_config(weighted_config(cfg, config.evaluation.class_weighting), arrays, ckpts)
    points, ids = label_points(table), table["pedon_id"].astype(str).to_numpy()
    xy = table[["x", "y"]].to_numpy(np.float64)
    schemes = cfg.schemes or scheme_columns(folds)
    unknown = sorted(set(schemes) - set(folds.columns))
    if unknown:
        raise MisoJobError(f"fold scheme(s) {unknown} not in the folds table; it has {scheme_columns(folds)}")
    mdir = model_dir(config.workdir, name)
    write_bytes(f"{mdir}/config.json", cfg.model_dump_json(indent=2).encode(), config.storage)
    out, per_fold, device = [], [], select_device(cfg.train)
    for scheme in schemes:
        col = folds[scheme].to_numpy()
        for fold in scored_folds(col, cfg.max_folds):
            log.info("%s: %s fold %d", name, scheme, fold)
            train, val = carve_validation(col, fold, config.evaluation.val_fraction, config.seed, xy)
            store = FsCheckpointStore(f"{mdir}/checkpoints/{scheme}/fold{fold}", config.storage)
            model, sampler, res = _fit(cfg, arrays, ckpts, points, train, val, store, config.seed)
            offsets = DecisionOffsets()
            if config.evaluation.class_weighting == "threshold":
                vpts = points.subset(np.flatnonzero(val))
                vpred = predict_at(model, sampler, vpts, device)
                offsets = fit_offsets(vpred, vpts, points.subset(np.flatnonzero(train)))
            test = np.flatnonzero(col == fold)
            pred = apply_offsets(predict_at(model, sampler, points.subset(test), device), offsets)
            out.append(prediction_rows(pred, ids[test], points.subset(test), scheme, fold, cfg.loss.tasks)
                       .assign(train_seconds=res.seconds))
            per_fold.append({"scheme": scheme, "fold": int(fold), "seconds": res.seconds,
                             "best_step": res.best_step, "train_pedons": int(train.sum()),
                             "val_pedons": int(val.sum()), "offsets": offsets.as_dict()})
    seconds = [f["seconds"] for f in per_fold]
    stats = {"model": name, "parameters": parameter_count(build_model(cfg, arrays.grid, {})),
             "train_seconds_per_fold_mean": float(np.mean(seconds)), "folds_trained": len(seconds),
             "class_weighting": config.evaluation.class_weighting, "folds": per_fold,
             "selected_steps": int(np.median([f["best_step"] for f in per_fold]))}
    return pd.concat(out, ignore_index=True), stats


def _common_folds(preds: pd.DataFrame, all_preds: dict[str, tuple[pd.DataFrame, str]]) -> pd.DataFrame:
    """`preds` restricted, per scheme, to the test folds every model run on that scheme has, so
    models are compared on the same held-out pedons (e.g. MISO with max_folds vs the RF)."""
    keep = []
    for scheme, sub in preds.groupby("scheme"):
        common = set(sub["fold"])
        for other, _ in all_preds.values():
            folds = set(other.loc[other["scheme"] == scheme, "fold"])
            if folds:
                common &= folds
        keep.append(sub[sub["fold"].isin(common)])
    return pd.concat(keep, ignore_index=True) if keep else preds


def compare(config: RunConfig, models: list[str]) -> str:
    """The MISO vs RF table (COMPARED metrics; mean ± sd over folds per scheme) of every model in
    `models` with predictions in the run, as markdown, CSV and a bar chart of recall, with each
    model's training time per fold. Returns the markdown's location."""
    table, _ = read_training(config)
    rows, cost, all_preds = [], [], {}
    for name in models:
        loc = f"{model_dir(config.workdir, name)}/predictions.parquet"
        try:
            all_preds[name] = (read_predictions(loc, config), loc)
        except LabelsError:
            log.info("no predictions of %s at %s: left out of the comparison", name, loc)
    for name, (preds, loc) in all_preds.items():
        common = _common_folds(preds, all_preds)
        if "train_seconds" in common.columns:
            per_fold = fold_seconds(common, name)
            params = "–"
            if name != "rf":
                st = json.loads(read_bytes(f"{model_dir(config.workdir, name)}/training.json", config.storage))
                params = f"{st['parameters']:,}"
            cost.append({"model": name, "seconds": per_fold.mean(), "folds": len(per_fold), "parameters": params})
        for target, ev in evaluate(common, table, config.evaluation, source=loc).items():
            s = ev.summary[ev.summary["metric"].isin(COMPARED[target])]
            for _, r in s.iterrows():
                rows.append({"model": name, "target": target, "metric": r["metric"],
                             "scheme": r["scheme"], "mean": r["mean"], "sd": r["sd"]})
    df = pd.DataFrame(rows)
    out = f"{model_dir(config.workdir, MODEL)}/comparison"
    write_bytes(f"{out}.csv", df.to_csv(index=False).encode(), config.storage)
    lines = ["# MISO vs Random Forest", "",
             "Mean ± sd over the test folds of each scheme (models never see their test fold); on each "
             "scheme every model is scored on the same folds (those all models were run on). Class "
             f"weighting for every model: `{config.evaluation.class_weighting}`.", ""]
    df = df.dropna(subset=["mean"])  # schemes a model was not run on
    for target, sub in df.groupby("target", sort=False):
        for metric in COMPARED[target]:
            m = sub[sub["metric"] == metric]
            if m.empty:
                continue
            lines += [f"## {target}: {metric}", ""]
            wide = m.assign(v=[f"{a:.3f} ± {b:.3f}" for a, b in zip(m["mean"], m["sd"].fillna(0))]).pivot(
                index="model", columns="scheme", values="v").fillna("—")
            lines += ["| model | " + " | ".join(wide.columns) + " |", "|---" * (len(wide.columns) + 1) + "|"]
            lines += [f"| {n} | " + " | ".join(str(v) for v in wide.loc[n]) + " |" for n in wide.index] + [""]
    lines += ["## Training cost (this machine)", "",
              "| model | parameters | mean training seconds per fold | folds |", "|---|---|---|---|"]
    lines += [f"| {c['model']} | {c['parameters']} | {c['seconds']:.1f} | {c['folds']} |" for c in cost]
    write_bytes(f"{out}.md", ("\n".join(lines) + "\n").encode(), config.storage)
    write_bytes(f"{out}.png", _comparison_png(df[df["metric"].isin([v[0] for v in COMPARED.values()])]),
                config.storage)
    log.info("comparison written to %s.md", out)
    return f"{out}.md"


def fold_seconds(preds: pd.DataFrame, model: str) -> pd.Series:
    """Training seconds per (scheme, fold): the RF fits one forest per target (summed), a MISO
    model serves both targets (its rows repeat one figure)."""
    per_target = preds.groupby(["scheme", "fold", "target"])["train_seconds"].first().groupby(["scheme", "fold"])
    return per_target.sum() if model == "rf" else per_target.max()


def _comparison_png(df: pd.DataFrame) -> bytes:
    targets = list(dict.fromkeys(df["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(6 * len(targets), 4), squeeze=False)
    for ax, target in zip(axes[0], targets):
        sub = df[df["target"] == target]
        wide_m = sub.pivot(index="scheme", columns="model", values="mean")
        wide_s = sub.pivot(index="scheme", columns="model", values="sd")
        wide_m.plot.bar(yerr=wide_s, ax=ax, rot=0, capsize=2)
        ax.set_title(f"{target}: {COMPARED[target][0]}")
        ax.set_ylim(0, 1)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def run_train_miso(config: RunConfig) -> MisoOutputs:
    """Cross-validate MISO and its ablations, report, compare with the RF, train the final model."""
    from misomap.jobs.report import write_report

    cfg = miso_section(config)
    table, folds = read_training(config)
    arrays = load_arrays(config, cfg)
    preds, reports = {}, {}
    for variant in ["miso"] * cfg.include_full + list(cfg.ablations):
        name = MODEL if variant == "miso" else f"{MODEL}_{variant}"
        t0 = time.perf_counter()
        frame, st = cross_validate(config, variant_config(cfg, variant), name, arrays, table, folds)
        log.info("%s cross-validated in %.0f s", name, time.perf_counter() - t0)
        loc = f"{model_dir(config.workdir, name)}/predictions.parquet"
        write_parquet(loc, frame, config.storage)
        preds[name] = loc
        write_bytes(f"{model_dir(config.workdir, name)}/training.json", json.dumps(st).encode(), config.storage)
        results = evaluate(frame, table, config.evaluation, source=loc)
        reports[name] = write_report(results, name, f"{model_dir(config.workdir, name)}/report", config)
    comparison = compare(config, ["rf", MODEL, *[f"{MODEL}_{a}" for a in ABLATIONS]])
    final = train_final(config, cfg, arrays, table) if cfg.final_model else None
    return MisoOutputs(preds, reports, comparison, final)


def train_final(config: RunConfig, cfg: MisoConfig, arrays: CubeArrays, table: pd.DataFrame) -> str:
    """One model on every labelled pedon, nothing held out, for the median step count the full
    model's cross-validation selected, with the median of its folds' decision offsets baked into
    the heads. Returns the map model's location (`final/model.safetensors`)."""
    try:
        stats = json.loads(read_bytes(f"{model_dir(config.workdir, MODEL)}/training.json", config.storage))
    except LabelsError:
        raise MisoJobError(f"no cross-validation of the full model under {model_dir(config.workdir, MODEL)}: "
                           "the final model's step count comes from it; run with miso.include_full "
                           "true") from None
    ckpts = read_weights(cfg, config.storage)
    cfg = resolve_config(weighted_config(cfg, config.evaluation.class_weighting), arrays, ckpts)
    points = label_points(table)
    labelled = (points.permafrost >= 0) | (points.soil >= 0)
    root = f"{model_dir(config.workdir, MODEL)}/final"
    model, _, res = _fit(cfg, arrays, ckpts, points, labelled, np.zeros(len(points), bool),
                         FsCheckpointStore(root, config.storage), config.seed, stats["selected_steps"])
    offsets = median_offsets([DecisionOffsets.from_dict(f["offsets"]) for f in stats["folds"]])
    bake_offsets(model, offsets)
    loc = f"{root}/model.safetensors"
    write_bytes(loc, model_checkpoint_bytes(model), config.storage)
    log.info("final model: %d pedons, %d steps (selected by CV), offsets %s -> %s", int(labelled.sum()),
             stats["selected_steps"], offsets.as_dict(), loc)
    return loc


def run_pretrain(config: RunConfig) -> dict[str, str]:
    """Pretrain the Swin-V2 encoders (SimMIM) on unlabelled cube tiles; returns where each went."""
    cfg = miso_section(config)
    arrays = load_arrays(config, cfg)
    cfg = resolve_config(cfg, arrays, {})
    out = cfg.pretrain.output or f"{config.workdir}/miso/pretrained"
    device = select_device(cfg.train)
    empty = Points(np.empty(0), np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64))
    written = {}
    for which in ENCODERS:
        enc: EncoderConfig | None = getattr(cfg, which)
        if enc is None:
            continue
        arr = arrays.imagery if which == "imagery" else arrays.covariates
        sampler = CropSampler(arr, None, arrays.grid, empty, cfg.crops)
        t0 = time.perf_counter()
        data, history = pretrain_encoder(enc, cfg.crops.size_px,
                                         lambda n, rng, s=sampler: s.unlabelled(n, rng).imagery,
                                         cfg.pretrain, config.seed, device)
        loc = f"{out}/{which}.safetensors"
        write_bytes(loc, data, config.storage)
        log.info("pretrained %s encoder in %.0f s (masked L1 %.4f → %.4f) → %s", which,
                 time.perf_counter() - t0, history[0], history[-1], loc)
        written[which] = loc
    return written
