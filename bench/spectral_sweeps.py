"""Why cross-set VAE embeddings lose to PLSR on the spectra (issue 18): sweeps of latent size,
pretraining-pool size and the regressor on the embeddings, on LimeSoDa sets with their own folds.

    nice -n 15 .venv/bin/python bench/spectral_sweeps.py --sets H.138 NRW.115 CV.98 SP.231 SSP.460
    .venv/bin/python bench/spectral_sweeps.py --summarise     # tables and figure from the per-set CSVs
(sets may run as separate processes with the same settings; each writes its own CSVs under --parts).

Per set and outer fold (the set's predefined folds; the test fold is never seen by any model):
- baseline: PLSR on the spectra; linear analogue of the bottleneck: PCA(k) of pool + training
  spectra, then PLSR (k as the latent sizes);
- latent sweep: VAE pretrained on the pool (the other sets of the sensor family sharing the range),
  fine-tuned on pool + training spectra, k in --latents, PLSR on the latent means;
- pool sweep: the same at the default latent with the pool subsampled (by sample) to --fractions,
  and fraction 0 = per-fold pretraining on the training spectra only;
- regressor sweep on the default-latent embeddings: PLSR, ridge, RBF kernel ridge, MLP, random forest,
  and PLSR on embeddings concatenated with the spectra;
- nested choices ("select/..."): per outer fold and property, the candidate with the lowest inner
  3-fold CV error on the training rows only; its test-fold predictions are the outcome.
Writes per-property metrics and pretraining time/memory CSVs, a Markdown summary and a PNG.
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.compose import TransformedTargetRegressor
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestRegressor
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from tqdm import tqdm

from misomap.models.spectral import vae as vaemod
from misomap.models.spectral.metrics import metrics_table
from misomap.models.spectral.regressors import PropertyRegressor, base_estimator
from misomap.spectra.config import SpectralConfig
from misomap.spectral.limesoda import _on_axis, plan_limesoda
from misomap.spectral.prepare import schedule, train_vae_rows
from misomap.spectral.report import markdown_table

log = logging.getLogger("spectral_sweeps")
REGRESSORS = ("plsr", "ridge", "krr", "mlp", "rf")


def sweep_estimator(kind: str, n_rows: int, n_features: int, max_components: int, log_target: bool,
                    seed: int) -> BaseEstimator:
    """The package's PLSR/MLP, plus ridge, RBF kernel ridge and a random forest (hyper-parameters by inner CV
    on the fitting rows), with the same target transform (log1p where chosen, standardised)."""
    if kind in ("plsr", "mlp"):
        return base_estimator(kind, n_rows, n_features, max_components, log_target, seed)
    if kind == "ridge":
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    elif kind == "krr":
        model = GridSearchCV(make_pipeline(StandardScaler(), KernelRidge(kernel="rbf")),
                             {"kernelridge__alpha": [1e-2, 1e-1, 1.0],
                              "kernelridge__gamma": [0.1 / n_features, 1.0 / n_features, 10.0 / n_features]},
                             cv=KFold(3, shuffle=True, random_state=seed), scoring="neg_mean_squared_error")
    elif kind == "rf":
        model = RandomForestRegressor(100, min_samples_leaf=2, max_features=0.33, random_state=seed, n_jobs=1)
    else:
        raise ValueError(kind)
    scaler = StandardScaler()
    if log_target:
        scaler = Pipeline([("log1p", FunctionTransformer(np.log1p, np.expm1, check_inverse=False)),
                           ("scale", StandardScaler())])
    return TransformedTargetRegressor(regressor=model, transformer=scaler)


class SweepRegressor(PropertyRegressor):
    """PropertyRegressor (per-target fit, log1p chosen on the fitting rows, ilr texture) over any sweep kind."""

    def _fit_one(self, X: np.ndarray, y: np.ndarray, log_target: bool, what: str) -> BaseEstimator:
        return sweep_estimator(self.kind, len(y), X.shape[1], self.max_components, log_target, self.seed).fit(X, y)


def fit_predict(kind: str, X: np.ndarray, Y: np.ndarray, fit: np.ndarray, pred: np.ndarray, seed: int
                ) -> np.ndarray:
    return SweepRegressor(kind, 1.0, 20, seed).fit(X[fit], Y[fit]).predict(X[pred])


def inner_mse(kind: str, X: np.ndarray, Y: np.ndarray, train: np.ndarray, seed: int) -> np.ndarray:
    """Per-property MSE of inner 3-fold CV predictions on the training rows (selection only)."""
    oof = np.full((len(train), Y.shape[1]), np.nan)
    for a, b in KFold(3, shuffle=True, random_state=seed).split(train):
        oof[b] = fit_predict(kind, X, Y, train[a], train[b], seed)
    return np.nanmean((oof - Y[train]) ** 2, axis=0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_set(name: str, sc: SpectralConfig, latents: list[int], fractions: list[float], default_latent: int,
            seed: int, regressors: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    plan = plan_limesoda((name,), sc)
    ds, own, pool = plan.sets[name], plan.own[name], plan.pools[name]
    Y, names = ds.properties, ds.property_names
    donors = [_on_axis(plan, d, pool) for d in pool.donors]
    target = _on_axis(plan, name, pool)
    d_scans = np.concatenate([d.scans for d in donors])
    d_rows = np.concatenate([d.scan_rows + 1_000_000 * (i + 1) for i, d in enumerate(donors)])
    d_means = np.concatenate([d.means for d in donors])
    samples = np.unique(d_rows)
    rng = np.random.default_rng(seed)
    order = rng.permutation(samples)
    bases, pre_log = {}, []
    configs = [(k, 1.0) for k in latents] + [(default_latent, f) for f in fractions if f < 1.0]
    for k, frac in configs:                       # pretraining: once per set and config, no fold involved
        keep = np.isin(d_rows, order[:max(2, round(frac * len(samples)))])
        t0 = time.perf_counter()
        arch = vaemod.VAEArch(d_scans.shape[1], k, sc.vae.hidden)
        base, hist = vaemod.fit_vae(d_scans[keep], d_rows[keep], arch, schedule(sc.vae, int(keep.sum()), seed))
        bases[(k, frac)] = (base, keep)
        pre_log.append({"dataset": name, "latent": k, "pool_fraction": frac, "pool_spectra": int(keep.sum()),
                        "channels": pool.axis.size, "pool_mb": float(d_scans[keep].nbytes / 2**20),
                        "seconds": time.perf_counter() - t0, "process_peak_rss_mb": peak_rss_mb(),
                        "final_recon_mse": hist[-1]})
    feats: dict[str, np.ndarray] = {}
    tables = []
    oof: dict[str, np.ndarray] = {}

    def put(key: str, test: np.ndarray, pred: np.ndarray) -> None:
        oof.setdefault(key, np.full(Y.shape, np.nan))[test] = pred

    for fold in tqdm(np.unique(ds.folds), desc=f"sweeps {name}", unit="fold"):
        test, train = np.nonzero(ds.folds == fold)[0], np.nonzero(ds.folds != fold)[0]
        feats = {"spectra": own.means}
        unl = np.concatenate([d_means, target.means[train]])          # pool + training spectra, no test rows
        for k in latents:
            feats[f"pca{k}"] = PCA(k, random_state=seed).fit(unl).transform(target.means)
        vae, _ = train_vae_rows(own, train, sc.model_copy(update={"vae": sc.vae.model_copy(
            update={"latent_dim": default_latent})}), seed)
        feats["vae_pool0"] = vaemod.embed(vae, own.means)
        t_keep = np.isin(target.scan_rows, train)
        for (k, frac), (base, keep) in bases.items():
            scans = np.concatenate([d_scans[keep], target.scans[t_keep]])
            rows = np.concatenate([d_rows[keep], target.scan_rows[t_keep]])
            steps = vaemod.Schedule(**{**schedule(sc.vae, len(scans), seed).__dict__,
                                       "epochs": max(1, sc.vae.finetune_steps * sc.vae.batch_size // len(scans))})
            tuned, _ = vaemod.fit_vae(scans, rows, base.arch, steps, init=base)
            key = f"vae{k}" if frac == 1.0 else f"vae_pool{frac:g}"
            feats[key] = vaemod.embed(tuned, target.means)
        emb = feats[f"vae{default_latent}"]
        feats["vae+spectra"] = np.hstack([own.means, emb])
        # -- fixed (reported) combinations --
        plsr_feats = ["spectra", *[f"pca{k}" for k in latents], *[f"vae{k}" for k in latents], "vae_pool0",
                      *[f"vae_pool{f:g}" for f in fractions if f < 1.0], "vae+spectra"]
        for f in plsr_feats:
            put(f"{f}/plsr", test, fit_predict("plsr", feats[f], Y, train, test, seed))
        if not regressors:                        # latent and pool sweeps only (CPU budget)
            err = {f"vae{k}/plsr": inner_mse("plsr", feats[f"vae{k}"], Y, train, seed) for k in latents}
            pred = np.stack([oof[min(err, key=lambda c: err[c][j])][test, j] for j in range(Y.shape[1])], axis=1)
            put("select/latent", test, pred)
            continue
        for kind in REGRESSORS[1:]:
            put(f"vae{default_latent}/{kind}", test, fit_predict(kind, emb, Y, train, test, seed))
        put("spectra/ridge", test, fit_predict("ridge", own.means, Y, train, test, seed))
        # -- nested choices: inner CV on the training rows only --
        cands = {f"vae{k}/plsr": (feats[f"vae{k}"], "plsr") for k in latents}
        cands.update({f"vae{default_latent}/{kind}": (emb, kind) for kind in REGRESSORS[1:]})
        cands.update({"spectra/plsr": (own.means, "plsr"), "vae+spectra/plsr": (feats["vae+spectra"], "plsr")})
        err = {c: inner_mse(kind, X, Y, train, seed) for c, (X, kind) in cands.items()}
        groups = {"select/latent": [f"vae{k}/plsr" for k in latents],
                  "select/regressor": [f"vae{default_latent}/{kind}" for kind in REGRESSORS],
                  "select/any": list(cands)}
        for group, members in groups.items():
            pred = np.full((len(test), Y.shape[1]), np.nan)
            for j in range(Y.shape[1]):
                best = min(members, key=lambda c: err[c][j])
                pred[:, j] = oof[best][test, j]
                log.info("%s fold %s %s %s -> %s", name, fold, group, names[j], best)
            put(group, test, pred)
    for key, pred in oof.items():
        feat, model = key.split("/")
        tables.append(metrics_table(Y, pred, names, dataset=name, features=feat, model=model))
    return pd.concat(tables, ignore_index=True), pd.DataFrame(pre_log)


def summarise(out: Path, parts: Path, latents: list[int], fractions: list[float], default_latent: int) -> str:
    """Mean CCC tables (sets x configurations) and the figure, from the CSVs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = pd.concat([pd.read_csv(p) for p in sorted(parts.glob("*_metrics.csv"))], ignore_index=True)
    pre = pd.concat([pd.read_csv(p) for p in sorted(parts.glob("*_pretraining.csv"))], ignore_index=True)
    m.to_csv(out / "sweep_metrics.csv", index=False, float_format="%.4f")
    pre.to_csv(out / "sweep_pretraining.csv", index=False, float_format="%.4f")
    m["config"] = m["features"] + "/" + m["model"]
    wide = m.pivot_table(index="dataset", columns="config", values="ccc", aggfunc="mean", sort=False)

    def block(cols: list[str]) -> pd.DataFrame:
        """The sets that ran every configuration of the block, plus their mean."""
        part = wide[[c for c in cols if c in wide.columns]].dropna()
        part.loc["mean"] = part.mean()
        return part

    def table(cols: list[str]) -> str:
        part = block(cols)
        wins = [f"{c} {int((part.drop('mean')[c] >= part.drop('mean')['spectra/plsr']).sum())}/{len(part) - 1}"
                for c in part.columns if c != "spectra/plsr"] if "spectra/plsr" in part.columns else []
        note = ["", "Sets where it matches or beats PLSR on spectra: " + ", ".join(wins)] if wins else []
        return "\n".join([markdown_table(part.reset_index()), *note])

    d = default_latent
    lat_cols = ["spectra/plsr", *[f"vae{k}/plsr" for k in latents], "select/latent"]
    pca_cols = ["spectra/plsr", *[f"pca{k}/plsr" for k in latents]]
    frac_cols = ["spectra/plsr", "vae_pool0/plsr", *[f"vae_pool{f:g}/plsr" for f in fractions if f < 1.0], f"vae{d}/plsr"]
    reg_cols = [f"vae{d}/{k}" for k in REGRESSORS] + ["select/regressor", "vae+spectra/plsr", "spectra/plsr",
                                                      "spectra/ridge", "select/any"]
    pre_sum = pre.groupby(["latent", "pool_fraction"]).agg(
        sets=("dataset", "count"), pool_spectra=("pool_spectra", "mean"), seconds_mean=("seconds", "mean"),
        seconds_max=("seconds", "max"), process_peak_rss_mb=("process_peak_rss_mb", "max"),
        recon_mse=("final_recon_mse", "mean")).reset_index()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4), dpi=90)
    curves = block(["spectra/plsr", *[f"vae{k}/plsr" for k in latents], *[f"pca{k}/plsr" for k in latents],
                    "vae_pool0/plsr", *[f"vae_pool{f:g}/plsr" for f in fractions if f < 1.0]])
    for ds_name, row in curves.iterrows():
        style = {"lw": 2.5, "color": "k"} if ds_name == "mean" else {"lw": 1, "alpha": 0.6}
        line, = ax[0].plot(latents, [row[f"vae{k}/plsr"] for k in latents], "o-", label=ds_name, **style)
        ax[0].plot(latents, [row[f"pca{k}/plsr"] for k in latents], "x:", color=line.get_color(),
                   lw=style["lw"] * 0.7)
        ax[0].axhline(row["spectra/plsr"], color=line.get_color(), ls="--", lw=0.8)
        xs = [0.0, *[f for f in fractions if f < 1.0], 1.0]
        ys = [row["vae_pool0/plsr"], *[row[f"vae_pool{f:g}/plsr"] for f in fractions if f < 1.0],
              row[f"vae{d}/plsr"]]
        ax[1].plot(xs, ys, "o-", color=line.get_color(), **{k: v for k, v in style.items() if k != "color"})
        ax[1].axhline(row["spectra/plsr"], color=line.get_color(), ls="--", lw=0.8)
    ax[0].set_xscale("log", base=2)
    ax[0].set_xlabel("latent size (o VAE, x PCA; dashed: PLSR on spectra)")
    ax[0].set_ylabel("mean CCC (test folds)")
    ax[1].set_xlabel("pretraining pool fraction (0 = per-fold only)")
    ax[0].legend(fontsize=6, ncol=2)
    fig.suptitle("LimeSoDa (real spectra), own folds, PLSR on embeddings", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "sweeps.png")
    text = ["# Spectral sweeps on LimeSoDa (real spectra, each set on its own 10 folds, out of fold)", "",
            ("Mean CCC over the set's properties (SOC or SOM, pH, clay); `mean` row = mean over sets. "
            "`select/*`: chosen per outer fold and property by inner 3-fold CV on the training rows only."), "",
            "## Latent size (cross-set VAE, PLSR on latent means)", "", table(lat_cols), "",
            "## Linear bottleneck: PCA(k) of pool + training spectra, then PLSR", "", table(pca_cols), "",
            f"## Pretraining pool size (latent {d}; fraction of the other sets' samples; 0 = per-fold only)", "",
            table(frac_cols), "", f"## Regressor on the latent-{d} embeddings, and combinations", "",
            table(reg_cols), "",
            "## Pretraining (per set; time is wall clock on a shared 2-core CPU, one torch thread)", "",
            markdown_table(pre_sum)]
    return "\n".join(text) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/limesoda"))
    ap.add_argument("--parts", type=Path, default=Path("bench/out/sweeps"), help="per-set CSVs (merged into --out)")
    ap.add_argument("--sets", nargs="*", default=["H.138", "NRW.115", "CV.98", "SP.231", "SSP.460"])
    ap.add_argument("--latents", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--default-latent", type=int, default=32)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 64])
    ap.add_argument("--min-steps", type=int, default=300)
    ap.add_argument("--finetune-steps", type=int, default=100)
    ap.add_argument("--step", type=float, default=8.0)
    ap.add_argument("--no-regressors", action="store_true", help="latent and pool sweeps only (PLSR)")
    ap.add_argument("--summarise", action="store_true", help="only rebuild tables and figure from the CSVs")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarise:
        torch.set_num_threads(1)
        sc = SpectralConfig(vae={"latent_dim": args.default_latent, "hidden": args.hidden,
                                 "min_steps": args.min_steps, "finetune_steps": args.finetune_steps, "epochs": 20},
                            limesoda=tuple(args.sets), pls_max_components=20, limesoda_step=args.step)
        args.parts.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        for name in args.sets:                    # one file per set: partial results survive a stop
            metrics, pre = run_set(name, sc, args.latents, args.fractions, args.default_latent, seed=0,
                                   regressors=not args.no_regressors)
            metrics.to_csv(args.parts / f"{name}_metrics.csv", index=False)
            pre.to_csv(args.parts / f"{name}_pretraining.csv", index=False)
            log.warning("%s done after %.0f s, process peak RSS %.0f MB", name, time.perf_counter() - t0,
                        peak_rss_mb())
    text = summarise(args.out, args.parts, args.latents, args.fractions, args.default_latent)
    (args.out / "sweeps.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
