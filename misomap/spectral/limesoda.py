"""Real-data evaluation on the LimeSoDa sets, each on its own predefined folds (out of fold):
PLSR / MLP on the spectra, on embeddings of a VAE pretrained per fold on that fold's training
spectra, and on embeddings of a cross-set VAE -- pretrained on every other set of the sensor family
that shares the spectral range, then fine-tuned on that pool plus the fold's training spectra. No
model ever sees the evaluated set's test fold; log(1+x) is chosen on the training folds."""

from __future__ import annotations

import logging
import resource
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from misomap.models.spectral import vae as vaemod
from misomap.models.spectral.metrics import metrics_table
from misomap.models.spectral.regressors import PropertyRegressor, composition_columns
from misomap.models.spectral.select import Candidate, choose_and_predict
from misomap.spectra.config import SpectralConfig
from misomap.spectra.errors import SpectralError
from misomap.spectra.limesoda import FAMILY_BOUNDS, LIMESODA_SPECTRAL_SETS, Pool, pretraining_pool
from misomap.spectra.preprocess import axis_range, common_axis, validate_sensor
from misomap.spectra.readers import LimeSoDaSet, read_limesoda
from misomap.spectral.prepare import Prepared, fit_mir_vae, prepare, schedule, train_vae_rows

log = logging.getLogger(__name__)

FEATURES = ("spectra", "vae_fold", "vae_cross")


@dataclass(frozen=True)
class LimeSoDaPlan:
    """Every set read and checked, with its own axis and its cross-set pool (made before training)."""

    sets: dict[str, LimeSoDaSet]
    evaluate: tuple[str, ...]
    own: dict[str, Prepared]
    pools: dict[str, Pool]


def plan_limesoda(names: tuple[str, ...], sc: SpectralConfig) -> LimeSoDaPlan:
    """Read and validate the evaluated sets and their families, choose axes and pools; cheap, and
    every bad input is refused here, before any model trains."""
    unknown = [n for n in names if n not in LIMESODA_SPECTRAL_SETS]
    if unknown:
        raise SpectralError(f"LimeSoDa set(s) {unknown} carry no spectra or do not exist; sets with spectra: "
                            f"{sorted(LIMESODA_SPECTRAL_SETS)}")
    families = {LIMESODA_SPECTRAL_SETS[n] for n in names}
    members = [n for n, f in LIMESODA_SPECTRAL_SETS.items() if f in families] if sc.limesoda_cross else list(names)
    sets = {n: read_limesoda(n) for n in members}
    own, pools = {}, {}
    for name in names:
        family = LIMESODA_SPECTRAL_SETS[name]
        bounds = FAMILY_BOUNDS[family]
        if sc.limesoda_step is not None:
            bounds = bounds.model_copy(update={"step": sc.limesoda_step})
        axis = common_axis({name: axis_range(sets[name].spectra.axis)}, bounds)
        own[name] = prepare(sets[name].spectra, f"LimeSoDa {name}", axis, min_samples=10)
        if sc.limesoda_cross:
            ranges = {n: axis_range(s.spectra.axis) for n, s in sets.items() if LIMESODA_SPECTRAL_SETS[n] == family}
            pools[name] = pretraining_pool(name, ranges, bounds, sc.pool_min_coverage)
    for name, s in sets.items():
        validate_sensor(s.spectra, f"LimeSoDa {name}", min_samples=2)
    return LimeSoDaPlan(sets, tuple(names), own, pools)


def _on_axis(plan: LimeSoDaPlan, name: str, pool: Pool) -> Prepared:
    return prepare(plan.sets[name].spectra, f"LimeSoDa {name}", pool.axis)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_limesoda(plan: LimeSoDaPlan, sc: SpectralConfig, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics per set, features, regressor and property; pretraining log per set)."""
    tables, pretraining = [], []
    for name in plan.evaluate:
        ds, own = plan.sets[name], plan.own[name]
        Y, names = ds.properties, ds.property_names
        comp = composition_columns(names)
        features = ["spectra", "vae_fold"]
        pool = plan.pools.get(name)
        base = donors = target = None
        if pool is not None and pool.donors:
            donors = [_on_axis(plan, d, pool) for d in pool.donors]
            target = _on_axis(plan, name, pool)
            d_scans = np.concatenate([d.scans for d in donors])
            d_rows = np.concatenate([d.scan_rows + 1_000_000 * (i + 1) for i, d in enumerate(donors)])
            t0 = time.perf_counter()
            arch = vaemod.VAEArch(d_scans.shape[1], sc.vae.latent_dim, sc.vae.hidden, sc.vae.linear)
            base, hist = fit_mir_vae(d_scans, d_rows, arch, schedule(sc.vae, len(d_scans), seed))
            pretraining.append({"dataset": name, "family": LIMESODA_SPECTRAL_SETS[name], "donors": len(pool.donors),
                                "pool_spectra": len(d_scans), "axis": f"{pool.axis.start:g}..{pool.axis.stop:g}",
                                "channels": pool.axis.size, "seconds": time.perf_counter() - t0,
                                "peak_rss_mb": _peak_rss_mb(), "final_loss": hist[-1],
                                "dropped": " ".join(pool.dropped)})
            features.append("vae_cross")
        oof = {(f, k): np.full(Y.shape, np.nan) for f in features for k in sc.regressors}
        for fold in tqdm(np.unique(ds.folds), desc=f"LimeSoDa {name}", unit="fold"):
            test, train = np.nonzero(ds.folds == fold)[0], np.nonzero(ds.folds != fold)[0]
            X = {"spectra": own.means}
            vae, _ = train_vae_rows(own, train, sc, seed)
            X["vae_fold"] = vaemod.embed(vae, own.means)
            if base is not None:
                keep = np.isin(target.scan_rows, train)
                scans = np.concatenate([d_scans, target.scans[keep]])
                rows = np.concatenate([d_rows, target.scan_rows[keep]])
                steps = vaemod.Schedule(**{**schedule(sc.vae, len(scans), seed).__dict__,
                                           "epochs": max(1, sc.vae.finetune_steps * sc.vae.batch_size // len(scans))})
                tuned, _ = vaemod.fit_vae(scans, rows, base.arch, steps, init=base)
                X["vae_cross"] = vaemod.embed(tuned, target.means)
            for feats in features:
                for kind in sc.regressors:
                    model = PropertyRegressor(kind, sc.skew_threshold, sc.pls_max_components, seed, comp)
                    oof[(feats, kind)][test] = model.fit(X[feats][train], Y[train]).predict(X[feats][test])
        for (feats, kind), pred in oof.items():
            tables.append(metrics_table(Y, pred, names, dataset=name, family=LIMESODA_SPECTRAL_SETS[name],
                                        features=feats, model=kind))
    return pd.concat(tables, ignore_index=True), pd.DataFrame(pretraining)


def evaluate_limesoda(sc: SpectralConfig, seed: int, names: tuple[str, ...] | None = None
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Plan (read, check) then run the evaluation of `names` (default: sc.limesoda)."""
    return run_limesoda(plan_limesoda(tuple(names if names is not None else sc.limesoda), sc), sc, seed)


def mean_ccc_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean CCC over properties per set (rows) and features/regressor (columns)."""
    wide = metrics.pivot_table(index="dataset", columns=["features", "model"], values="ccc", aggfunc="mean",
                               sort=False)
    wide.columns = [f"{f}/{m}" for f, m in wide.columns]
    return wide.reset_index()


def verdict_lines(metrics: pd.DataFrame) -> list[str]:
    """Per set: mean CCC of cross-set and per-fold embeddings against PLSR on the spectra, same regressor
    family compared as reported (no choice made on the test folds)."""
    wide = mean_ccc_table(metrics).set_index("dataset")
    lines = []
    for name, row in wide.iterrows():
        parts = [f"PLSR spectra {row['spectra/plsr']:.3f}"]
        for col in [c for c in wide.columns if c.startswith("vae_")]:
            parts.append(f"{col} {row[col]:.3f}")
        lines.append(f"- {name}: " + ", ".join(parts))
    return lines


TRACKS: dict[str, Callable[[Candidate], bool]] = {
    "spectra/plsr": lambda c: c.features == "spectra" and c.regressor == "plsr",
    "spectra/chosen": lambda c: c.features == "spectra",
    "embedding/plsr": lambda c: c.features == "embedding" and c.regressor == "plsr",
    "embedding/chosen": lambda c: c.features in ("embedding", "embedding+spectra"),
}
"""What each reported column may choose from. `embedding/chosen` always uses the cross-set
embeddings (alone or concatenated with the spectra); `spectra/*` never does."""


@dataclass(frozen=True)
class EncoderSettings:
    """The cross-set encoder and its training, fixed before any set is evaluated."""

    latent_dim: int = 32
    hidden: tuple[int, ...] = (128, 64)
    linear: bool = True
    epochs: int = 300
    batch_size: int = 64
    learning_rate: float = 1e-3
    beta: float = 1e-4
    patience: int = 20
    holdout: float = 0.15


@dataclass(frozen=True)
class SelectionSettings:
    """Inner CV and intervals of the regressor choice (training rows only)."""

    inner_folds: int = 4
    alpha: float = 0.1
    max_components: int = 20
    blocks: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("spectra", ("plsr", "ridge")),
        ("embedding", ("plsr", "ridge", "hgb", "mbl")),
        ("embedding+spectra", ("plsr", "ridge", "mbl")),
    )


@dataclass(frozen=True)
class SetResult:
    """One set: metrics and interval coverage per track and property, the choices made, the encoder's
    pretraining log (time, memory, reconstruction against PCA), and every out-of-fold prediction."""

    metrics: pd.DataFrame
    choices: pd.DataFrame
    pretraining: dict
    predictions: pd.DataFrame


def pretrain_cross(plan: LimeSoDaPlan, name: str, enc: EncoderSettings, seed: int
                   ) -> tuple[vaemod.SpectralVAE, Prepared, dict]:
    """The cross-set encoder of `name`: fitted on the other sets of its family only (never on `name`),
    with time, peak memory and reconstruction against PCA at the same latent size (held-out pool
    samples, and every spectrum of `name`)."""
    pool = plan.pools[name]
    if not pool.donors:
        raise SpectralError(f"LimeSoDa {name}: no other set of its family covers its range; no cross-set pool")
    donors = [_on_axis(plan, d, pool) for d in pool.donors]
    target = _on_axis(plan, name, pool)
    d_scans = np.concatenate([d.scans for d in donors])
    d_rows = np.concatenate([d.scan_rows + 1_000_000 * (i + 1) for i, d in enumerate(donors)])
    d_means = np.concatenate([d.means for d in donors])
    arch = vaemod.VAEArch(d_scans.shape[1], enc.latent_dim, enc.hidden, enc.linear)
    sched = vaemod.Schedule(enc.epochs, enc.batch_size, enc.learning_rate, enc.beta, seed)
    tracemalloc.start()
    t0 = time.perf_counter()
    fit = vaemod.fit_encoder(d_scans, d_rows, arch, sched, enc.holdout, enc.patience)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    mean, scale = fit.model.mean.numpy(), fit.model.scale.numpy()
    log_row = {"dataset": name, "family": LIMESODA_SPECTRAL_SETS[name], "donors": " ".join(pool.donors),
               "pool_spectra": len(d_scans), "pool_samples": len(d_means),
               "axis": f"{pool.axis.start:g}..{pool.axis.stop:g}", "channels": pool.axis.size,
               "latent": enc.latent_dim, "epochs": fit.epochs, "seconds": seconds,
               "python_peak_mb": peak / 2**20, "process_peak_rss_mb": _peak_rss_mb(),
               "holdout_mse": fit.holdout_mse, "holdout_pca_mse": fit.holdout_pca_mse,
               "target_mse": vaemod.reconstruction_mse(fit.model, target.means),
               "target_pca_mse": vaemod.pca_reconstruction_mse(d_means, target.means, enc.latent_dim, mean, scale)}
    return fit.model, target, log_row


def evaluate_selected(plan: LimeSoDaPlan, name: str, enc: EncoderSettings, sel: SelectionSettings,
                      skew_threshold: float | None, seed: int) -> SetResult:
    """`name` on its own folds: cross-set embeddings, then per outer fold and property every track's
    regressor chosen by inner CV on the fold's training rows, with CV+ intervals; all out of fold."""
    ds, own = plan.sets[name], plan.own[name]
    Y, names = ds.properties, ds.property_names
    model, target, pre = pretrain_cross(plan, name, enc, seed)
    emb = vaemod.embed(model, target.means).astype(np.float64)
    spectra = own.means.astype(np.float64)
    feats = {"spectra": spectra, "embedding": emb, "embedding+spectra": np.hstack([emb, spectra])}
    blocks = {b: (feats[b], regs) for b, regs in sel.blocks}
    shape = (len(TRACKS), *Y.shape)
    pred, lower, upper = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    choices = []
    for fold in tqdm(np.unique(ds.folds), desc=f"LimeSoDa {name}", unit="fold", leave=False):
        test, train = np.nonzero(ds.folds == fold)[0], np.nonzero(ds.folds != fold)[0]
        for j, prop in enumerate(names):
            picked = choose_and_predict(blocks, emb, Y[:, j], train, test, TRACKS, sel.inner_folds, sel.alpha,
                                        sel.max_components, skew_threshold, seed)
            for t, track in enumerate(TRACKS):
                if track in picked:
                    c = picked[track]
                    pred[t, test, j], lower[t, test, j], upper[t, test, j] = c.prediction, c.lower, c.upper
                    choices.append({"dataset": name, "fold": int(fold), "property": prop, "track": track,
                                    "chosen": c.candidate.label, "inner_rmse": c.inner_rmse})
    tables, rows = [], []
    for t, track in enumerate(TRACKS):
        m = metrics_table(Y, pred[t], names, dataset=name, family=LIMESODA_SPECTRAL_SETS[name], track=track)
        inside = (Y >= lower[t]) & (Y <= upper[t])
        measured = ~np.isnan(Y)
        m["coverage"] = [float(inside[measured[:, j], j].mean()) for j in range(len(names))]
        m["interval_width"] = [float(np.mean((upper[t] - lower[t])[measured[:, j], j])) for j in range(len(names))]
        tables.append(m)
        for j, prop in enumerate(names):
            rows.append(pd.DataFrame({"dataset": name, "track": track, "property": prop, "row": np.arange(len(Y)),
                                      "fold": ds.folds, "observed": Y[:, j], "predicted": pred[t, :, j],
                                      "lower": lower[t, :, j], "upper": upper[t, :, j]}))
    return SetResult(pd.concat(tables, ignore_index=True), pd.DataFrame(choices), pre,
                     pd.concat(rows, ignore_index=True))
