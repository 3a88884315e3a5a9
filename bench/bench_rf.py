"""RF prediction throughput on one cube chunk, in pixels per second per core (one thread).

    .venv/bin/python bench/bench_rf.py [--cube PATH] [--chunk 512] [--trees 100]

Ours: `misomap.models.rf.predict_chunk` (one vectorised predict over the chunk's valid pixels).
Naive: the per-pixel loop people write first (one predict_proba call per pixel), timed on a
sample and extrapolated, and a row-by-row loop. Prints ratios measured in this run and peak
memory; asserts no absolute time.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from misomap.models.baseline_config import RFConfig  # noqa: E402
from misomap.models.rf import fit_rf, predict_chunk  # noqa: E402

BANDS = ([f"s2_summer_{b}" for b in ("blue", "green", "red", "rededge1", "rededge2", "rededge3",
                                     "nir", "swir16", "swir22")]
         + ["elevation", "aspect", "slope", "max_curvature", "spi", "twi", "tpi",
            "precip_annual", "summer_warmth", "jan_min_temp"])


def _chunk(args: argparse.Namespace) -> tuple[np.ndarray, list[str]]:
    """A (band, C, C) block: from a real cube if given, else smooth synthetic bands with a NaN edge."""
    if args.cube:
        from misomap.core.config_base import StorageConfig
        from misomap.labels.training_table import open_cube_data

        data = open_cube_data(args.cube, StorageConfig())
        c = min(args.chunk, data.sizes["y"], data.sizes["x"])
        return data[:, :c, :c].values.astype(np.float32), [str(b) for b in data["band"].values]
    rng = np.random.default_rng(0)
    c = args.chunk
    base = rng.normal(size=(len(BANDS), c // 16 + 1, c // 16 + 1)).astype(np.float32)
    block = np.repeat(np.repeat(base, 16, axis=1), 16, axis=2)[:, :c, :c]
    block += rng.normal(0, 0.1, block.shape).astype(np.float32)
    block[:, :, : c // 10] = np.nan  # 10 % nodata, as at a coast or swath edge
    return block, BANDS


def _train(block: np.ndarray, bands: list[str], trees: int):
    rng = np.random.default_rng(1)
    flat = block.reshape(len(bands), -1).T
    flat = flat[np.isfinite(flat).all(axis=1)]
    X = flat[rng.choice(len(flat), 3000, replace=False)]
    z = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-9)
    y = np.where(z[:, 0] + z[:, -1] > 0, "1", "0")
    return fit_rf(X, y, bands, "permafrost", RFConfig(n_estimators=trees, n_jobs=1), seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cube", help="a built cube (local Zarr) to take the first chunk from")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--naive-pixels", type=int, default=300)
    args = ap.parse_args()
    block, bands = _chunk(args)
    model = _train(block, bands, args.trees)
    n_px = block.shape[1] * block.shape[2]
    xs = np.arange(block.shape[2], dtype=np.float64)
    ys = np.arange(block.shape[1], dtype=np.float64)

    tracemalloc.start()
    t0 = time.perf_counter()
    out = predict_chunk(model, block, bands, xs, ys)
    ours_s = time.perf_counter() - t0
    peak_ours = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    valid = np.isfinite(out[0])

    flat = block.reshape(len(bands), -1).T
    good = np.flatnonzero(np.isfinite(flat).all(axis=1))[: args.naive_pixels]
    t0 = time.perf_counter()
    for i in good:
        model.forest.predict_proba(flat[i: i + 1])
    naive_px_s = len(good) / (time.perf_counter() - t0)

    rows = block.shape[1] // 8
    t0 = time.perf_counter()
    for r in range(rows):
        row = block[:, r].T
        ok = np.isfinite(row).all(axis=1)
        if ok.any():
            model.forest.predict_proba(row[ok])
    row_px_s = rows * block.shape[2] / (time.perf_counter() - t0)

    ours_px_s = n_px / ours_s
    print(f"chunk {block.shape[1]}x{block.shape[2]} px, {len(bands)} bands, {args.trees} trees, "
          f"{valid.mean():.0%} valid pixels, 1 thread")
    print(f"ours  predict_chunk       : {ours_px_s:12,.0f} px/s/core   ({ours_s:.2f} s for the chunk)")
    print(f"naive row-by-row loop     : {row_px_s:12,.0f} px/s/core   -> ours x{ours_px_s / row_px_s:.1f}")
    print(f"naive per-pixel loop      : {naive_px_s:12,.0f} px/s/core   -> ours x{ours_px_s / naive_px_s:.0f}")
    print(f"peak traced memory (ours) : {peak_ours / 2**20:.1f} MiB for a "
          f"{block.nbytes / 2**20:.1f} MiB block; process max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    hours = 1.5e12 / 100 / ours_px_s / 3600  # Alaska at 10 m: ~1.5e12 m2 / 100 m2 per pixel
    print(f"=> all of Alaska at 10 m (~1.5e10 px) would take ~{hours:,.0f} core-hours at this rate")


if __name__ == "__main__":
    main()
