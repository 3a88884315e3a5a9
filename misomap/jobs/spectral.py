"""train-spectral: fit the MIR VAE, the NIR encoder and the property regressors on a spectral
library, evaluate every feature set (cross-validation plus an independent test set, and the real
LimeSoDa datasets on their own folds), save the models and write the report."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import KFold
from tqdm import tqdm

from misomap.config import RunConfig
from misomap.jobs import spectral_report as report
from misomap.jobs.spectral_store import (ensure_library, save_models, spectral_paths, spectral_section,
                                         storage_options)
from misomap.models.spectral import nir as nirmod
from misomap.models.spectral import vae as vaemod
from misomap.models.spectral.metrics import metrics_table
from misomap.models.spectral.regressors import PropertyRegressor, RegressorKind, regressor_to_bytes
from misomap.models.spectral.serialization import module_to_bytes
from misomap.spectra.config import AxisSpec, NIRSpec, SpectralConfig, VAESpec
from misomap.spectra.errors import LibraryFormatError
from misomap.spectra.library import SensorSpectra, pair_rows, read_library
from misomap.spectra.preprocess import axis_values, skewed_columns, spectral_pipeline, validate_sensor
from misomap.spectra.readers import read_limesoda

log = logging.getLogger(__name__)

VISNIR_AXIS = AxisSpec(start=400, stop=2480, step=4)
"""LimeSoDa vis-NIR sets are resampled onto this grid (their native spacing is irregular)."""


@dataclass(frozen=True)
class Prepared:
    """One sensor's spectra preprocessed: sample means and every scan repeat."""

    ids: np.ndarray
    means: np.ndarray
    scans: np.ndarray
    scan_rows: np.ndarray


def prepare(spectra: SensorSpectra, sensor: str, axis: AxisSpec) -> Prepared:
    """Validate, then resample -> log10(1/R) if reflectance -> SNV, for means and scans."""
    validate_sensor(spectra, sensor)
    pipe = spectral_pipeline(spectra.axis, axis, spectra.quantity)
    scans, rows = spectra.scans()
    return Prepared(spectra.sample_id, pipe.fit_transform(spectra.mean()), pipe.fit_transform(scans), rows)


def schedule(spec: VAESpec | NIRSpec, n_rows: int, seed: int) -> vaemod.Schedule:
    """Epochs extended to at least `min_steps` optimiser steps for small training sets."""
    steps_per_epoch = max(1, math.ceil(n_rows / spec.batch_size))
    epochs = max(spec.epochs, math.ceil(spec.min_steps / steps_per_epoch))
    return vaemod.Schedule(epochs, spec.batch_size, spec.learning_rate, getattr(spec, "beta", 0.0), seed)


def train_vae(prep: Prepared, rows: np.ndarray, sc: SpectralConfig, seed: int
              ) -> tuple[vaemod.SpectralVAE, list[float]]:
    """The MIR VAE on every scan repeat of the given sample rows."""
    keep = np.isin(prep.scan_rows, rows)
    arch = vaemod.VAEArch(prep.scans.shape[1], sc.vae.latent_dim, sc.vae.hidden)
    return vaemod.fit_vae(prep.scans[keep], prep.scan_rows[keep], arch,
                          schedule(sc.vae, int(keep.sum()), seed))


def cv_and_test(X: np.ndarray, Y: np.ndarray, train: np.ndarray, test: np.ndarray, kind: RegressorKind,
                log_cols: tuple[int, ...], sc: SpectralConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold predictions on `train` rows and predictions on `test` rows (fit on all of train)."""
    oof = np.full((len(train), Y.shape[1]), np.nan)
    for fit_idx, val_idx in KFold(sc.cv_folds, shuffle=True, random_state=seed).split(train):
        model = PropertyRegressor(kind, log_cols, sc.pls_max_components, seed)
        oof[val_idx] = model.fit(X[train[fit_idx]], Y[train[fit_idx]]).predict(X[train[val_idx]])
    model = PropertyRegressor(kind, log_cols, sc.pls_max_components, seed).fit(X[train], Y[train])
    return oof, model.predict(X[test])


@dataclass(frozen=True)
class TrainResult:
    """What train-spectral produced."""

    models: str
    report: Path
    metrics: pd.DataFrame
    limesoda: pd.DataFrame | None


def train_spectral(cfg: RunConfig) -> TrainResult:
    """Train, evaluate, save and report; see the module docstring."""
    sc = spectral_section(cfg)
    torch.set_num_threads(sc.torch_threads)
    paths = spectral_paths(cfg)
    url = ensure_library(cfg)
    lib = read_library(url, storage_options(cfg, url))
    if "mir" not in lib.sensors:
        raise LibraryFormatError(f"library {url} has no 'mir' sensor; it has {sorted(lib.sensors)}")
    mir_raw = lib.sensors["mir"]
    Y = lib.targets(sc.properties, mir_raw.sample_id)
    nir_raw = lib.sensors.get("nir")
    pair = pair_rows(mir_raw.sample_id, nir_raw.sample_id) if nir_raw is not None else None
    mir = prepare(mir_raw, "mir", sc.mir_axis)
    nir = prepare(nir_raw, "nir", sc.nir_axis) if nir_raw is not None else None

    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(mir.ids))
    n_test = max(1, int(round(sc.test_fraction * len(order))))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    log_cols = skewed_columns(Y[train], sc.skew_threshold)
    log.info("MIR: %d train / %d independent test samples; log(1+x) for %s", len(train), len(test),
             [sc.properties[j] for j in log_cols])

    vae, vae_hist = train_vae(mir, train, sc, cfg.seed)
    mir_emb = vaemod.embed(vae, mir.means)
    mir_recon = vaemod.reconstruct(vae, mir.means)
    recon_rmse = float(np.sqrt(np.mean((mir_recon[test] - mir.means[test]) ** 2)))
    features = {"mir": (mir.means, Y, train, test), "mir_embedding": (mir_emb, Y, train, test)}
    files = {"mir_vae.safetensors": module_to_bytes(vae, "mir_vae", vaemod.arch_dict(vae.arch))}

    nir_parts = None
    if nir is not None and pair is not None:
        nir_parts = _train_nir(nir, pair, mir, vae, test, sc, cfg.seed)
        enc, nir_emb, converted = nir_parts.encoder, nir_parts.embeddings, nir_parts.converted
        ntrain, ntest = nir_parts.train, nir_parts.test
        Yn = Y[pair]
        features.update({"nir": (nir.means, Yn, ntrain, ntest), "nir_to_mir_embedding": (nir_emb, Yn, ntrain, ntest),
                         "nir_to_mir_spectra": (converted, Yn, ntrain, ntest)})
        files["nir_encoder.safetensors"] = module_to_bytes(enc, "nir_encoder", nirmod.arch_dict(enc.arch))

    tables, test_preds = [], {}
    for name, (X, Yf, tr, te) in tqdm(features.items(), desc="regressors", unit="feature set"):
        for kind in sc.regressors:
            oof, pred = cv_and_test(X, Yf, tr, te, kind, log_cols, sc, cfg.seed)
            tables.append(metrics_table(Yf[tr], oof, sc.properties, features=name, model=kind, split="cv"))
            tables.append(metrics_table(Yf[te], pred, sc.properties, features=name, model=kind, split="test"))
            test_preds[(name, kind)] = pred
    metrics = pd.concat(tables, ignore_index=True)

    chosen = {}
    for name, file in (("mir_embedding", "mir_regressor.skops"), ("nir_to_mir_embedding", "nir_regressor.skops")):
        if name not in features:
            continue
        cv = metrics[(metrics.features == name) & (metrics.split == "cv")]
        kind = cv.groupby("model")["ccc"].mean().idxmax()
        X, Yf, tr, _ = features[name]
        files[file] = regressor_to_bytes(PropertyRegressor(kind, log_cols, sc.pls_max_components, cfg.seed).fit(X[tr], Yf[tr]))
        chosen[name] = kind

    meta = {"files": sorted(files), "properties": list(sc.properties), "log_columns": list(log_cols),
            "mir_axis": sc.mir_axis.model_dump(), "nir_axis": sc.nir_axis.model_dump(),
            "latent_dim": sc.vae.latent_dim, "library": url, "regressors": chosen, "seed": cfg.seed,
            "test_reconstruction_rmse": recon_rmse, "vae_final_loss": vae_hist[-1]}
    models_at = save_models(cfg, files, meta)

    lime = evaluate_limesoda(sc, cfg.seed) if sc.limesoda else None
    folder = Path(paths.report)
    folder.mkdir(parents=True, exist_ok=True)
    _write_report(folder, sc, metrics, lime, Y, test, test_preds, mir, mir_emb, mir_recon, nir_parts,
                  pair, meta)
    return TrainResult(models_at, folder, metrics, lime)


@dataclass(frozen=True)
class NIRParts:
    """The trained NIR encoder, its outputs for every NIR sample, and the NIR train/test rows."""

    encoder: nirmod.NIREncoder
    embeddings: np.ndarray
    converted: np.ndarray
    train: np.ndarray
    test: np.ndarray


def _train_nir(nir: Prepared, pair: np.ndarray, mir: Prepared, vae: vaemod.SpectralVAE, mir_test: np.ndarray,
               sc: SpectralConfig, seed: int) -> NIRParts:
    """Fit the NIR encoder on NIR samples whose MIR partner is in the training set."""
    in_test = np.isin(pair, mir_test)
    ntrain, ntest = np.nonzero(~in_test)[0], np.nonzero(in_test)[0]
    keep = np.isin(nir.scan_rows, ntrain)
    targets = mir.means[pair[nir.scan_rows[keep]]]
    arch = nirmod.NIRArch(nir.scans.shape[1], sc.vae.latent_dim, sc.nir.hidden)
    enc, _ = nirmod.fit_nir_encoder(nir.scans[keep], targets, vae, arch, schedule(sc.nir, int(keep.sum()), seed),
                                    sc.nir.reconstruction_weight)
    nir_emb, converted = nirmod.nir_to_mir(enc, vae, nir.means)
    log.info("NIR: %d paired train / %d test samples", len(ntrain), len(ntest))
    return NIRParts(enc, nir_emb, converted, ntrain, ntest)


def limesoda_axis(spectra: SensorSpectra, sc: SpectralConfig) -> AxisSpec:
    """MIR sets go onto the configured MIR axis, vis-NIR sets onto VISNIR_AXIS."""
    return sc.mir_axis if spectra.unit == "cm-1" else VISNIR_AXIS


def evaluate_limesoda(sc: SpectralConfig, seed: int) -> pd.DataFrame:
    """Embeddings vs spectra (PLSR and MLP) on each LimeSoDa set, out-of-fold on its own folds.

    The VAE is pretrained per fold on that fold's training spectra only (no test spectra seen).
    """
    tables = []
    for name in sc.limesoda:
        ds = read_limesoda(name)
        prep = prepare(ds.spectra, name, limesoda_axis(ds.spectra, sc))
        Y = ds.properties
        log_cols = skewed_columns(Y, sc.skew_threshold)
        oof = {(f, k): np.full(Y.shape, np.nan) for f in ("spectra", "embedding") for k in sc.regressors}
        for fold in tqdm(np.unique(ds.folds), desc=f"LimeSoDa {name}", unit="fold"):
            test, train = np.nonzero(ds.folds == fold)[0], np.nonzero(ds.folds != fold)[0]
            vae, _ = train_vae(prep, train, sc, seed)
            emb = vaemod.embed(vae, prep.means)
            for feats, X in (("spectra", prep.means), ("embedding", emb)):
                for kind in sc.regressors:
                    model = PropertyRegressor(kind, log_cols, sc.pls_max_components, seed).fit(X[train], Y[train])
                    oof[(feats, kind)][test] = model.predict(X[test])
        for (feats, kind), pred in oof.items():
            tables.append(metrics_table(Y, pred, ds.property_names, dataset=name, features=feats, model=kind))
    return pd.concat(tables, ignore_index=True)


def _write_report(folder: Path, sc: SpectralConfig, metrics: pd.DataFrame, lime: pd.DataFrame | None,
                  Y: np.ndarray, test: np.ndarray, test_preds: dict, mir: Prepared, mir_emb: np.ndarray,
                  mir_recon: np.ndarray, nir_parts: NIRParts | None, pair: np.ndarray | None, meta: dict) -> None:
    """Tables (CSV + Markdown) and the quicklook plots."""
    metrics.to_csv(folder / "metrics.csv", index=False)
    axis = axis_values(sc.mir_axis)
    report.plot_pred_vs_obs(Y[test], {f"{f}/{k}": p for (f, k), p in test_preds.items()
                                      if f in ("mir", "mir_embedding")}, sc.properties,
                            folder / "pred_vs_obs_mir_test.png")
    curves = {"measured (SNV)": mir.means[test[:4]], "VAE reconstruction": mir_recon[test[:4]]}
    shown_ids = mir.ids[test[:4]]
    others = None
    if nir_parts is not None and pair is not None:
        nir_emb, converted, ntest = nir_parts.embeddings, nir_parts.converted, nir_parts.test
        rows = ntest[:4]
        curves = {"measured MIR (SNV)": mir.means[pair[rows]], "VAE reconstruction": mir_recon[pair[rows]],
                  "converted from NIR": converted[rows]}
        shown_ids = mir.ids[pair[rows]]
        others = nir_emb[ntest]
        report.plot_pred_vs_obs(Y[pair][ntest], {f"{f}/{k}": p for (f, k), p in test_preds.items()
                                                 if f.startswith("nir")}, sc.properties,
                                folder / "pred_vs_obs_nir_test.png")
    report.plot_reconstructions(axis, curves, shown_ids, folder / "reconstructions.png")
    colour_by = sc.properties.index("organic_c") if "organic_c" in sc.properties else 0
    report.plot_latent(mir_emb, Y[:, colour_by], sc.properties[colour_by], folder / "latent_space.png",
                       others, "NIR->MIR latent (test)")
    summary = (metrics.groupby(["split", "features", "model"], sort=False)[["r2", "rmse", "rpiq", "ccc"]]
               .mean().reset_index())
    sections: list[tuple[str, str | pd.DataFrame]] = [
        ("Setup", f"Library `{meta['library']}`; {len(mir.ids)} MIR samples, independent test set of "
                  f"{len(test)}; VAE latent {meta['latent_dim']}, test reconstruction RMSE (SNV units) "
                  f"{meta['test_reconstruction_rmse']:.4f}; regressors for embed-spectra: {meta['regressors']}. "
                  "The VAE and NIR encoder never see the independent test samples. Cross-validation figures of "
                  "the nir_to_mir features are optimistic (the NIR encoder was fitted on those samples): judge "
                  "NIR->MIR on the independent test set."),
        ("Mean over properties", summary),
        ("Independent test set, per property", metrics[metrics.split == "test"].drop(columns="split")),
        ("Cross-validation on the training set, per property", metrics[metrics.split == "cv"].drop(columns="split")),
    ]
    if lime is not None:
        lime.to_csv(folder / "limesoda_metrics.csv", index=False)
        report.plot_metric_bars(lime, "ccc", "dataset", folder / "limesoda_ccc.png")
        verdict = []
        for name, sub in lime.groupby("dataset", sort=False):
            base = sub[(sub.features == "spectra") & (sub.model == "plsr")].set_index("property")["ccc"]
            best = sub[sub.features == "embedding"].groupby("property")["ccc"].max()
            wins = [p for p in base.index if best[p] >= base[p]]
            verdict.append(f"- {name}: embeddings (best of PLSR/MLP) match or beat PLSR on the spectra for "
                           f"{len(wins)}/{len(base)} properties ({', '.join(wins) or 'none'}); mean CCC "
                           f"{best.mean():.3f} vs PLSR {base.mean():.3f}.")
        sections += [("LimeSoDa (real data, own folds, out-of-fold)", "\n".join(verdict)),
                     ("LimeSoDa per property", lime)]
    report.write_markdown(folder / "report.md", "Spectral models report", sections)
    log.info("spectral report written to %s", folder)
