"""Training input memory on two cube sizes, one command: `.venv/bin/python bench/bench_crops.py`.

Writes two synthetic cubes (9 float32 bands, chunks of 256 px; the second has 4x the area), then in
a fresh process per measurement draws MISO training batches (labelled crops around pedons plus
unlabelled crops, `CropSampler` as `train_miso` uses it, 128 px crops) either from the bands loaded
whole into memory (the old `CubeArrays`) or from the lazy chunk-cached reader (misomap.cube.crops, a 16 MiB cache by default),
and computes the per-band statistics the config needs. Prints peak RSS (above the process's baseline
after imports) and time for both at both sizes, and the ratios. Asserts no times.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BANDS = [f"b{i}" for i in range(9)]
CHUNK = 256


def _proc_kb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def write_cube(path: Path, side: int) -> None:
    import xarray as xr

    from misomap.cube.grid import Grid

    grid = Grid("EPSG:3338", 10.0, 200_000.0, 1_600_000.0, 200_000.0 + side * 10, 1_600_000.0 + side * 10)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    data = np.stack([np.sin(xx / (40 + 7 * i)) + np.cos(yy / (55 + 5 * i)) for i in range(len(BANDS))])
    ds = xr.Dataset({"data": (("band", "y", "x"), data.astype(np.float32), {"grid_mapping": "spatial_ref"})},
                    coords={"band": BANDS, "y": grid.y_coords(), "x": grid.x_coords(),
                            "spatial_ref": ((), 0, grid.spatial_ref_attrs())})
    ds.chunk({"band": len(BANDS), "y": CHUNK, "x": CHUNK}).to_zarr(path, zarr_format=3, mode="w", consolidated=True)


def measure(mode: str, path: str, batches: int, cache_mb: int) -> dict:
    from misomap.core.config_base import StorageConfig
    from misomap.cube.crops import band_mean_std, open_bands
    from misomap.cube.reader import cube_grid, open_cube
    from misomap.models.miso.config import CropConfig
    from misomap.models.miso.crops import CropSampler, Points

    Path("/proc/self/clear_refs").write_text("5")
    base = _proc_kb("VmRSS")
    t = time.perf_counter()
    ds = open_cube(str(path), StorageConfig())
    grid = cube_grid(ds["data"])
    if mode == "eager":
        arr = np.ascontiguousarray(ds["data"].sel(band=BANDS).values.astype(np.float32))
    else:
        arr = open_bands(path, StorageConfig(), BANDS, cache_bytes=cache_mb * 2**20)
    band_mean_std(arr)
    rng = np.random.default_rng(0)
    n = 400
    pts = Points(rng.uniform(grid.xmin, grid.xmax, n), rng.uniform(grid.ymin, grid.ymax, n),
                 rng.integers(0, 2, n), rng.integers(0, 7, n))
    sampler = CropSampler(arr, None, grid, pts, CropConfig(size_px=128, jitter_px=16))
    for _ in range(batches):
        sampler.labelled(rng.integers(0, n, 8), rng)
        sampler.unlabelled(8, rng)
    return {"seconds": time.perf_counter() - t, "peak_rss_mb": (_proc_kb("VmHWM") - base) / 1024}


def _child(mode: str, path: Path, batches: int, cache_mb: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--cube", str(path), "--batches", str(batches),
           "--cache-mb", str(cache_mb)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=1536, help="side of the smaller cube (px)")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--cache-mb", type=int, default=16, help="lazy reader's chunk cache (MiB)")
    ap.add_argument("--child")
    ap.add_argument("--cube")
    args = ap.parse_args()
    if args.child:
        import misomap.models.miso.crops  # noqa: F401 - imports are not part of the measurement
        import xarray  # noqa: F401
        import zarr  # noqa: F401

        print(json.dumps(measure(args.child, args.cube, args.batches, args.cache_mb)))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-crops-"))
    rows = {}
    for scale in (1, 2):
        side = args.side * scale
        path = work / f"cube-{side}.zarr"
        write_cube(path, side)
        for mode in ("eager", "lazy"):
            rows[(mode, scale)] = r = _child(mode, path, args.batches, args.cache_mb)
            print(f"{mode:<5} cube {side}² px x {len(BANDS)} bands ({side * side * len(BANDS) * 4 / 2**20:,.0f} MiB "
                  f"raw): {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    for mode in ("eager", "lazy"):
        a, b = rows[(mode, 1)], rows[(mode, 2)]
        print(f"{mode}: 4x the cube area -> peak RSS x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}, "
              f"time x{b['seconds'] / a['seconds']:.2f}")
    print(f"at the larger cube: eager / lazy peak RSS = "
          f"{rows[('eager', 2)]['peak_rss_mb'] / rows[('lazy', 2)]['peak_rss_mb']:.1f}x")


if __name__ == "__main__":
    main()
