"""Map-job benchmarks (issues 8, 19): ratios measured in one run, CPU time per core, FLOP counted.

1. Profile of one map chunk task (demo MISO): where the time goes — cube read, encoders, LIIF,
   location encoder and heads, export (uint8 layers) and write.
2. Dense chunk inference vs the reference's sliding window (window = the model's crop, stride =
   crop/5, Gaussian blending, batch 1, fp32, each pixel encoded and decoded ~25 times) on the same
   chunk with the same model, for a 4-stage 64 px model and the demo's 2-stage 32 px model:
   speed ratio, FLOP per pixel of each, and agreement of the map with the scored predictions — the
   centred crops cross-validation used before, and `predict_pedons` (the map's own tiles).
3. Pixels per second per core: MISO (demo config) and the Random Forest (100 trees).
4. Optional (--job): the map job on 1 vs 2 dask workers, and peak RSS per worker at two map sizes.
7. Optional (--overlap): the map job on 2 workers with and without overlap (each worker reading the
   next chunk and writing the last while one computes), runs interleaved A/B/B/A… on two clusters
   kept warm: wall and worker CPU seconds per run, their ratios, and whether the stores' bytes agree.
6. Optional (--trained CHECKPOINT CUBE): on a trained model, the map vs the centred crops.
5. Hours to map Alaska at 30 m and 10 m: on CPU from the measured rates; on one GPU the FLOP-bound
   limit from the counted FLOP per pixel (bench/gpu_check.sh measures a real GPU).

Rates are CPU seconds of this process (torch on 1 thread), so other jobs on a shared machine do not
inflate them; wall-clock rates are printed beside them. Run:
    .venv/bin/python bench/bench_map.py [--chunk 128] [--quick] [--job] [--trained CHECKPOINT CUBE]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import logging
import pstats
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

log = logging.getLogger("bench_map")
RES = 30.0
IMG = [f"s2_summer_b{i}" for i in range(9)]
COV = [f"cov{i}" for i in range(10)]
ALASKA_LAND_KM2 = 1_481_000  # land area; the state with water is ~1.72 M km²
GPU_PEAK_BF16 = {"A100": 312e12, "H100/H200": 989e12}  # dense bf16 tensor-core FLOP/s
BOUNDS = (0.0, 0.0, 4096 * RES, 4096 * RES)
TWO_STAGES = {"depths": [1, 1], "num_heads": [1, 2]}


def model_config(kind: str):
    """'four': 4 Swin stages on 64 px crops (the old default); 'demo': the demo's CPU-sized MISO
    (2 stages, 32 px crops, pixel skip); 'paper': Swin-V2-B on 256 px crops, LIIF/embedding 1024."""
    from misomap.models.miso.config import EncoderConfig, MisoConfig

    loc = {"bounds": list(BOUNDS), "num_scales": 16, "min_wavelength": 0.125}
    if kind == "four":
        return MisoConfig(imagery=EncoderConfig(bands=IMG), covariates=EncoderConfig(bands=COV),
                          location=loc, crops={"size_px": 64})
    if kind == "demo":
        return MisoConfig.model_validate({
            "imagery": {"bands": IMG, **TWO_STAGES}, "covariates": {"bands": COV, **TWO_STAGES},
            "liif": {"pixel_skip": True}, "location": loc, "contrastive": {"enabled": False},
            "crops": {"size_px": 32, "jitter_px": 8, "label_slots": 12, "pseudo_points": 2, "grid": 2}})
    if kind == "paper":
        return MisoConfig(imagery=EncoderConfig.swin_v2_b(IMG), covariates=EncoderConfig.swin_v2_b(COV),
                          feature_dim=1024, liif={"hidden": 1024},
                          location={**loc, "num_scales": 64, "hidden": 1024},
                          crops={"size_px": 256, "jitter_px": 62})
    raise ValueError(kind)


def _model(kind: str):
    from misomap.models.miso.model import MisoModel

    torch.manual_seed(0)
    return MisoModel(model_config(kind), BOUNDS).eval()


def _spread_head(pred, window: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> None:
    """Rescale the random permafrost head so its logits have std 2 on this scene (a random head
    sits near one value, which would hide any disagreement between inference paths)."""
    c = len(wx) // 2  # the window's centre: queries there keep every tile inside the halo
    p = pred.predict(window, wx, wy, wx[c - 12:c + 12], wy[c - 12:c + 12]).permafrost
    logit = np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))
    head = pred.dense.model.heads.heads["permafrost"]
    k = 2.0 / float(logit.std())
    with torch.no_grad():
        head.weight.mul_(k)
        head.bias.mul_(k).sub_(k * float(logit.mean()))


def _field(rng: np.random.Generator, bands: int, h: int, w: int) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(rng.normal(size=(h, w)), 3).astype(np.float32) * 3 for _ in range(bands)])


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, CPU seconds of this process, wall seconds)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - t0


def _flops(fn: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def sliding_window(model, window: np.ndarray, crop: int, out: int, halo: int) -> np.ndarray:
    """The reference's inference: overlapping crops (stride crop/5), each encoded and queried at all
    its pixels one crop per batch in fp32, Gaussian-blended."""
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
                xy = torch.stack([(pix[:, 0] + c) * RES, (window.shape[1] - pix[:, 1] - r) * RES], -1).double()
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


def _scene(pred, chunk: int, seed: int = 0):
    halo = pred.halo_px
    size = chunk + 2 * halo
    window = _field(np.random.default_rng(seed), len(IMG) + len(COV), size, size)
    wx = (np.arange(size) + 0.5) * RES
    wy = (size - np.arange(size) - 0.5) * RES
    return window, wx, wy, wx[halo:halo + chunk], wy[halo:halo + chunk]


def _agreement(model, pred, window: np.ndarray, wx, wy, chunk: int, dense: np.ndarray, n: int = 200
               ) -> dict[str, float]:
    """The map vs what cross-validation scores at n random pixels: centred crops (the old scoring)
    and predict_pedons (the map's tiles)."""
    from misomap.cube.grid import Grid
    from misomap.models.miso.dense import predict_pedons

    rng = np.random.default_rng(5)
    halo, crop = pred.halo_px, model.cfg.crops.size_px
    r, c = rng.integers(0, chunk, n), rng.integers(0, chunk, n)
    rows, cols = r + halo, c + halo  # in window pixels; the window starts on the tile grid
    crops = np.stack([window[:, y - crop // 2:y - crop // 2 + crop, x - crop // 2:x - crop // 2 + crop]
                      for y, x in zip(rows, cols)])
    pix = torch.full((n, 1, 2), crop // 2 + 0.5)
    xy = torch.from_numpy(np.stack([wx[cols], wy[rows]], -1)[:, None]).double()
    with torch.no_grad():
        t = torch.from_numpy(crops)
        centred = model.predict_points(t[:, :len(IMG)], t[:, len(IMG):], pix, xy)["permafrost"][:, 0].numpy()
    size = window.shape[1]
    grid = Grid("EPSG:3338", RES, 0.0, 0.0, size * RES, size * RES)
    ped = predict_pedons(pred.dense, window[:len(IMG)], window[len(IMG):], grid, wx[cols],
                         wy[rows])["permafrost"]
    m = dense[r, c]
    return {"centred_mean": float(np.abs(m - centred).mean()),
            "centred_max": float(np.abs(m - centred).max()),
            "centred_flips": float(np.mean((m >= 0.5) != (centred >= 0.5))),
            "pedons_mean": float(np.abs(m - ped).mean()), "pedons_max": float(np.abs(m - ped).max()),
            "pedons_flips": float(np.mean((m >= 0.5) != (ped >= 0.5)))}


def bench_dense_vs_sliding(kind: str, chunk: int) -> dict[str, float]:
    """Dense vs sliding window on one chunk: CPU-second ratio, FLOP per pixel, agreement."""
    from misomap.mapping.predictors.miso import MisoMapPredictor

    model = _model(kind)
    pred = MisoMapPredictor(model, torch.device("cpu"))
    window, wx, wy, qx, qy = _scene(pred, chunk)
    crop = model.cfg.crops.size_px
    _spread_head(pred, window, wx, wy)
    probs, dense_cpu, dense_wall = _timed(lambda: pred.predict(window, wx, wy, qx, qy))
    dense = probs.permafrost
    slide, slide_cpu, slide_wall = _timed(lambda: sliding_window(model, window, crop, chunk, pred.halo_px))
    # per pixel as on a whole 50 km tile: (crop / stride)² = 25 crops per pixel, not the extra
    # crops hanging over this small chunk's edges
    stride = max(1, crop // 5)
    n_windows = len(range(0, chunk + 1, stride)) ** 2
    per_pixel = 25 / crop**2 / n_windows
    f_dense = _flops(lambda: pred.predict(window, wx, wy, qx, qy)) / chunk**2
    sub = window[:, :crop, :crop]
    rows, cols = np.meshgrid(np.arange(crop) + 0.5, np.arange(crop) + 0.5, indexing="ij")
    pix = torch.from_numpy(np.stack([cols.ravel(), rows.ravel()], -1)).float()
    with torch.no_grad():
        f_crop = _flops(lambda: model.predict_dense(torch.from_numpy(np.ascontiguousarray(sub[:len(IMG)])),
                                                    torch.from_numpy(np.ascontiguousarray(sub[len(IMG):])),
                                                    pix, torch.zeros(len(pix), 2, dtype=torch.float64)))
    f_slide = f_crop / crop**2 * 25  # every pixel covered by (crop / stride)² = 25 crops
    diff = np.abs(dense - slide)
    agree = _agreement(model, pred, window, wx, wy, chunk, dense)
    return {"crop": crop, "dense_rate": chunk**2 / dense_cpu, "dense_wall_rate": chunk**2 / dense_wall,
            "ratio": slide_cpu * per_pixel / (dense_cpu / chunk**2),
            "ratio_wall": slide_wall * per_pixel / (dense_wall / chunk**2),
            "flop_dense": f_dense, "flop_slide": f_slide, "slide_diff_mean": float(diff.mean()),
            "slide_same_class": float(np.mean((dense >= 0.5) == (slide >= 0.5))), **agree}


def profile_chunk(chunk: int) -> dict[str, float]:
    """One map chunk task of the demo MISO, as the map job runs it: CPU seconds by stage."""
    from misomap.config import config_from_dict
    from misomap.core.storage import Target
    from misomap.cube.grid import plan_chunks
    from misomap.cube.reader import cube_grid, open_cube_cached, read_window
    from misomap.mapping import chunk as job
    from misomap.mapping.layers import encode_layers
    from misomap.mapping.predictors.api import get_predictor
    from misomap.mapping.store import ensure_template, write_chunk
    from misomap.models.miso.train import model_checkpoint_bytes

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        size = 3 * chunk
        _write_cube(tmp / "cube.zarr", size)
        (tmp / "m.safetensors").write_bytes(model_checkpoint_bytes(_model("demo")))
        cfg = config_from_dict({"map": {"cube": str(tmp / "cube.zarr"), "output": str(tmp / "out"),
                                        "model": "miso", "model_path": str(tmp / "m.safetensors"),
                                        "chunk_px": chunk, "workers": 1, "device": "cpu", "cogs": False}})
        grid = job.output_grid(cfg.map, cfg.storage)
        ensure_template(Target(job.zarr_url(cfg.map)), grid, chunk, 3, {}, "bench")
        region = plan_chunks(grid, chunk)[4]  # the centre chunk: a full halo of real data
        pred = get_predictor(cfg.map, cfg.storage)
        torch.set_num_threads(1)
        cube = open_cube_cached(cfg.map.cube, cfg.storage)
        sub = grid.window(region.row0, region.col0, region.height, region.width)
        bounds = job.context_bounds(cube_grid(cube), sub, pred)
        pred.predict(read_window(cube, pred.bands, bounds).values[:, :64, :64], *_coords(bounds, 64))  # warm
        window, t_read, _ = _timed(lambda: read_window(cube, pred.bands, bounds))
        prof = cProfile.Profile()
        c0 = time.process_time()
        prof.enable()
        probs = pred.predict(window.values, window.x, window.y, sub.x_coords(), sub.y_coords())
        prof.disable()
        t_predict = time.process_time() - c0
        layers, t_export, _ = _timed(lambda: encode_layers(probs))
        _, t_write, _ = _timed(lambda: write_chunk(Target(job.zarr_url(cfg.map)), region, layers))
    stats = pstats.Stats(prof).stats
    scale = t_predict / max(sum(v[2] for v in stats.values()), 1e-9)  # cProfile overhead removed

    def cum(name: str) -> float:
        return sum(v[3] for k, v in stats.items() if k[2] == name and "misomap" in k[0]) * scale

    encode = cum("_encode")
    liif = cum("_liif")
    location = sum(v[3] for k, v in stats.items() if k[2] == "forward" and k[0].endswith("location.py")
                   and k[1] > 50) * scale
    return {"read": t_read, "encoders": encode, "liif": liif, "location": location,
            "fuse+heads+tiling": t_predict - encode - liif - location, "export": t_export, "write": t_write}


def _coords(bounds, n: int):
    xmin, _, _, ymax = bounds
    x = xmin + (np.arange(n) + 0.5) * RES
    y = ymax - (np.arange(n) + 0.5) * RES
    return x, y, x[n // 2:n // 2 + 4], y[n // 2:n // 2 + 4]


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
    _, cpu, _ = _timed(lambda: predict_chunk(model, block, feats, x, x))
    return chunk * chunk / cpu


def paper_flop_per_pixel() -> tuple[float, float]:
    """FLOP per map pixel of the paper-scale model (Swin-V2-B, LIIF 1024): dense inference (one
    tile's encoders over its core pixels plus the counted cost of a query) and the reference's
    sliding window (25 × (one crop's encoders over its pixels plus the plain LIIF query))."""
    from misomap.models.miso.dense import DenseMiso

    model = _model("paper")
    n = 64
    dense = DenseMiso(model, torch.device("cpu"), point_batch=n)
    s = model.cfg.crops.size_px
    tiles = np.random.default_rng(0).normal(size=(1, len(IMG) + len(COV), s, s)).astype(np.float32)
    pix = np.random.default_rng(1).uniform(0, s, (n, 2))
    xy = np.full((n, 2), 1000.0)
    t = torch.from_numpy(tiles)
    with torch.no_grad():
        enc = model.encode(t[:, :len(IMG)], t[:, len(IMG):])
        f_enc = _flops(lambda: model.encode(t[:, :len(IMG)], t[:, len(IMG):]))
        f_naive = _flops(lambda: model.query(enc, torch.from_numpy(pix).float()[None],
                                             torch.from_numpy(xy)[None])) / n
        f_dense = (_flops(lambda: dense.predict(tiles, np.zeros(n, np.int64), pix, xy)) - f_enc) / n
    return f_enc / dense.grid.core**2 + f_dense, 25 * (f_enc / s**2 + f_naive)


def _write_cube(path: Path, size: int) -> None:
    from misomap.cube.grid import Grid

    grid = Grid("EPSG:3338", RES, 0.0, 0.0, size * RES, size * RES)
    data = _field(np.random.default_rng(2), len(IMG) + len(COV), size, size)
    ds = xr.Dataset({"data": (("band", "y", "x"), data, {"grid_mapping": "spatial_ref"})},
                    coords={"band": IMG + COV, "y": grid.y_coords(), "x": grid.x_coords(),
                            "spatial_ref": ((), 0, grid.spatial_ref_attrs())},
                    attrs={"misomap": {"imagery_datetime": ["2019-06-15T00:00:00Z", "2023-08-15T00:00:00Z"]}})
    ds.chunk({"band": -1, "y": 256, "x": 256}).to_zarr(path, zarr_format=3, mode="w", consolidated=True)


def _map_run(cube: Path, ckpt: Path, out: Path, workers: int, chunk: int) -> tuple[float, list[float]]:
    from distributed import Client, LocalCluster

    from misomap.config import config_from_dict
    from misomap.core.storage import Target
    from misomap.cube.grid import plan_chunks
    from misomap.mapping.chunk import MapSpec, output_grid, predict_chunk, zarr_url
    from misomap.mapping.store import ensure_template

    cfg = config_from_dict({"map": {"cube": str(cube), "output": str(out), "model": "miso",
                                    "model_path": str(ckpt), "chunk_px": chunk, "workers": workers}})
    grid = output_grid(cfg.map, cfg.storage)
    ensure_template(Target(zarr_url(cfg.map)), grid, chunk, 3, {}, "bench")
    regions = plan_chunks(grid, chunk)
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.run(torch.set_num_threads, 1)
        spec = MapSpec(cfg.map, cfg.storage)
        client.submit(predict_chunk, regions[0], spec, pure=False).result()  # warm: model loaded per worker
        t0 = time.perf_counter()
        client.gather(client.map(predict_chunk, regions[1:], spec=spec, pure=False))
        seconds = time.perf_counter() - t0
        rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return (len(regions) - 1) * chunk * chunk / seconds, sorted(rss.values())


def _store_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _warm_worker(cfg, storage) -> None:
    from misomap.cube.reader import open_cube_cached
    from misomap.mapping.predictors.api import get_predictor

    get_predictor(cfg, storage)
    open_cube_cached(cfg.cube, storage)
    torch.set_num_threads(1)


def bench_overlap(size: int, chunk: int, repeats: int, workers: int = 2) -> dict[str, Any]:
    """The map job (demo MISO, local cube) with and without overlap, interleaved on two warm clusters
    of `workers` processes (1 vs 2 threads each): per run wall s and the workers' CPU s."""
    from distributed import Client, LocalCluster

    from misomap.config import config_from_dict
    from misomap.core.storage import Target
    from misomap.cube.grid import plan_chunks
    from misomap.mapping.chunk import MapSpec, output_grid, predict_chunk, zarr_url
    from misomap.mapping.store import ensure_template
    from misomap.models.miso.train import model_checkpoint_bytes
    from misomap.runtime.cluster import worker_threads
    from misomap.runtime.records import CompletionRecords
    from misomap.runtime.runner import run_plan

    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    same = True
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        ckpt = tmp / "miso.safetensors"
        ckpt.write_bytes(model_checkpoint_bytes(_model("demo")))
        _write_cube(tmp / "cube.zarr", size)
        clients = {}
        for overlap in (False, True):
            cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=worker_threads(overlap),
                                                       dashboard_address=":0", host="127.0.0.1"))
            clients[overlap] = stack.enter_context(Client(cluster))

        def run(overlap: bool, name: str) -> tuple[float, float]:
            client = clients[overlap]
            cfg = config_from_dict({"map": {"cube": str(tmp / "cube.zarr"), "output": str(tmp / name),
                                            "model": "miso", "model_path": str(ckpt), "chunk_px": chunk,
                                            "workers": workers, "device": "cpu", "overlap": overlap}})
            grid = output_grid(cfg.map, cfg.storage)
            ensure_template(Target(zarr_url(cfg.map)), grid, chunk, 3, {}, "bench")
            records = CompletionRecords(Target(str(tmp / name / "_progress")))
            cpu0 = sum(client.run(time.process_time).values())
            t0 = time.perf_counter()
            run_plan(plan_chunks(grid, chunk), predict_chunk, MapSpec(cfg.map, cfg.storage), records, client,
                     name=f"map {name}")
            wall = time.perf_counter() - t0
            return wall, sum(client.run(time.process_time).values()) - cpu0

        for overlap in (False, True):  # model loaded and cube opened in every worker, torch on 1 thread
            cfg = config_from_dict({"map": {"cube": str(tmp / "cube.zarr"), "output": str(tmp / "warm"),
                                            "model": "miso", "model_path": str(ckpt), "chunk_px": chunk,
                                            "workers": workers, "device": "cpu"}})
            clients[overlap].run(_warm_worker, cfg.map, cfg.storage)
        for i in range(repeats):
            for overlap in ((False, True) if i % 2 == 0 else (True, False)):
                runs[overlap].append(run(overlap, f"run{i}-{overlap}"))
                log.info("   run %d %-10s wall %.1f s, worker CPU %.1f s", i, "overlap" if overlap else "plain",
                         *runs[overlap][-1])
        ref = _store_files(tmp / "run0-False" / "map.zarr")
        same = all(_store_files(tmp / f"run{i}-{o}" / "map.zarr") == ref for i in range(repeats) for o in (False, True))
    wall = {o: float(np.median([r[0] for r in v])) for o, v in runs.items()}
    cpu = {o: float(np.median([r[1] for r in v])) for o, v in runs.items()}
    pairs = [a[0] / b[0] for a, b in zip(runs[False], runs[True])]
    return {"px": size * size, "wall": wall, "cpu": cpu, "pair_ratios": pairs, "same_bytes": same}


def bench_job(chunk: int, quick: bool) -> None:
    from misomap.models.miso.train import model_checkpoint_bytes

    sizes = (512, 1024) if not quick else (384, 640)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "miso.safetensors"
        ckpt.write_bytes(model_checkpoint_bytes(_model("demo")))
        rates, mem = {}, {}
        for size in sizes:
            _write_cube(tmp / f"cube{size}.zarr", size)
        for workers in (1, 2):
            rates[workers], _ = _map_run(tmp / f"cube{sizes[1]}.zarr", ckpt, tmp / f"w{workers}", workers, chunk)
        for size in sizes:
            _, mem[size] = _map_run(tmp / f"cube{size}.zarr", ckpt, tmp / f"m{size}", 2, chunk)
    log.info("4. map job (demo MISO, %d px chunks, %d² px map, wall clock): 1 worker %.0f px/s, 2 workers "
             "%.0f px/s → %.2f×", chunk, sizes[1], rates[1], rates[2], rates[2] / rates[1])
    log.info("   peak RSS per worker: %d² px map %s MB; %d² px map %s MB", sizes[0],
             [round(m) for m in mem[sizes[0]]], sizes[1], [round(m) for m in mem[sizes[1]]])


def bench_trained(checkpoint: str, cube: str, n: int = 1000) -> None:
    """A trained checkpoint on its cube: the map (its global tiles) vs centred crops at n random
    valid pixels — how far the old scoring was from the map, on a real model."""
    from misomap.cube.reader import cube_grid
    from misomap.mapping.config import MapConfig
    from misomap.mapping.predictors.miso import load_miso_predictor
    from misomap.models.miso.crops import CropSampler, Points
    from misomap.models.miso.dense import predict_pedons

    pred = load_miso_predictor({checkpoint: Path(checkpoint).read_bytes()},
                               MapConfig(cube=cube, output="unused", model="miso", device="cpu", workers=1))
    torch.set_num_threads(1)
    model, ds = pred.dense.model, xr.open_zarr(cube)
    grid = cube_grid(ds)
    n_img = len(model.cfg.imagery.bands)
    data = ds["data"].sel(band=list(pred.bands)).values.astype(np.float32)
    img, cov = data[:n_img], (data[n_img:] if len(pred.bands) > n_img else None)
    rng = np.random.default_rng(0)
    r, c = rng.integers(0, grid.height, n), rng.integers(0, grid.width, n)
    x, y = grid.xmin + (c + 0.5) * grid.resolution, grid.ymax - (r + 0.5) * grid.resolution
    mapped, t_map, _ = _timed(lambda: predict_pedons(pred.dense, img, cov, grid, x, y))
    pts = Points(x, y, np.full(n, -1), np.full(n, -1))
    batch = CropSampler(img, cov, grid, pts, model.cfg.crops).centred(pts)

    def centred():
        with torch.no_grad():
            return model.predict_points(torch.from_numpy(batch.imagery),
                                        None if cov is None else torch.from_numpy(batch.covariates),
                                        torch.from_numpy(batch.pix), torch.from_numpy(batch.xy))
    old, t_old, _ = _timed(centred)
    ok = mapped["valid"]
    d = np.abs(mapped["permafrost"] - old["permafrost"][:, 0].numpy())[ok]
    flips = np.mean((mapped["permafrost"][ok] >= 0.5) != (old["permafrost"][ok, 0].numpy() >= 0.5))
    so_flips = np.mean(mapped["soil_order"][ok].argmax(-1) != old["soil_order"][ok, 0].numpy().argmax(-1))
    log.info("6. trained %s on %s (%d valid px): map vs centred crops mean |ΔP| %.3f, max %.3f, permafrost "
             "class differs %.1f%%, soil order %.1f%%; CPU s for %d px: map tiles %.2f, centred crops %.2f",
             Path(checkpoint).name, Path(cube).name, ok.sum(), d.mean(), d.max(), 100 * flips, 100 * so_flips,
             n, t_map, t_old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="smaller chunks for a fast check")
    parser.add_argument("--job", action="store_true", help="also time the dask map job (slow)")
    parser.add_argument("--trained", nargs=2, metavar=("CHECKPOINT", "CUBE"),
                        help="also compare map and centred crops for a trained MISO checkpoint on its cube")
    parser.add_argument("--only-trained", action="store_true", help="run only the --trained comparison")
    parser.add_argument("--overlap", action="store_true", help="also the overlapped vs plain map job A/B (2 workers)")
    parser.add_argument("--only-overlap", action="store_true", help="run only the overlap A/B")
    parser.add_argument("--overlap-size", type=int, default=1024, help="map side (px) of the overlap A/B")
    parser.add_argument("--overlap-chunk", type=int, default=256, help="chunk side (px) of the overlap A/B")
    parser.add_argument("--repeats", type=int, default=4, help="A/B pairs of the overlap benchmark")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("distributed", "misomap"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(1)
    chunk = 64 if args.quick else args.chunk
    if args.trained:
        bench_trained(*args.trained)
        if args.only_trained:
            return
    if args.overlap or args.only_overlap:
        log.info("7. map job, overlapped vs plain (demo MISO, %d² px map, %d px chunks, 2 workers, interleaved):",
                 args.overlap_size, args.overlap_chunk)
        r = bench_overlap(args.overlap_size, args.overlap_chunk, args.repeats)
        log.info("   median wall: plain %.1f s (%.0f px/s), overlap %.1f s (%.0f px/s) → %.2f× (pairs: %s); "
                 "median worker CPU s: plain %.1f, overlap %.1f (×%.2f); stores byte-identical: %s",
                 r["wall"][False], r["px"] / r["wall"][False], r["wall"][True], r["px"] / r["wall"][True],
                 r["wall"][False] / r["wall"][True], ", ".join(f"{x:.2f}" for x in r["pair_ratios"]),
                 r["cpu"][False], r["cpu"][True], r["cpu"][True] / r["cpu"][False], r["same_bytes"])
        if args.only_overlap:
            return

    prof = profile_chunk(256 if not args.quick else 128)
    total = sum(prof.values())
    log.info("1. one map chunk task (demo MISO, %d px, CPU s): %s; total %.2f s",
             256 if not args.quick else 128,
             ", ".join(f"{k} {v:.2f} ({100 * v / total:.0f}%)" for k, v in prof.items()), total)

    rows = {kind: bench_dense_vs_sliding(kind, chunk) for kind in ("four", "demo")}
    log.info("2. dense vs the reference's sliding window (window = crop, stride crop/5), %d px chunk, "
             "1 thread:", chunk)
    log.info("   %-22s %5s %10s %10s %8s %8s %12s %12s %9s %9s %9s", "model", "crop", "dense px/s", "wall px/s",
             "× CPU", "× wall", "FLOP/px dns", "FLOP/px sld", "|ΔP| sld", "|ΔP|crop", "|ΔP|ped")
    for kind, r in rows.items():
        log.info("   %-22s %5d %10.0f %10.0f %8.1f %8.1f %12.3g %12.3g %9.3f %9.3f %9.4f", kind, r["crop"],
                 r["dense_rate"], r["dense_wall_rate"], r["ratio"], r["ratio_wall"], r["flop_dense"],
                 r["flop_slide"], r["slide_diff_mean"], r["centred_mean"], r["pedons_mean"])
    for kind, r in rows.items():
        log.info("   %s: map vs centred crops (old scoring) mean |ΔP| %.3f, max %.3f, class flips %.1f%%; "
                 "map vs predict_pedons (scoring the map) mean %.4f, max %.4f, flips %.2f%%; "
                 "vs sliding window same class %.1f%%", kind, r["centred_mean"], r["centred_max"],
                 100 * r["centred_flips"], r["pedons_mean"], r["pedons_max"], 100 * r["pedons_flips"],
                 100 * r["slide_same_class"])

    miso_rate = rows["demo"]["dense_rate"]
    rf_rate = bench_rf_rate(256)
    log.info("3. px/s per core (CPU time): MISO demo config %.0f, RF 100 trees %.0f (RF/MISO %.1f×)", miso_rate,
             rf_rate, rf_rate / miso_rate)
    if args.job:
        bench_job(256, args.quick)

    f_paper, f_ref = paper_flop_per_pixel()
    f_demo = rows["demo"]["flop_dense"]
    log.info("5. FLOP per pixel (counted): demo MISO dense %.3g; paper-scale MISO (Swin-V2-B, LIIF 1024) "
             "dense %.3g, reference sliding window %.3g (%.0f×)", f_demo, f_paper, f_ref, f_ref / f_paper)
    for res in (30, 10):
        px = ALASKA_LAND_KM2 * 1e6 / res ** 2
        gpu = "; ".join(f"{name}: demo {px * f_demo / peak / 3600:.3f} h, "
                        f"paper {px * f_paper / peak / 3600:.1f} h" for name, peak in GPU_PEAK_BF16.items())
        log.info("   Alaska at %d m (%.2e px): CPU MISO %.0f core-h, RF %.0f core-h; FLOP-bound on one GPU "
                 "— %s",
                 res, px, px / miso_rate / 3600, px / rf_rate / 3600, gpu)
    log.info("   GPU measured: not on this machine; run bench/gpu_check.sh on one (prints px/s, memory, "
             "utilisation and statewide hours).")
    log.info("peak RSS of this process %.0f MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


if __name__ == "__main__":
    main()
