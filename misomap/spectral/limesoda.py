"""Real-data evaluation on the LimeSoDa sets, each on its own predefined folds (out of fold):
PLSR / MLP on the spectra, on embeddings of a VAE pretrained per fold on that fold's training
spectra, and on embeddings of a cross-set VAE -- pretrained on every other set of the sensor family
that shares the spectral range, then fine-tuned on that pool plus the fold's training spectra. No
model ever sees the evaluated set's test fold; log(1+x) is chosen on the training folds."""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from misomap.spectral.prepare import Prepared, prepare, schedule, train_vae_rows
from misomap.models.spectral import vae as vaemod
from misomap.models.spectral.metrics import metrics_table
from misomap.models.spectral.regressors import PropertyRegressor, composition_columns
from misomap.spectra.config import SpectralConfig
from misomap.spectra.errors import SpectralError
from misomap.spectra.limesoda import FAMILY_BOUNDS, LIMESODA_SPECTRAL_SETS, Pool, pretraining_pool
from misomap.spectra.preprocess import axis_range, common_axis, validate_sensor
from misomap.spectra.readers import LimeSoDaSet, read_limesoda

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
            arch = vaemod.VAEArch(d_scans.shape[1], sc.vae.latent_dim, sc.vae.hidden)
            base, hist = vaemod.fit_vae(d_scans, d_rows, arch, schedule(sc.vae, len(d_scans), seed))
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
