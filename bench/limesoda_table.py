"""The per-set real-data table: every LimeSoDa set with spectra, on its own predefined folds (out of
fold), PLSR and MLP on the spectra, on per-fold VAE embeddings and on cross-set VAE embeddings;
R2, RMSE, CCC per property to CSV, mean CCC per set to Markdown, pretraining time and peak memory.

    nice -n 5 .venv/bin/python bench/limesoda_table.py --out bench/out/limesoda [--sets H.138 O.32]

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

from misomap.spectral.limesoda import evaluate_limesoda, mean_ccc_table, verdict_lines
from misomap.spectral.report import markdown_table
from misomap.spectra.config import SpectralConfig
from misomap.spectra.limesoda import LIMESODA_SPECTRAL_SETS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/out/limesoda"))
    ap.add_argument("--sets", nargs="*", default=list(LIMESODA_SPECTRAL_SETS))
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    ap.add_argument("--min-steps", type=int, default=600)
    ap.add_argument("--finetune-steps", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--regressors", nargs="+", default=["plsr", "mlp"])
    ap.add_argument("--step", type=float, default=8.0, help="channel spacing, cm-1 or nm")
    ap.add_argument("--no-cross", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    sc = SpectralConfig(vae={"latent_dim": args.latent, "hidden": args.hidden, "min_steps": args.min_steps,
                             "finetune_steps": args.finetune_steps, "epochs": args.epochs},
                        regressors=tuple(args.regressors), limesoda=tuple(args.sets), pls_max_components=20,
                        limesoda_cross=not args.no_cross, limesoda_step=args.step)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    parts, pools = [], []
    for name in args.sets:                      # one set at a time: partial results survive a stop
        metrics, pretraining = evaluate_limesoda(sc, seed=0, names=(name,))
        parts.append(metrics)
        pools.append(pretraining)
        metrics, pretraining = pd.concat(parts, ignore_index=True), pd.concat(pools, ignore_index=True)
        metrics.to_csv(args.out / "limesoda_metrics.csv", index=False)
        pretraining.to_csv(args.out / "limesoda_pretraining.csv", index=False)
        logging.getLogger("limesoda_table").warning("%s done after %.0f s", name, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    summary = mean_ccc_table(metrics)
    text = ["# LimeSoDa per-set table (real data, own folds, out of fold)", "",
            f"Axes every {args.step:g} cm-1 / nm; VAE latent {args.latent}, hidden {args.hidden}, {args.min_steps} steps (per-fold and pool "
            f"pretraining), {args.finetune_steps} fine-tuning steps; regressors {args.regressors}.", "",
            "## Mean CCC over properties", "", markdown_table(summary), "", *verdict_lines(metrics), "",
            "## Cross-set pretraining", "", markdown_table(pretraining) if len(pretraining) else "(none)", "",
            f"Total {seconds:.0f} s; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB."]
    (args.out / "limesoda_table.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
