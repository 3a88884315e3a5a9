"""GPU check of MISO mapping and training, in one call (bench/gpu_check.sh runs it).

Parts (each prints its figures; all of them under 8 minutes on one H100/H200):
1. kernel: the dense predictor on a chunk already in memory, demo and paper-scale (Swin-V2-B +
   LIIF-1024) models — px/s, FLOP/px counted with torch.utils.flop_counter, TFLOP/s and % of the
   bf16 dense peak, GPU busy %, peak memory — for the settings before this work (torchvision
   attention) and now (SDPA window attention), each precision tail, and `--compile` modes;
   a torch.profiler table of the paper model's top kernels.
2. precision: a demo model trained for a few hundred steps on a synthetic scene with learnable
   labels; classes of GPU bf16 (fp32 heads, or fp32 fusion + heads) against the CPU fp32 path.
3. end to end: SeaweedFS (misomap.services.s3) with a demo cube in a bucket; `misomap predict`
   (the CLI users run: cube read from S3, Zarr + COGs written to S3, a dask worker on the GPU);
   px/s of the whole command and of its chunk phase beside the kernel-only rate, GPU busy %.
4. training: MISO optimiser steps per second and peak memory, demo and paper configs.
5. statewide hours of Alaska at 10 m and 30 m (map pixels of `misomap plan`'s land tiles) at the
   kernel and end-to-end rates, beside the FLOP-bound limit.

`--dry-run-cpu` runs every part on the CPU at tiny sizes (paper-scale parts skipped) to test the
script itself. Usage: bench/gpu_check.sh [--dry-run-cpu] [--skip PART ...] [--compile MODE ...]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))
from bench_map import COV, IMG, RES, _field, _flops, _model, _scene, _spread_head, model_config

from misomap.core.classes import SOIL_ORDERS
from misomap.mapping.predictors.miso import MisoMapPredictor
from misomap.models.miso.dense import DenseMiso

log = logging.getLogger("gpu_check")
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
"""Dense bf16 tensor-core FLOP/s by GPU name (PEAK_TFLOPS overrides)."""


def say(msg: str) -> None:
    print(msg, flush=True)


class Busy:
    """Samples GPU utilisation (%) and memory used every 100 ms: NVML (nvidia-ml-py) if installed,
    else nvidia-smi; nothing on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples, self._stop = device, [], threading.Event()
        self._read: Callable[[], tuple[float, float]] | None = None
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            self._read = lambda: (float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                                  pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**30)
            self.source = "nvml"
        except Exception:  # noqa: BLE001 - no nvidia-ml-py: fall back to nvidia-smi
            self._read = self._smi
            self.source = "nvidia-smi"

    def _smi(self) -> tuple[float, float]:
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                              "-i", str(self.device.index or 0)], capture_output=True, text=True, timeout=5,
                             check=False).stdout
        util, mem = (float(v) for v in out.strip().split(","))
        return util, mem / 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append((time.perf_counter(), *self._read()))
            time.sleep(0.1)

    def __enter__(self) -> Busy:  # noqa: PYI034
        if self._read is not None:
            threading.Thread(target=self._run, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def mean(self, since: float = 0.0, until: float = float("inf")) -> float:
        vals = [u for t, u, _ in self.samples if since <= t <= until]
        return float(np.mean(vals)) if vals else float("nan")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def statewide_pixels() -> dict[int, int]:
    """Map pixels of all of Alaska's land tiles at 30 m and 10 m (the `misomap plan` tiles)."""
    from misomap.plan.plan import make_plan, statewide_grid

    return {res: make_plan(statewide_grid(res), 512, res, 512, len(IMG) + len(COV), 9).map_pixels for res in (30, 10)}


# 1. kernel ---------------------------------------------------------------------------------------

def kernel(kind: str, chunk: int, reps: int, device: torch.device, peak: float, variants: list[dict[str, Any]],
           profile: bool) -> dict[str, float]:
    """The predictor on one in-memory chunk for each variant of DenseMiso options; returns the
    last (the default) variant's rate and FLOP/px."""
    model = _model(kind)
    cpu = MisoMapPredictor(model, torch.device("cpu"))
    window, wx, wy, qx, qy = _scene(cpu, chunk)
    _spread_head(cpu, window, wx, wy)
    best: dict[str, float] = {}
    for opts in variants:
        pred = MisoMapPredictor(copy.deepcopy(cpu.dense.model), device)
        pred.dense = DenseMiso(pred.dense.model, device, **opts)
        def run(pred: MisoMapPredictor = pred) -> Any:
            return pred.predict(window, wx, wy, qx, qy)

        pred.predict(window, wx, wy, qx[:64], qy[:64])
        run()  # warm-up: kernels chosen, compiled graphs captured
        sync(device)
        reset_peak(device)
        with Busy(device) as busy:
            t0 = time.perf_counter()
            for _ in range(reps):
                run()
            sync(device)
            sec = (time.perf_counter() - t0) / reps
        rate = chunk * chunk / sec
        flop = _flops(run) / chunk**2
        name = ", ".join(f"{k}={v}" for k, v in opts.items()) or "defaults"
        say(f"  {kind} [{name}]: tile {pred.dense.grid.tile} px, chunk {chunk}² px, {pred.dense.point_batch} "
            f"queries/batch: {rate:,.0f} px/s; {flop:.3g} FLOP/px → {rate * flop / 1e12:.2f} TFLOP/s "
            f"({100 * rate * flop / peak:.1f}% of bf16 peak); GPU busy {busy.mean():.0f}%; "
            f"peak memory {peak_gib(device):.2f} GiB")
        best = {"rate": rate, "flop": flop}
    if profile and device.type == "cuda":
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            run()
            sync(device)
        say(f"  {kind} profile (top kernels by GPU time):\n" +
            prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))
    return best


# 2. precision ------------------------------------------------------------------------------------

def train_demo(device: torch.device, steps: int, size: int, batch: int = 32) -> tuple[Any, np.ndarray, Any]:
    """The demo MISO config trained `steps` Adam steps (bf16 autocast on a GPU) on random crops of a
    synthetic scene whose permafrost and soil-order labels are smooth functions of its bands."""
    from misomap.cube.grid import Grid
    from misomap.models.miso.model import MisoModel

    rng = np.random.default_rng(0)
    data = _field(rng, len(IMG) + len(COV), size, size)
    grid = Grid("EPSG:3338", RES, 0.0, 0.0, size * RES, size * RES)
    pf = (data[0] + 0.5 * data[len(IMG)] > 0).astype(np.int64)
    so = np.clip(np.floor((data[1] - data[len(IMG) + 1]) * 1.5 + 3), 0, len(SOIL_ORDERS) - 1).astype(np.int64)
    cfg = model_config("demo")
    torch.manual_seed(0)
    model = MisoModel(cfg, grid.bounds).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    crop, n_img, queries = cfg.crops.size_px, len(IMG), batch
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    for _ in range(steps):
        r0, c0 = rng.integers(0, size - crop, batch), rng.integers(0, size - crop, batch)
        crops = torch.from_numpy(np.stack([data[:, r:r + crop, c:c + crop] for r, c in zip(r0, c0)])).to(device)
        pr, pc = rng.integers(0, crop, (batch, queries)), rng.integers(0, crop, (batch, queries))
        pix = torch.from_numpy(np.stack([pc + 0.5, pr + 0.5], -1)).float().to(device)
        rows, cols = r0[:, None] + pr, c0[:, None] + pc
        xy = torch.from_numpy(np.stack([(cols + 0.5) * RES, size * RES - (rows + 0.5) * RES], -1)).to(device)
        with amp:
            out = model(crops[:, :n_img], crops[:, n_img:], pix, xy).logits
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            out["permafrost"].float(), torch.from_numpy(pf[rows, cols]).float().to(device)) + \
            torch.nn.functional.cross_entropy(out["soil_order"].float().reshape(-1, len(SOIL_ORDERS)),
                                              torch.from_numpy(so[rows, cols]).reshape(-1).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval().cpu(), data, (pf, so)


def precision(device: torch.device, steps: int, size: int, region: int, batch: int) -> None:
    from misomap.cube.grid import Grid
    from misomap.models.miso.dense import FP32_TAILS, predict_pedons

    t0 = time.perf_counter()
    model, data, (pf, so) = train_demo(device, steps, size, batch)
    grid = Grid("EPSG:3338", RES, 0.0, 0.0, size * RES, size * RES)
    lo = (size - region) // 2
    rows, cols = np.mgrid[lo:lo + region, lo:lo + region]
    x, y = (cols.ravel() + 0.5) * RES, size * RES - (rows.ravel() + 0.5) * RES
    n_img = len(IMG)
    ref = predict_pedons(DenseMiso(copy.deepcopy(model), torch.device("cpu")), data[:n_img], data[n_img:], grid, x, y)
    acc_pf = np.mean((ref["permafrost"] >= 0.5) == pf[rows, cols].ravel())
    acc_so = np.mean(ref["soil_order"].argmax(-1) == so[rows, cols].ravel())
    say(f"  demo model trained {steps} steps in {time.perf_counter() - t0:.0f} s: fp32 CPU accuracy on its "
        f"synthetic labels permafrost {acc_pf:.3f}, soil order {acc_so:.3f}; {region}² px compared")
    for tail in FP32_TAILS:
        out = predict_pedons(DenseMiso(copy.deepcopy(model), device, fp32_tail=tail, amp=True), data[:n_img],
                             data[n_img:], grid, x, y)
        flips_pf = np.mean((out["permafrost"] >= 0.5) != (ref["permafrost"] >= 0.5))
        flips_so = np.mean(out["soil_order"].argmax(-1) != ref["soil_order"].argmax(-1))
        say(f"  {device.type} bf16 (fp32 from the {tail}) vs CPU fp32: classes differ permafrost "
            f"{100 * flips_pf:.3f}%, soil order {100 * flips_so:.3f}%; mean |ΔP| "
            f"{np.abs(out['permafrost'] - ref['permafrost']).mean():.5f}")


# 3. end to end -----------------------------------------------------------------------------------

def write_cube(path: Path, size: int) -> None:
    """A finished cube (complete mark, imagery dates) with the bench models' bands."""
    from misomap.cube.grid import Grid
    from misomap.cube.store import COMPLETE_KEY

    grid = Grid("EPSG:3338", RES, 0.0, 0.0, size * RES, size * RES)  # inside the bench models' location bounds
    data = _field(np.random.default_rng(2), len(IMG) + len(COV), size, size)
    ds = xr.Dataset({"data": (("band", "y", "x"), data, {"grid_mapping": "spatial_ref"})},
                    coords={"band": np.array(IMG + COV, dtype=object), "y": grid.y_coords(),
                            "x": grid.x_coords(), "spatial_ref": ((), 0, grid.spatial_ref_attrs())},
                    attrs={"misomap": {"imagery_datetime": ["2019-06-15T00:00:00Z", "2023-08-15T00:00:00Z"]},
                           COMPLETE_KEY: {"records_sha256": "written-whole", "chunks": 0}})
    ds.chunk({"band": -1, "y": 512, "x": 512}).to_zarr(path, zarr_format=3, mode="w", consolidated=True)


@contextlib.contextmanager
def bucket_with_cube(tmp: Path, size: int) -> Iterator[tuple[Any, str]]:
    """SeaweedFS on loopback with the cube copied into bucket `maps`."""
    import s3fs

    from misomap.services.s3 import seaweedfs_s3

    write_cube(tmp / "cube.zarr", size)
    with seaweedfs_s3(tmp) as (server, _):
        fs = s3fs.S3FileSystem(**server.storage_options())
        fs.mkdir("maps")
        t0 = time.perf_counter()
        fs.put(str(tmp / "cube.zarr"), "maps/cube.zarr", recursive=True)
        say(f"  cube {size}² px × {len(IMG) + len(COV)} bands copied to s3://maps/cube.zarr on SeaweedFS in "
            f"{time.perf_counter() - t0:.1f} s")
        yield server, "s3://maps/cube.zarr"


def end_to_end(kind: str, device: torch.device, server: Any, cube: str, size: int, chunk: int, tmp: Path,
               kernel_rate: float | None) -> float:
    """`misomap predict` (the CLI) with a `kind` model on the S3 cube, map written to S3; returns the
    chunk phase's px/s."""
    import yaml

    from misomap.models.miso.train import model_checkpoint_bytes

    ckpt = tmp / f"{kind}.safetensors"
    ckpt.write_bytes(model_checkpoint_bytes(_model(kind)))
    out = f"s3://maps/{kind}-{device.type}"
    cfg = {"name": f"gpu-check-{kind}", "storage": {"endpoint_url": server.endpoint_url},
           "map": {"cube": cube, "output": out, "model": "miso", "model_path": str(ckpt), "chunk_px": chunk,
                   "workers": 1, "device": device.type}}
    (tmp / f"{kind}.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, **server.env(), "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    exe = Path(sys.executable).parent / "misomap"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "misomap.cli"]
    with Busy(device) as busy:
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, "predict", "--config", str(tmp / f"{kind}.yaml")], capture_output=True,
                              text=True, env=env, check=False)
        wall = time.perf_counter() - t0
    if proc.returncode:
        say(f"  {kind} end to end FAILED (exit {proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-3000:]}")
        return float("nan")
    px = size * size
    bars = re.findall(r"map chunks: 100%\|[^|]*\| \d+/\d+ \[(\d+):(\d+)<", proc.stderr)
    phase = int(bars[-1][0]) * 60 + int(bars[-1][1]) if bars else float("nan")
    busy_all = busy.mean()
    active = [t for t, u, _ in busy.samples if u > 0]
    busy_active = busy.mean(active[0], active[-1]) if active else float("nan")
    rate = px / phase if phase else float("nan")
    kernel_txt = f" = {100 * rate / kernel_rate:.0f}% of the kernel-only {kernel_rate:,.0f} px/s" if kernel_rate else ""
    say(f"  {kind} end to end: `misomap predict` {size}² px ({chunk} px chunks, 1 {device.type} worker, cube and map on "
        f"S3): whole command {wall:.1f} s → {px / wall:,.0f} px/s; chunk phase ~{phase:.0f} s → {rate:,.0f} px/s"
        f"{kernel_txt}; GPU busy {busy_all:.0f}% over the command, {busy_active:.0f}% from first to last busy sample")
    say("    " + proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "    (no summary line)")
    return rate


# 4. training -------------------------------------------------------------------------------------

def training(kind: str, device: torch.device, steps: int, batch: int) -> None:
    """Optimiser steps per second and peak memory of MISO training (forward, losses, backward, AdamW;
    bf16 autocast on a GPU) on random crops with labels at every query slot."""
    from misomap.models.miso.model import MisoModel

    cfg = model_config(kind)
    torch.manual_seed(0)
    model = MisoModel(cfg, (0.0, 0.0, 4096 * RES, 4096 * RES)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    crop, n_img, q = cfg.crops.size_px, len(IMG), cfg.crops.label_slots
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    x = torch.randn(batch, n_img + len(COV), crop, crop, device=device)
    pix = torch.rand(batch, q, 2, device=device) * crop
    xy = torch.rand(batch, q, 2, device=device, dtype=torch.float64) * 4096 * RES
    pf = torch.randint(0, 2, (batch, q), device=device).float()
    so = torch.randint(0, len(SOIL_ORDERS), (batch * q,), device=device)

    def step() -> None:
        with amp:
            out = model(x[:, :n_img], x[:, n_img:], pix, xy).logits
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out["permafrost"].float(), pf) + \
            torch.nn.functional.cross_entropy(out["soil_order"].float().reshape(-1, len(SOIL_ORDERS)), so)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    sync(device)
    reset_peak(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    sec = (time.perf_counter() - t0) / steps
    n_params = sum(p.numel() for p in model.parameters())
    say(f"  {kind} training ({n_params / 1e6:.1f} M parameters, batch {batch} crops of {crop} px, {q} labelled "
        f"queries each): {1 / sec:.2f} steps/s, {batch / sec:.1f} crops/s; peak memory {peak_gib(device):.2f} GiB")


# main --------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run-cpu", action="store_true", help="every part on the CPU at tiny sizes")
    ap.add_argument("--skip", nargs="*", default=[], choices=["kernel", "precision", "e2e", "train"])
    ap.add_argument("--compile", nargs="*", default=[], help="also time torch.compile modes (default, "
                    "reduce-overhead = CUDA graphs, max-autotune) of the query batch")
    ap.add_argument("--e2e-size", type=int, default=4096, help="side (px) of the end-to-end cube")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    dry = args.dry_run_cpu
    if dry:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    elif not torch.cuda.is_available():
        sys.exit(f"gpu_check: no CUDA device visible (torch {torch.__version__}); --dry-run-cpu tests the script")
    else:
        device = torch.device("cuda")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = float(os.environ.get("PEAK_TFLOPS", "0")) * 1e12 or next(
        (v for k, v in PEAK_BF16.items() if k in name), float("nan"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    say(f"gpu_check: device {name}; torch {torch.__version__}; bf16 dense peak {peak / 1e12:.0f} TFLOP/s; "
        f"commit {commit or '?'}; {'--dry-run-cpu (tiny sizes, CPU)' if dry else 'full'}")
    start = time.perf_counter()
    pixels = statewide_pixels()
    say(f"statewide map pixels (misomap plan land tiles): 30 m {pixels[30]:.3e}, 10 m {pixels[10]:.3e}")
    rates: dict[str, dict[str, float]] = {}

    if "kernel" not in args.skip:
        say("1. kernel: predictor on an in-memory chunk (before = torchvision attention; now = SDPA)")
        variants = [{"sdpa": False, "fp32_tail": "heads"}, {"fp32_tail": "heads"}, {}]
        variants += [{"compile": m} for m in args.compile]
        rates["demo"] = kernel("demo", 64 if dry else 2048, 1 if dry else 3, device, peak, variants, False)
        if not dry:
            rates["paper"] = kernel("paper", 1024, 2, device, peak, variants, True)
    if "precision" not in args.skip:
        say("2. precision: a trained demo model, GPU bf16 against the CPU fp32 path")
        precision(device, 4 if dry else 400, 96 if dry else 512, 32 if dry else 256, 8 if dry else 32)
    e2e: dict[str, float] = {}
    if "e2e" not in args.skip:
        say("3. end to end: `misomap predict` on a cube in a SeaweedFS bucket")
        size = 128 if dry else args.e2e_size
        with tempfile.TemporaryDirectory() as tmp, bucket_with_cube(Path(tmp), size) as (server, cube):
            for kind in ("demo",) if dry else ("demo", "paper"):
                e2e[kind] = end_to_end(kind, device, server, cube, size, 64 if dry else 1024, Path(tmp),
                                       rates.get(kind, {}).get("rate"))
    if "train" not in args.skip:
        say("4. MISO training")
        training("demo", device, 1 if dry else 30, 4 if dry else 16)
        if not dry:
            training("paper", device, 10, 16)
    say("5. all of Alaska (land tiles)")
    for kind in rates:
        for res in (30, 10):
            px = pixels[res]
            kern = px / rates[kind]["rate"] / 3600
            bound = px * rates[kind]["flop"] / peak / 3600
            e = px / e2e[kind] / 3600 if e2e.get(kind) else float("nan")
            say(f"  {kind} at {res} m: kernel {kern:.2f} h, end to end {e:.2f} h, FLOP-bound {bound:.3f} h")
    say(f"gpu_check done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
