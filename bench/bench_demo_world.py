"""Benchmark the demo world: generation time, peak memory and output size for one size, the
speed of the tile sampler and COG encoding against the naive way (ratios from one run), and how
much of the truth is contextual (latent variance split and a held-out-block classifier test).

    .venv/bin/python bench/bench_demo_world.py --size demo
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from rasterio.io import MemoryFile
from scipy import ndimage

from misomap.cube.grid import Grid
from misomap.demo.climate import make_climate
from misomap.demo.context import context_score
from misomap.demo.publish import cog_bytes
from misomap.demo.spec import world_size
from misomap.demo.terrain import make_terrain
from misomap.demo.tiles import Sampler, layout_tiles
from misomap.demo.truth import make_truth
from misomap.demo.world import generate_world

def _timed(fn, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_sampler(size: str) -> None:
    """Precomputed bilinear gathers vs scipy map_coordinates for 10 bands on one tile."""
    spec = world_size(size)
    grid = spec.grid()
    surface_grid = Grid(grid.crs, spec.base_m, *grid.bounds)
    tile = layout_tiles(grid, spec.tile_km, spec.overlap_km, spec.s2_coarse_m)[0]
    sampler = Sampler(tile, spec.s2_fine_m, surface_grid)
    bands = np.random.default_rng(0).random((10, *surface_grid.shape), dtype=np.float32)
    r, c = sampler.coords
    sampler.values(bands[0])  # build the gather tables once, as the world does per tile
    ours = _timed(lambda: [sampler.values(b) for b in bands])
    naive = _timed(lambda: [ndimage.map_coordinates(b, [r, c], order=1, mode="nearest") for b in bands])
    diff = max(float(np.abs(sampler.values(b) - ndimage.map_coordinates(b, [r, c], order=1,
                                                                          mode="nearest")).max())
               for b in bands[:2])
    print(f"sampler  {tile.shape(spec.s2_fine_m)} px x 10 bands: ours {ours * 1e3:.0f} ms, "
          f"map_coordinates {naive * 1e3:.0f} ms, speed-up x{naive / ours:.1f} (max diff {diff:.1e})")


def bench_cog(size: str) -> None:
    """Our COG settings (ZSTD 1) vs GDAL's COG default (DEFLATE 6) on a realistic band."""
    spec = world_size(size)
    tile = layout_tiles(spec.grid(), spec.tile_km, spec.overlap_km, spec.s2_coarse_m)[0]
    rng = np.random.default_rng(0)
    base = ndimage.gaussian_filter(rng.random(tile.shape(spec.s2_fine_m)), 8)
    dn = (1000 + 4000 * (base - base.min()) / np.ptp(base) + rng.normal(0, 30, base.shape)).astype(np.uint16)
    tr = tile.transform(spec.s2_fine_m)
    crs = f"EPSG:{tile.epsg}"
    ours = _timed(lambda: cog_bytes(dn, crs, tr, 0, spec.cog_blocksize, 1e-4, -0.1))

    def gdal_default() -> bytes:
        with MemoryFile() as mem:
            with mem.open(driver="COG", width=dn.shape[1], height=dn.shape[0], count=1, dtype="uint16",
                          crs=crs, transform=tr, nodata=0, compress="DEFLATE") as dst:
                dst.write(dn[None])
            return mem.read()

    naive = _timed(gdal_default)
    ours_kb = len(cog_bytes(dn, crs, tr, 0, spec.cog_blocksize)) >> 10
    print(f"COG      {dn.shape} uint16: ours {ours * 1e3:.0f} ms ({ours_kb} KB), GDAL default "
          f"DEFLATE {naive * 1e3:.0f} ms ({len(gdal_default()) >> 10} KB), speed-up x{naive / ours:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="demo", choices=["tiny", "demo", "bench"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="Where to write (default: a temp folder).")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "world"
        t = time.perf_counter()
        m = generate_world(out, args.seed, args.size)
        gen_s = time.perf_counter() - t
        files = [p for p in Path(out).rglob("*") if p.is_file()]
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mb = sum(p.stat().st_size for p in files) / 1e6
        print(f"world    size={args.size} seed={args.seed}: grid {m.grid['bounds']} at "
              f"{m.cube_resolution_m:g} m; {len(files)} files, {mb:.0f} MB; "
              f"generated in {gen_s:.1f} s; peak RSS {peak_mb:.0f} MB")
        print(f"items    {m.collections}")
        print(f"balance  {m.class_balance}")
        print(f"variance {m.truth_variance_shares}  (latent ground index, land pixels)")

    bench_sampler(args.size)
    bench_cog(args.size)
    spec = world_size(args.size)
    grid = spec.grid()
    terrain = make_terrain(args.seed, grid.shape, grid.resolution)
    climate = make_climate(args.seed, terrain, grid.resolution)
    truth = make_truth(args.seed, terrain, climate, grid.resolution, (grid.x_coords(), grid.y_coords()))
    score = context_score(args.seed, terrain, climate, truth)
    print(f"context  permafrost accuracy on held-out blocks: covariates at the pixel "
          f"{score.pixel_accuracy:.3f}, with their neighbourhood {score.context_accuracy:.3f} "
          f"(gain {score.gain:+.3f}; train {score.n_train}, test {score.n_test} px)")


if __name__ == "__main__":
    main()
