"""train-spectral: fit the MIR VAE, the NIR encoder and the property regressors on a spectral
library, evaluate every feature set (cross-validation plus an independent test set, and the real
LimeSoDa datasets on their own folds), save the models and write the report.

Every input (library, pretraining library, LimeSoDa sets) is read and checked before any training;
the model axes are the configured ones narrowed to what the spectra cover."""

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

from misomap.spectral import report as report
from misomap.spectral.limesoda import mean_ccc_table, plan_limesoda, run_limesoda, verdict_lines
from misomap.spectral.prepare import Prepared, fit_mir_vae, prepare, schedule, train_vae_rows
from misomap.spectral.store import SpectralRun, ensure_library, save_models, spectral_paths, spectral_section
from misomap.models.spectral import nir as nirmod
from misomap.models.spectral import vae as vaemod
from misomap.models.spectral.metrics import metrics_table
from misomap.models.spectral.regressors import (CVPlusRegressor, PropertyRegressor, RegressorKind,
                                                composition_columns, regressor_to_bytes)
from misomap.models.spectral.serialization import module_to_bytes
from misomap.spectra.config import AxisSpec, SpectralConfig
from misomap.spectra.errors import LibraryFormatError, SpectralGridError, SpectralValueError
from misomap.spectra.library import (open_library_group, pair_rows, read_library, read_sensor,
                                     sensor_rows)
from misomap.spectra.preprocess import (axis_range, axis_values, check_unit, common_axis)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class PretrainLibrary:
    """An unlabelled MIR library on Zarr the VAE also pretrains on (checked, not yet read)."""

    url: str
    options: dict | None
    rows: int
    chunk_rows: int
    range: tuple[float, float]
    megabytes: float


def open_pretrain_library(url: str, options: dict | None) -> PretrainLibrary:
    """Open and check the pretraining library's MIR sensor without reading its spectra."""
    group = open_library_group(url, options)
    n = sensor_rows(group, "mir")
    if n < 2:
        raise SpectralValueError(f"pretraining library {url}: {n} MIR sample(s); a library of one sample "
                                 "cannot pretrain anything: point spectral.pretrain_library at the full library")
    spectra = group["mir"]["spectra"]
    if spectra.attrs.get("unit") != "cm-1":
        raise SpectralGridError(f"pretraining library {url}: its 'mir' spectra are on a {spectra.attrs.get('unit')} "
                                "axis, not cm-1: pretrain the MIR VAE on MIR spectra")
    axis = np.asarray(group["mir"]["axis"][:])
    return PretrainLibrary(url, options, n, int(spectra.chunks[0]), axis_range(axis),
                           float(np.prod(spectra.shape)) * 4 / 2**20)


def stream_batches(lib: PretrainLibrary, axis: AxisSpec, extra: Prepared, extra_rows: np.ndarray,
                   batch_size: int, seed: int) -> tuple[vaemod.BatchSource, np.ndarray, np.ndarray, int]:
    """Stream the pretraining library chunk by chunk (plus the in-memory training scans `extra`).

    A first pass checks every chunk and computes the channel mean and scale; each epoch then visits
    the chunks in a new random order, shuffling within a chunk. Memory holds one chunk at a time.
    Returns (batch source, mean, scale, batches per epoch).
    """
    group = open_library_group(lib.url, lib.options)
    starts = list(range(0, lib.rows, lib.chunk_rows))
    keep = np.isin(extra.scan_rows, extra_rows)
    ex_scans, ex_rows = extra.scans[keep], extra.scan_rows[keep]

    def chunk(i: int) -> Prepared:
        start = starts[i]
        stop = min(lib.rows, start + lib.chunk_rows)
        return prepare(read_sensor(group, "mir", start, stop), f"pretraining library {lib.url} rows {start}..{stop - 1}",
                       axis)

    total = np.zeros(axis.size)
    total_sq = np.zeros(axis.size)
    count, batches_per_epoch = 0, math.ceil(len(ex_scans) / batch_size)
    for i in tqdm(range(len(starts)), desc="pretraining library: check and statistics", unit="chunk"):
        scans = chunk(i).scans.astype(np.float64)
        total += scans.sum(0)
        total_sq += (scans ** 2).sum(0)
        count += len(scans)
        batches_per_epoch += math.ceil(len(scans) / batch_size)
    total += ex_scans.sum(0)
    total_sq += (ex_scans.astype(np.float64) ** 2).sum(0)
    count += len(ex_scans)
    mean = total / count
    scale = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0))

    def batches(epoch: int):
        rng = np.random.default_rng([seed, epoch])
        for i in rng.permutation(len(starts) + 1):
            if i == len(starts):
                scans, rows = ex_scans, ex_rows
            else:
                part = chunk(int(i))
                scans, rows = part.scans, part.scan_rows
            yield from vaemod.in_memory_batches(scans, rows, batch_size, seed + epoch)(0)

    return batches, mean, scale, batches_per_epoch


def cv_and_test(X: np.ndarray, Y: np.ndarray, train: np.ndarray, test: np.ndarray, kind: RegressorKind,
                comp: tuple[int, ...], sc: SpectralConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold predictions on `train` rows and predictions on `test` rows (fit on all of train);
    log(1+x) is chosen inside every fit from its own training rows."""
    oof = np.full((len(train), Y.shape[1]), np.nan)
    for fit_idx, val_idx in KFold(sc.cv_folds, shuffle=True, random_state=seed).split(train):
        model = PropertyRegressor(kind, sc.skew_threshold, sc.pls_max_components, seed, comp)
        oof[val_idx] = model.fit(X[train[fit_idx]], Y[train[fit_idx]]).predict(X[train[val_idx]])
    model = PropertyRegressor(kind, sc.skew_threshold, sc.pls_max_components, seed, comp).fit(X[train], Y[train])
    return oof, model.predict(X[test])


@dataclass(frozen=True)
class TrainResult:
    """What train-spectral produced."""

    models: str
    report: Path
    metrics: pd.DataFrame
    limesoda: pd.DataFrame | None


def train(cfg: SpectralRun) -> TrainResult:
    """Train, evaluate, save and report; see the module docstring."""
    sc = spectral_section(cfg)
    torch.set_num_threads(sc.torch_threads)
    paths = spectral_paths(cfg)
    url = ensure_library(cfg)
    # -- every input read and checked before any training --
    lib = read_library(url, cfg.storage.options_for(url))
    if "mir" not in lib.sensors:
        raise LibraryFormatError(f"library {url} has no 'mir' sensor; it has {sorted(lib.sensors)}")
    mir_raw = lib.sensors["mir"]
    Y = lib.targets(sc.properties, mir_raw.sample_id)
    nir_raw = lib.sensors.get("nir")
    pair = pair_rows(mir_raw.sample_id, nir_raw.sample_id) if nir_raw is not None else None
    check_unit(mir_raw, "cm-1", "mir")
    if nir_raw is not None:
        check_unit(nir_raw, "nm", "nir")
    pre = None
    mir_ranges = {f"library {url} mir": axis_range(mir_raw.axis)}
    if sc.pretrain_library is not None:
        pre = open_pretrain_library(sc.pretrain_library, cfg.storage.options_for(sc.pretrain_library))
        mir_ranges[f"pretraining library {pre.url}"] = pre.range
    mir_axis = common_axis(mir_ranges, sc.mir_axis)
    nir_axis = sc.nir_axis
    if nir_raw is not None:
        nir_axis = common_axis({f"library {url} nir": axis_range(nir_raw.axis)}, sc.nir_axis)
    min_samples = max(10, 2 * sc.cv_folds + 2)
    mir = prepare(mir_raw, "mir", mir_axis, min_samples)
    nir = prepare(nir_raw, "nir", nir_axis, sc.cv_folds + 2) if nir_raw is not None else None
    stream = pre is not None and pre.megabytes > sc.vae.stream_above_mb
    pre_mir = None
    if pre is not None and not stream:
        group = open_library_group(pre.url, pre.options)
        pre_mir = prepare(read_sensor(group, "mir"), f"pretraining library {pre.url}", mir_axis, 2)
    lime_plan = plan_limesoda(tuple(sc.limesoda), sc) if sc.limesoda else None
    log.info("inputs checked: MIR axis %g..%g (%d channels)%s", mir_axis.start, mir_axis.stop, mir_axis.size,
             f", pretraining library {pre.rows} samples ({pre.megabytes:.0f} MB, "
             f"{'streamed' if stream else 'in memory'})" if pre else "")

    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(mir.ids))
    n_test = max(1, int(round(sc.test_fraction * len(order))))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    comp = composition_columns(sc.properties)
    log.info("MIR: %d train / %d independent test samples; texture as composition: %s", len(train), len(test),
             bool(comp))

    vae, vae_hist = _pretrain(mir, train, pre, pre_mir, stream, mir_axis, sc, cfg.seed)
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
            oof, pred = cv_and_test(X, Yf, tr, te, kind, comp, sc, cfg.seed)
            tables.append(metrics_table(Yf[tr], oof, sc.properties, features=name, model=kind, split="cv"))
            tables.append(metrics_table(Yf[te], pred, sc.properties, features=name, model=kind, split="test"))
            test_preds[(name, kind)] = pred
    metrics = pd.concat(tables, ignore_index=True)

    chosen, log_columns, interval_rows = {}, [], []
    for name, file in (("mir_embedding", "mir_regressor.skops"), ("nir_to_mir_embedding", "nir_regressor.skops")):
        if name not in features:
            continue
        cv = metrics[(metrics.features == name) & (metrics.split == "cv")]
        kind = cv.groupby("model")["ccc"].mean().idxmax()
        X, Yf, tr, _ = features[name]
        model = CVPlusRegressor(kind, sc.skew_threshold, sc.pls_max_components, cfg.seed, comp, sc.cv_folds,
                                sc.interval_alpha).fit(X[tr], Yf[tr])
        files[file] = regressor_to_bytes(model)
        chosen[name] = kind
        log_columns = [sc.properties[j] for j in model.log_columns_]
        lower, upper = model.predict_interval(X[te])
        inside = (Yf[te] >= lower) & (Yf[te] <= upper)
        measured = ~np.isnan(Yf[te])
        interval_rows.append(pd.DataFrame({
            "features": name, "model": kind, "property": list(sc.properties), "n": measured.sum(0),
            "coverage": [float(inside[measured[:, j], j].mean()) if measured[:, j].any() else float("nan")
                         for j in range(len(sc.properties))],
            "mean_width": [float(np.mean((upper - lower)[measured[:, j], j])) if measured[:, j].any()
                           else float("nan") for j in range(len(sc.properties))]}))

    meta = {"files": sorted(files), "properties": list(sc.properties), "log_columns": log_columns,
            "mir_axis": mir_axis.model_dump(), "nir_axis": nir_axis.model_dump(),
            "latent_dim": sc.vae.latent_dim, "library": url, "regressors": chosen, "seed": cfg.seed,
            "pretrain_library": sc.pretrain_library, "texture_composition": bool(comp),
            "test_reconstruction_rmse": recon_rmse, "vae_final_loss": vae_hist[-1],
            "prediction_interval": {"method": "CV+", "coverage": 1 - sc.interval_alpha, "folds": sc.cv_folds}}
    models_at = save_models(cfg, files, meta)

    lime, pretraining = run_limesoda(lime_plan, sc, cfg.seed) if lime_plan is not None else (None, None)
    folder = Path(paths.report)
    folder.mkdir(parents=True, exist_ok=True)
    intervals = pd.concat(interval_rows, ignore_index=True) if interval_rows else None
    _write_report(folder, sc, metrics, lime, pretraining, Y, test, test_preds, mir, mir_emb, mir_recon,
                  nir_parts, pair, meta, intervals)
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


def _pretrain(mir: Prepared, train: np.ndarray, pre: PretrainLibrary | None, pre_mir: Prepared | None,
              stream: bool, axis: AxisSpec, sc: SpectralConfig, seed: int) -> tuple[vaemod.SpectralVAE, list[float]]:
    """The MIR VAE on the library's training scans plus, when configured, the pretraining library
    (in memory, or streamed from Zarr when larger than spectral.vae.stream_above_mb)."""
    if pre is None:
        return train_vae_rows(mir, train, sc, seed)
    arch = vaemod.VAEArch(axis.size, sc.vae.latent_dim, sc.vae.hidden, sc.vae.linear)
    if not stream:
        keep = np.isin(mir.scan_rows, train)
        scans = np.concatenate([pre_mir.scans, mir.scans[keep]])
        rows = np.concatenate([pre_mir.scan_rows, mir.scan_rows[keep] + len(pre_mir.ids)])
        return fit_mir_vae(scans, rows, arch, schedule(sc.vae, len(scans), seed))
    batches, mean, scale, per_epoch = stream_batches(pre, axis, mir, train, sc.vae.batch_size, seed)
    sched = schedule(sc.vae, per_epoch * sc.vae.batch_size, seed)
    model = vaemod.new_vae(arch, mean, scale)
    if arch.linear:         # PCA start from the in-memory training spectra (the library is streamed)
        vaemod.init_from_pca(model, mir.means[train])
    model, history = vaemod.train_vae(model, batches, sched, per_epoch, desc="MIR VAE (streamed)")
    log.info("MIR VAE streamed from %s: %d epochs of %d batches, loss %.4f -> %.4f", pre.url, sched.epochs,
             per_epoch, history[0], history[-1])
    return model, history


def _write_report(folder: Path, sc: SpectralConfig, metrics: pd.DataFrame, lime: pd.DataFrame | None,
                  pretraining: pd.DataFrame | None, Y: np.ndarray, test: np.ndarray, test_preds: dict, mir: Prepared, mir_emb: np.ndarray,
                  mir_recon: np.ndarray, nir_parts: NIRParts | None, pair: np.ndarray | None, meta: dict,
                  intervals: pd.DataFrame | None = None) -> None:
    """Tables (CSV + Markdown) and the quicklook plots."""
    metrics.to_csv(folder / "metrics.csv", index=False)
    axis = axis_values(AxisSpec(**meta["mir_axis"]))
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
    if intervals is not None:
        intervals.to_csv(folder / "intervals.csv", index=False)
        sections.append((f"Saved regressors: {1 - sc.interval_alpha:.0%} CV+ intervals on the independent test set "
                         "(coverage and mean width per property; embed-spectra writes these bounds)", intervals))
    if lime is not None:
        lime.to_csv(folder / "limesoda_metrics.csv", index=False)
        report.plot_metric_bars(lime, "ccc", "dataset", folder / "limesoda_ccc.png")
        sections += [("LimeSoDa (real data, own folds, out of fold): mean CCC over properties", mean_ccc_table(lime)),
                     ("LimeSoDa verdict", "\n".join(verdict_lines(lime)))]
        if pretraining is not None and len(pretraining):
            sections.append(("LimeSoDa cross-set pretraining pools", pretraining))
        sections.append(("LimeSoDa per property", lime))
    report.write_markdown(folder / "report.md", "Spectral models report", sections)
    log.info("spectral report written to %s", folder)
