"""Map-job benchmarks (issue 8), ratios measured in one run, peak memory, no absolute asserts.

1. Dense chunk inference (encoders once per chunk + halo, LIIF queried at every pixel) vs the
   reference's sliding window (window = the model's crop, stride = window/5, Gaussian blending,
   each pixel covered ~25 times) on the same chunk with the same model: speed ratio and agreement.
2. Pixels per second per core: MISO (dense) and the Random Forest (100 trees) on the same chunk.
3. Scaling of the map job: 1 vs 2 dask workers on the same map, and peak RSS per worker at two map
   sizes (it should stay flat).
4. On paper: hours to map all of Alaska at 30 m and 10 m from the measured per-pixel costs.

Run: .venv/bin/python bench/bench_map.py [--chunk 256] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

log = logging.getLogger("bench_map")
RES = 30.0
IMG = [f"s2_summer_b{i}" for i in range(9)]
COV = [f"cov{i}" for i in range(10)]
ALASKA_LAND_KM2 = 1_481_000  # land area; the state with water is ~1.72 M km²


def _model(crop: int):
    from misomap.models.miso.config import CropConfig, EncoderConfig, LocationConfig, MisoConfig
    from misomap.models.miso.model import MisoModel

    torch.manual_seed(0)
    bounds = (0.0, 0.0, 4096 * RES, 4096 * RES)
    cfg = MisoConfig(imagery=EncoderConfig(bands=IMG), covariates=EncoderConfig(bands=COV),
                     location=LocationConfig(bounds=bounds), crops=CropConfig(size_px=crop))
    return MisoModel(cfg, bounds).eval()


def _field(rng: np.random.Generator, bands: int, h: int, w: int) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(rng.normal(size=(h, w)), 3).astype(np.float32) * 3 for _ in range(bands)])


def sliding_window(model, window: np.ndarray, crop: int, out: int, halo: int) -> np.ndarray:
    """The reference's inference: overlapping crops, each queried at all its pixels, Gaussian-blended."""
    stride = max(1, crop // 5)
    n_img = len(IMG)
    acc = np.zeros((out, out), np.float64)
    wsum = np.zeros((out, out), np.float64)
    g = np.exp(-0.5 * ((np.arange(crop) + 0.5 - crop / 2) / (crop / 4)) ** 2)
    weight = np.outer(g, g)
    rows, cols = np.meshgrid(np.arange(crop) + 0.5, np.arange(crop) + 0.5, indexing="ij")
    pix = torch.from_numpy(np.stack([cols.ravel(), rows.ravel()], -1)).float()
    starts = range(halo - crop // 2, halo + out - crop // 2 + 1, stride)
    with torch.no_grad():
        for r in starts:
            for c in starts:
                sub = window[:, r:r + crop, c:c + crop]
                xy = torch.stack([(pix[:, 0] + c) * RES, (window.shape[1] - pix[:, 1] - r) * RES], -1)
                p = model.predict_dense(torch.from_numpy(np.ascontiguousarray(sub[:n_img])),
                                        torch.from_numpy(np.ascontiguousarray(sub[n_img:])), pix, xy)
                prob = p["permafrost"].numpy().reshape(crop, crop)
                r0, c0 = r - halo, c - halo
                rs, cs = slice(max(r0, 0), min(r0 + crop, out)), slice(max(c0, 0), min(c0 + crop, out))
                sr = slice(rs.start - r0, rs.stop - r0)
                sc = slice(cs.start - c0, cs.stop - c0)
                acc[rs, cs] += prob[sr, sc] * weight[sr, sc]
                wsum[rs, cs] += weight[sr, sc]
    return (acc / np.maximum(wsum, 1e-12)).astype(np.float32)


def bench_dense_vs_sliding(chunk: int) -> tuple[float, float]:
    from misomap.jobs.miso_predictor import MisoMapPredictor

    torch.set_num_threads(1)
    model = _model(crop=64)
    pred = MisoMapPredictor(model, torch.device("cpu"), batch_points=16384)
    halo = pred.halo_px
    size = chunk + 2 * halo
    window = _field(np.random.default_rng(0), len(IMG) + len(COV), size, size)
    wx = (np.arange(size) + 0.5) * RES
    wy = (size - np.arange(size) - 0.5) * RES
    qx, qy = wx[halo:halo + chunk], wy[halo:halo + chunk]
    t0 = time.perf_counter()
    dense = pred.predict(window, wx, wy, qx, qy).permafrost
    t_dense = time.perf_counter() - t0
    t0 = time.perf_counter()
    slide = sliding_window(model, window, crop=model.cfg.crops.size_px, out=chunk, halo=halo)
    t_slide = time.perf_counter() - t0
    diff = np.abs(dense - slide)
    log.info("1. dense vs sliding window, chunk %d px, 1 thread: dense %.2f s, sliding %.1f s → %.1f× faster; "
             "P(permafrost) |diff| mean %.3f, p95 %.3f; same class %.1f%%", chunk, t_dense, t_slide,
             t_slide / t_dense, diff.mean(), np.percentile(diff, 95),
             100 * np.mean((dense >= 0.5) == (slide >= 0.5)))
    return chunk * chunk / t_dense, t_slide / t_dense


def bench_rf_rate(chunk: int) -> float:
    from sklearn.ensemble import RandomForestClassifier

    from misomap.models.rf import RFModel, predict_chunk

    rng = np.random.default_rng(1)
    feats = IMG + COV
    X = rng.normal(size=(3000, len(feats))).astype(np.float32)
    y = (X[:, 0] + X[:, 10] + rng.normal(size=3000) > 0).astype(int).astype(str)
    forest = RandomForestClassifier(100, n_jobs=1, random_state=0).fit(X, y)
    model = RFModel(forest, "permafrost", tuple(feats), tuple(forest.classes_))
    block = _field(rng, len(feats), chunk, chunk)
    x = np.arange(chunk) * RES
    t0 = time.perf_counter()
    predict_chunk(model, block, feats, x, x)
    return chunk * chunk / (time.perf_counter() - t0)


def _write_cube(path: Path, size: int) -> None:
    from misomap.cube.grid import Grid

    grid = Grid("EPSG:3338", RES, 0.0, 0.0, size * RES, size * RES)
    data = _field(np.random.default_rng(2), len(IMG) + len(COV), size, size)
    ds = xr.Dataset({"data": (("band", "y", "x"), data, {"grid_mapping": "spatial_ref"})},
                    coords={"band": IMG + COV, "y": grid.y_coords(), "x": grid.x_coords(),
                            "spatial_ref": ((), 0, grid.spatial_ref_attrs())},
                    attrs={"misomap": {"imagery_datetime": ["2019-06-15T00:00:00Z", "2023-08-15T00:00:00Z"]}})
    ds.chunk({"band": -1, "y": 256, "x": 256}).to_zarr(path, zarr_format=3, mode="w", consolidated=True)


def _checkpoint(path: Path) -> None:
    from misomap.models.miso.train import model_checkpoint_bytes

    path.write_bytes(model_checkpoint_bytes(_model(crop=64)))


def _map_run(cube: Path, ckpt: Path, out: Path, workers: int, chunk: int) -> tuple[float, list[float]]:
    from distributed import Client, LocalCluster

    from misomap.config import config_from_dict
    from misomap.cube.grid import plan_chunks
    from misomap.jobs.map_store import ensure_template
    from misomap.jobs.predict import output_grid, predict_chunk, zarr_url

    cfg = config_from_dict({"map": {"cube": str(cube), "output": str(out), "model": "miso",
                                    "model_path": str(ckpt), "chunk_px": chunk, "workers": workers}})
    grid = output_grid(cfg)
    ensure_template(zarr_url(cfg.map), {}, grid, chunk, 3, {}, "bench")
    regions = plan_chunks(grid, chunk)
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.run(torch.set_num_threads, 1)
        client.submit(predict_chunk, regions[0], cfg, pure=False).result()  # warm: model loaded per worker
        client.run(lambda: None)
        t0 = time.perf_counter()
        client.gather(client.map(predict_chunk, regions[1:], config=cfg, pure=False))
        seconds = time.perf_counter() - t0
        rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return (len(regions) - 1) * chunk * chunk / seconds, sorted(rss.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="smaller maps for a fast check")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("distributed", "misomap"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    miso_rate, ratio = bench_dense_vs_sliding(args.chunk)
    rf_rate = bench_rf_rate(args.chunk)
    log.info("2. px/s per core: MISO dense %.0f, RF %.0f (RF/MISO %.1f×)", miso_rate, rf_rate, rf_rate / miso_rate)

    sizes = (512, 1024) if not args.quick else (384, 640)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "miso.safetensors"
        _checkpoint(ckpt)
        rates, mem = {}, {}
        for size in sizes:
            _write_cube(tmp / f"cube{size}.zarr", size)
        for workers in (1, 2):
            rates[workers], _ = _map_run(tmp / f"cube{sizes[1]}.zarr", ckpt, tmp / f"w{workers}", workers, args.chunk)
        for size in sizes:
            _, mem[size] = _map_run(tmp / f"cube{size}.zarr", ckpt, tmp / f"m{size}", 2, args.chunk)
    log.info("3. map job (MISO, %d px chunks, %d² px map): 1 worker %.0f px/s, 2 workers %.0f px/s → %.2f×",
             args.chunk, sizes[1], rates[1], rates[2], rates[2] / rates[1])
    log.info("   peak RSS per worker: %d² px map %s MB; %d² px map %s MB", sizes[0],
             [round(m) for m in mem[sizes[0]]], sizes[1], [round(m) for m in mem[sizes[1]]])
    for res in (30, 10):
        px = ALASKA_LAND_KM2 * 1e6 / res ** 2
        log.info("4. Alaska at %d m (%.2e px): MISO %.0f core-hours (%.1f h on 32 cores), RF %.0f core-hours",
                 res, px, px / miso_rate / 3600, px / miso_rate / 3600 / 32, px / rf_rate / 3600)
    log.info("   GPU: not measured here (no GPU on this machine); the same code runs with device: cuda, bf16.")
    log.info("peak RSS of this process %.0f MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


if __name__ == "__main__":
    main()
