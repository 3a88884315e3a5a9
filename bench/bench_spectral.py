"""Benchmark embed-spectra: throughput (spectra/s) of the chunked dask job against a per-spectrum
loop, as a ratio, and peak memory of the job at two library sizes (it should stay flat), next to
reading the whole library into memory (which grows).

    .venv/bin/python bench/bench_spectral.py [--sizes 4000 16000] [--loop 300]

Each size runs in its own subprocess so its peak RSS is its own. No absolute-time claims: the
printed ratios come from one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _config(work: Path, library: str, chunk: int):
    from misomap.config import config_from_dict

    return config_from_dict({"workdir": str(work), "spectral": {
        "library": library, "models": str(work / "models"), "embeddings": str(work / "emb.zarr"),
        "chunk_size": chunk, "local_processes": False, "local_workers": 2, "limesoda": []}})


def prepare(work: Path, n: int) -> None:
    """A synthetic library of n samples and a model bundle (untrained weights: speed is the same)."""
    import torch

    from misomap.jobs.train_spectral import spectral_run
    from misomap.spectral.store import save_models
    from misomap.models.spectral.regressors import PropertyRegressor, regressor_to_bytes
    from misomap.models.spectral.serialization import module_to_bytes
    from misomap.models.spectral.vae import SpectralVAE, VAEArch, arch_dict
    from misomap.spectra.library import write_library
    from misomap.spectra.synthetic import synthetic_library

    cfg = _config(work, str(work / "lib.zarr"), 1024)
    sc = cfg.spectral
    write_library(synthetic_library(n, 0.05, 1, sc.mir_axis, sc.nir_axis, seed=1), str(work / "lib.zarr"),
                  chunk_rows=sc.chunk_size)
    torch.manual_seed(0)
    vae = SpectralVAE(VAEArch(sc.mir_axis.size, sc.vae.latent_dim, sc.vae.hidden)).eval()
    rng = np.random.default_rng(0)
    reg = PropertyRegressor("plsr", max_components=8).fit(rng.normal(size=(200, sc.vae.latent_dim)),
                                                 rng.normal(size=(200, len(sc.properties))))
    save_models(spectral_run(cfg), {"mir_vae.safetensors": module_to_bytes(vae, "mir_vae", arch_dict(vae.arch)),
                      "mir_regressor.skops": regressor_to_bytes(reg)},
                {"files": ["mir_vae.safetensors", "mir_regressor.skops"], "properties": list(sc.properties),
                 "mir_axis": sc.mir_axis.model_dump(), "nir_axis": sc.nir_axis.model_dump(),
                 "latent_dim": sc.vae.latent_dim, "log_columns": []})


def run_job(work: Path) -> dict:
    """Time the embed job (thread cluster in this process) and report this process's peak RSS."""
    from misomap.jobs.embed_spectra import embed_spectra

    cfg = _config(work, str(work / "lib.zarr"), 1024)
    t0 = time.perf_counter()
    summary = embed_spectra(cfg)
    seconds = time.perf_counter() - t0
    return {"rows": summary.rows, "seconds": seconds, "peak_mb": _peak_mb()}


def run_whole(work: Path) -> dict:
    """Peak RSS of reading the whole library at once (what the chunked job avoids)."""
    from misomap.spectra.library import read_library

    lib = read_library(str(work / "lib.zarr"))
    return {"rows": len(lib.sample_id), "peak_mb": _peak_mb()}


def run_loop(work: Path, n: int) -> dict:
    """The naive way: one spectrum at a time (read, preprocess, embed, predict)."""
    from misomap.spectral.prepare import prepare as prep
    from misomap.spectral.embed import make_plan
    from misomap.spectral.store import load_models
    from misomap.models.spectral.regressors import regressor_from_bytes
    from misomap.models.spectral.serialization import load_state, read_metadata
    from misomap.models.spectral.vae import embed, vae_from_arch
    from misomap.spectra.library import open_library_group, read_sensor

    import torch

    torch.set_num_threads(1)
    cfg = _config(work, str(work / "lib.zarr"), 1024)
    models, meta = load_models(cfg)
    plan = make_plan(cfg, models, meta)
    blob = models["mir_vae.safetensors"]
    vae = load_state(vae_from_arch(read_metadata(blob)[1]), blob)
    reg = regressor_from_bytes(models["mir_regressor.skops"])
    group = open_library_group(plan.library, None)
    t0 = time.perf_counter()
    for i in range(n):
        spectra = read_sensor(group, "mir", i, i + 1)
        reg.predict(embed(vae, prep(spectra, "mir", plan.axis).means))
    return {"rows": n, "seconds": time.perf_counter() - t0}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(mode: str, work: Path, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--work", str(work), "--loop", str(n)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[4000, 16000])
    parser.add_argument("--loop", type=int, default=300, help="spectra timed in the per-spectrum loop")
    parser.add_argument("--child", choices=["prepare", "job", "whole", "loop"])
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.child:
        import logging

        logging.disable(logging.WARNING)
        result = {"prepare": lambda: prepare(args.work, args.loop) or {}, "job": lambda: run_job(args.work),
                  "whole": lambda: run_whole(args.work), "loop": lambda: run_loop(args.work, args.loop)}[args.child]()
        print(json.dumps(result))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            work = Path(tmp) / f"n{size}"
            _child("prepare", work, size)
            job = _child("job", work, 0)
            whole = _child("whole", work, 0)
            rows.append((size, job, whole))
        loop = _child("loop", Path(tmp) / f"n{args.sizes[0]}", args.loop)
    loop_rate = loop["rows"] / loop["seconds"]
    print(f"per-spectrum loop: {loop_rate:.1f} spectra/s over {loop['rows']} spectra")
    print(f"{'spectra':>8} {'job spectra/s':>14} {'ratio vs loop':>14} {'job peak MB':>12} {'whole-read peak MB':>19}")
    for size, job, whole in rows:
        rate = job["rows"] / job["seconds"]
        print(f"{size:>8} {rate:>14.0f} {rate / loop_rate:>13.1f}x {job['peak_mb']:>12.0f} {whole['peak_mb']:>19.0f}")
    (s1, j1, w1), (s2, j2, w2) = rows
    print(f"library x{s2 / s1:.0f}: job peak memory x{j2['peak_mb'] / j1['peak_mb']:.2f}, "
          f"whole-read peak memory x{w2['peak_mb'] / w1['peak_mb']:.2f}")


if __name__ == "__main__":
    main()
