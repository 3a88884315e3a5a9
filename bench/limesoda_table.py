"""The per-set real-data table: every LimeSoDa set with spectra, on its own predefined folds (out of
fold). Cross-set embeddings (an encoder pretrained on the other sets of the same sensor family, chosen
on held-out pool reconstruction only) against PLSR on the spectra; per outer fold and property the
regressor is chosen by inner CV on the training rows, with CV+ 90% intervals. Writes R2, RMSE, RPIQ,
CCC, interval coverage and width per property, the choices made, the pretraining log (time, memory,
reconstruction against PCA at the same latent size), out-of-fold predictions with their intervals,
and the before/after Markdown table (before: `limesoda_metrics.csv` of the earlier VAE in --before).

    OMP_NUM_THREADS=1 .venv/bin/python bench/limesoda_table.py --out bench/results/limesoda

Settings are fixed before the run and the same for every set (nothing is chosen on test folds).
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
from pathlib import Path

import pandas as pd
import torch

from misomap.spectra.config import SpectralConfig
from misomap.spectra.limesoda import LIMESODA_SPECTRAL_SETS
from misomap.spectral.limesoda import (
    TRACKS,
    EncoderSettings,
    SelectionSettings,
    evaluate_selected,
    plan_limesoda,
    pretrain_cross,
)
from misomap.spectral.report import markdown_table

log = logging.getLogger("limesoda_table")
PREFIX = "selected_"


def _mean_over_properties(metrics: pd.DataFrame, value: str) -> pd.DataFrame:
    wide = metrics.pivot_table(index="dataset", columns="track", values=value, aggfunc="mean", sort=False)
    return wide[[t for t in TRACKS if t in wide.columns]]


def summary_text(metrics: pd.DataFrame, pretraining: pd.DataFrame, choices: pd.DataFrame,
                 before: pd.DataFrame | None, header: list[str]) -> str:
    """The Markdown report: before/after mean CCC per set, verdicts, reconstruction, coverage, choices."""
    ccc = _mean_over_properties(metrics, "ccc")
    table = ccc.copy()
    if before is not None:
        old = before.pivot_table(index="dataset", columns=["features", "model"], values="ccc", aggfunc="mean")
        old.columns = [f"before {f}/{m}" for f, m in old.columns]
        keep = [c for c in ("before spectra/plsr", "before vae_cross/plsr") if c in old.columns]
        table = old[keep].join(table, how="right")
    table = table.loc[ccc.index]
    wins = ccc["embedding/chosen"] >= ccc["spectra/plsr"]
    table["embedding/chosen - spectra/plsr"] = ccc["embedding/chosen"] - ccc["spectra/plsr"]
    mean_row = table.mean(numeric_only=True).to_frame("mean").T
    table = pd.concat([table, mean_row])
    cov = _mean_over_properties(metrics, "coverage")
    per_prop = metrics[metrics.track == "embedding/chosen"].pivot_table(index="dataset", columns="property",
                                                                        values="coverage", sort=False)
    n = metrics.groupby("dataset", sort=False)["n"].max()
    cov_table = cov.join(n.rename("n"))
    cov_table["within 87-93% (embedding/chosen)"] = [
        "-" if n[d] < 60 else ("yes" if 0.87 <= cov.loc[d, "embedding/chosen"] <= 0.93 else "no") for d in cov.index]
    recon = pretraining[["dataset", "pool_samples", "channels", "latent", "epochs", "holdout_mse",
                         "holdout_pca_mse", "target_mse", "target_pca_mse"]].copy()
    recon["holdout ratio"] = recon.holdout_mse / recon.holdout_pca_mse
    recon["target ratio"] = recon.target_mse / recon.target_pca_mse
    for col in ("holdout_mse", "holdout_pca_mse", "target_mse", "target_pca_mse"):
        recon[col] = recon[col].map(lambda v: f"{v:.2e}")
    cost = pretraining[["dataset", "donors", "pool_spectra", "axis", "epochs", "seconds", "python_peak_mb",
                        "process_peak_rss_mb"]]
    chosen = choices[choices.track == "embedding/chosen"].copy()
    chosen["features"] = chosen.chosen.str.split("/").str[0]
    chosen["regressor"] = chosen.chosen.str.split("/").str[1].str.rstrip("0123456789")
    picks = pd.crosstab(chosen.dataset, [chosen.features, chosen.regressor]).loc[ccc.index]
    picks.columns = [f"{f}/{r}" for f, r in picks.columns]
    text = [*header, "",
            "## Mean CCC over properties (out of fold, LimeSoDa's own 10 folds)", "",
            markdown_table(table.reset_index(names="dataset")), "",
            (f"embedding/chosen >= spectra/plsr on {int(wins.sum())}/{len(wins)} sets "
            f"({', '.join(ccc.index[wins])}); short on {', '.join(ccc.index[~wins]) or 'none'}. "
            f"Mean over sets: embedding/chosen {ccc['embedding/chosen'].mean():.3f}, "
            f"spectra/plsr {ccc['spectra/plsr'].mean():.3f}."), "",
            "## 90% CV+ intervals: out-of-fold coverage (mean over properties)", "",
            markdown_table(cov_table.reset_index(names="dataset")), "",
            "Per property (embedding/chosen):", "", markdown_table(per_prop.reset_index()), "",
            "## Encoder reconstruction against PCA at the same latent size (standardised MSE)", "",
            ("`holdout`: pool samples held out of the encoder's training (the early-stopping set); `target`: "
            "every spectrum of the evaluated set, which the encoder never saw; PCA fitted on the same pool "
            "samples as the encoder."), "", markdown_table(recon), "",
            "## Pretraining cost (one encoder per set; wall clock on a shared CPU, one thread)", "",
            markdown_table(cost), "",
            "## What the inner CV chose for embedding/chosen (outer folds x properties)", "",
            markdown_table(picks.reset_index()), ""]
    return "\n".join(text) + "\n"


ENCODER_VARIANTS: dict[str, EncoderSettings] = {
    "mlp_vae": EncoderSettings(linear=False, beta=1e-3, learning_rate=1e-3, patience=20),
    "pca+residual lr1e-3 beta1e-4": EncoderSettings(),
    "pca+residual lr1e-4 beta1e-4": EncoderSettings(learning_rate=1e-4, patience=30),
    "pca+residual lr1e-4 beta0": EncoderSettings(learning_rate=1e-4, beta=0.0, patience=30),
}
"""Encoder designs compared on held-out pool reconstruction only (no property is read)."""


def encoder_sweep(names: list[str], step: float, out: Path) -> pd.DataFrame:
    """Each variant pretrained on each set's cross-set pool; held-out pool and target-set reconstruction
    against PCA at the same latent size. The default encoder is chosen from this table alone."""
    sc = SpectralConfig(limesoda=tuple(names), limesoda_step=step)
    plan = plan_limesoda(tuple(names), sc)
    rows = []
    for name in names:
        for variant, enc in ENCODER_VARIANTS.items():
            _, _, row = pretrain_cross(plan, name, enc, seed=0)
            rows.append({"variant": variant, **row})
            log.warning("%s %s: held-out %.5f (PCA %.5f), %d epochs", name, variant, row["holdout_mse"],
                        row["holdout_pca_mse"], row["epochs"])
    table = pd.DataFrame(rows)
    table["holdout_ratio"] = table.holdout_mse / table.holdout_pca_mse
    table["target_ratio"] = table.target_mse / table.target_pca_mse
    table.to_csv(out / f"{PREFIX}encoder_sweep.csv", index=False, float_format="%.6g")
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/out/limesoda"))
    ap.add_argument("--before", type=Path, default=Path("bench/results/limesoda/limesoda_metrics.csv"))
    ap.add_argument("--sets", nargs="*", default=list(LIMESODA_SPECTRAL_SETS))
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--inner-folds", type=int, default=4)
    ap.add_argument("--step", type=float, default=8.0, help="channel spacing, cm-1 or nm")
    ap.add_argument("--summarise", nargs="*", type=Path, default=None, metavar="DIR",
                    help="only write the Markdown in --out from the CSVs of these runs' --out folders "
                         "(e.g. the MIR and vis-NIR sets run as two processes)")
    ap.add_argument("--note", default="", help="a line added under the header (how the run was made)")
    ap.add_argument("--encoder-sweep", nargs="+", default=None, metavar="SET",
                    help="only compare encoder designs on these sets' pools (held-out reconstruction)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.encoder_sweep:
        table = encoder_sweep(args.encoder_sweep, args.step, out)
        shown = table[["dataset", "variant", "epochs", "seconds", "holdout_mse", "holdout_pca_mse", "holdout_ratio",
                       "target_ratio"]].copy()
        for col in ("holdout_mse", "holdout_pca_mse"):
            shown[col] = shown[col].map(lambda v: f"{v:.2e}")
        print(markdown_table(shown))
        return
    enc, sel = EncoderSettings(latent_dim=args.latent), SelectionSettings(inner_folds=args.inner_folds)
    header = ["# LimeSoDa per-set table: cross-set embeddings with inner-CV-chosen regressors", "",
              (f"Command: `OMP_NUM_THREADS=1 .venv/bin/python bench/limesoda_table.py --out {out}`. "
              f"Axes every {args.step:g} cm-1 / nm. Encoder: {enc}. Selection: {sel}. "
              "Columns: `spectra/plsr` PLSR on the spectra (components by inner CV); `spectra/chosen` "
              "PLSR or ridge on the spectra; `embedding/plsr` PLSR on the cross-set embeddings; "
              "`embedding/chosen` any regressor on the embeddings or the embeddings concatenated with the "
              "spectra; `before ...` the earlier table (VAE, `limesoda_metrics.csv`).")]
    if args.note:
        header.append(f"\n{args.note}")
    files = {k: out / f"{PREFIX}{k}.csv" for k in ("metrics", "choices", "pretraining", "predictions")}
    if args.summarise is None:
        sc = SpectralConfig(limesoda=tuple(args.sets), limesoda_step=args.step)
        plan = plan_limesoda(tuple(args.sets), sc)           # every set read and checked first
        t0 = time.perf_counter()
        parts: dict[str, list[pd.DataFrame]] = {k: [] for k in files}
        for name in args.sets:                                # one set at a time: partial results survive
            r = evaluate_selected(plan, name, enc, sel, sc.skew_threshold, seed=0)
            parts["metrics"].append(r.metrics)
            parts["choices"].append(r.choices)
            parts["pretraining"].append(pd.DataFrame([r.pretraining]))
            parts["predictions"].append(r.predictions[r.predictions.track == "embedding/chosen"])
            for k, f in files.items():
                pd.concat(parts[k], ignore_index=True).to_csv(f, index=False, float_format="%.6g")
            log.warning("%s done after %.0f s (peak RSS %.0f MB)", name, time.perf_counter() - t0,
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        header.append(f"\nTotal {time.perf_counter() - t0:.0f} s wall clock for {len(args.sets)} sets; process peak "
                      f"RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB.")
    sources = args.summarise or [out]
    metrics, pretraining, choices = (pd.concat([pd.read_csv(d / files[k].name) for d in sources], ignore_index=True)
                                     for k in ("metrics", "pretraining", "choices"))
    if args.summarise:
        pd.concat([pd.read_csv(d / files["predictions"].name) for d in sources]).to_csv(
            files["predictions"], index=False, float_format="%.6g")
        for k, frame in (("metrics", metrics), ("pretraining", pretraining), ("choices", choices)):
            frame.to_csv(files[k], index=False, float_format="%.6g")
    before = pd.read_csv(args.before) if args.before.exists() else None
    text = summary_text(metrics, pretraining, choices, before, header)
    (out / f"{PREFIX}table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
