"""Peak memory of a real, short MISO training run on two cube sizes, one command:
`.venv/bin/python bench/bench_miso_train.py`.

Writes two cubes in the layout `misomap cube build` writes (lineage, complete mark, chunks of 256 px)
with the demo's 21 MISO bands (11 imagery, 10 covariates, float32): 1024² px (30 km at 30 m) and
4x that area. Then, in a fresh process per cube, runs what `misomap train-miso` runs for one fold:
the band readers (`load_arrays`), per-band statistics from the whole cube (`resolve_config`), and
`cross_validate` of the demo's CPU-sized MISO on one spatial fold of 400 pedons (`--steps` optimiser
steps of 32 crops, validation each epoch, decision offsets, test-fold predictions, checkpoints).
`--eager` adds the same run on bands loaded whole into memory (the old `CubeArrays`) for contrast;
`--cache-mb` sets the lazy readers' chunk cache (`miso.train.cube_cache_mb`, default 128 MiB per
encoder: a cache large enough to hold a whole cube lets memory grow with it up to that cap).
Prints peak RSS above the process's baseline after imports, time, and the ratios between the two
sizes. Asserts no times.
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

CHUNK = 256
N_PEDONS = 400


def _proc_kb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _bands() -> tuple[list[str], list[str]]:
    from misomap.demo.run_sections import CLIMATE, S1_BANDS, S2_BANDS, TERRAIN

    return [f"s2_summer_{b}" for b in S2_BANDS] + list(S1_BANDS), list(TERRAIN + CLIMATE)


def _grid(side: int):
    from misomap.cube.grid import Grid

    return Grid("EPSG:3338", 30.0, 99_990.0, 1_899_990.0, 99_990.0 + side * 30, 1_899_990.0 + side * 30)


def write_cube(path: Path, side: int) -> None:
    """A finished cube (template, chunk rows, complete mark) of smooth band patterns."""
    from misomap.core.config_base import StorageConfig
    from misomap.core.storage import Target
    from misomap.cube.store import consolidate, mark_complete, template, write_template
    from misomap.runtime.zarr_io import write_region

    imagery, covariates = _bands()
    bands = imagery + covariates
    grid, storage, loc = _grid(side), StorageConfig(), str(path)
    lineage = {"software": "bench_miso_train", "grid": grid.to_dict(), "chunk": CHUNK, "bands": bands,
               "fingerprint": f"bench-{side}"}
    write_template(template(grid, bands, CHUNK, lineage), loc, storage, 3, 3)
    xx = np.arange(side, dtype=np.float32)
    for row0 in range(0, side, CHUNK):
        yy = np.arange(row0, min(row0 + CHUNK, side), dtype=np.float32)[:, None]
        block = np.stack([np.sin(xx / (40 + 7 * i)) + np.cos(yy / (55 + 5 * i)) + 0.1 * i
                          for i in range(len(bands))]).astype(np.float32)
        write_region(Target(loc, storage), {"data": block}, slice(row0, row0 + block.shape[1]),
                     slice(0, side))
    consolidate(loc, storage)
    mark_complete(loc, storage, f"bench-{side}", {})  # synthetic chunks: no records to check them against


def measure(cube: str, steps: int, eager: bool, work: str, cache_mb: int | None) -> dict:
    import pandas as pd

    from misomap.config import config_from_dict
    from misomap.demo.run_sections import demo_miso_section
    from misomap.jobs.train_miso import context
    from misomap.training.miso_cv import cross_validate
    from misomap.training.miso_inputs import CubeArrays, load_arrays

    imagery, covariates = _bands()
    section = demo_miso_section({"bands": imagery}, {"bands": covariates}, ["block"], max_folds=1)
    section["train"] = {**section["train"], "epochs": 2, "steps_per_epoch": max(steps // 2, 1),
                        "max_steps": steps, "device": "cpu",
                        **({"cube_cache_mb": cache_mb} if cache_mb is not None else {})}
    config = config_from_dict({"name": "bench", "workdir": work, "labels": {"cube": cube}, "miso": section,
                               "evaluation": {"class_weighting": "threshold", "val_fraction": 0.15}})
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS counts from here
    base = _proc_kb("VmRSS")
    t = time.perf_counter()
    arrays = load_arrays(cube, config.storage, config.miso)
    if eager:
        everything = (slice(None),) * 3
        arrays = CubeArrays(arrays.imagery[everything], arrays.covariates[everything], arrays.grid)
    grid = arrays.grid
    rng = np.random.default_rng(0)
    x = rng.uniform(grid.xmin + 2_000, grid.xmax - 2_000, N_PEDONS)
    y = rng.uniform(grid.ymin + 2_000, grid.ymax - 2_000, N_PEDONS)
    table = pd.DataFrame({"pedon_id": [f"p{i}" for i in range(N_PEDONS)], "x": x, "y": y,
                          "permafrost": rng.integers(0, 2, N_PEDONS).astype(str),
                          "soil_order": np.asarray(["Gelisols", "Inceptisols", "Entisols"])[
                              rng.integers(0, 3, N_PEDONS)]})
    block = np.floor((x - grid.xmin) / (grid.xmax - grid.xmin) * 5).astype(int)  # five x-strips
    folds = pd.DataFrame({"pedon_id": table["pedon_id"], "block": block})
    preds, stats = cross_validate(context(config), config.miso, "miso", arrays, table, folds)
    return {"seconds": time.perf_counter() - t, "peak_rss_mb": (_proc_kb("VmHWM") - base) / 1024,
            "test_pedons": int(preds["pedon_id"].nunique()), "folds": stats["folds_trained"]}


def _child(cube: Path, steps: int, eager: bool, work: Path, cache_mb: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", str(cube), "--steps", str(steps), "--work", str(work)]
    cmd += ["--cache-mb", str(cache_mb)] if cache_mb is not None else []
    out = subprocess.run(cmd + (["--eager"] if eager else []), check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", type=int, nargs="+", default=[1024, 2048], help="cube sides (px)")
    ap.add_argument("--steps", type=int, default=20, help="optimiser steps per training run")
    ap.add_argument("--eager", action="store_true", help="also train on bands loaded whole (contrast)")
    ap.add_argument("--cache-mb", type=int,
                    help="miso.train.cube_cache_mb: chunk cache per encoder's reader (default: the config's)")
    ap.add_argument("--child")
    ap.add_argument("--work")
    args = ap.parse_args()
    if args.child:
        import torch  # noqa: F401 - imports are not part of the measurement

        import misomap.jobs.train_miso
        import misomap.training.miso_cv  # noqa: F401

        print(json.dumps(measure(args.child, args.steps, args.eager, args.work, args.cache_mb)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-miso-train-"))
    imagery, covariates = _bands()
    nb = len(imagery) + len(covariates)
    rows = {}
    modes = ["lazy", "eager"] if args.eager else ["lazy"]
    for side in args.sides:
        cube = tmp / f"cube-{side}.zarr"
        write_cube(cube, side)
        for mode in modes:
            rows[(mode, side)] = r = _child(cube, args.steps, mode == "eager", tmp / f"work-{mode}-{side}",
                                             args.cache_mb)
            print(f"{mode:<5} cube {side}² px x {nb} bands ({side * side * nb * 4 / 2**20:,.0f} MiB raw): "
                  f"train-miso 1 fold, {args.steps} steps, {r['test_pedons']} test pedons: {r['seconds']:.0f} s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    for mode in modes:
        for small, large in zip(args.sides, args.sides[1:]):
            a, b = rows[(mode, small)], rows[(mode, large)]
            print(f"{mode}: {(large / small) ** 2:.0f}x the cube area -> peak RSS x"
                  f"{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}, time x{b['seconds'] / a['seconds']:.2f}")


if __name__ == "__main__":
    main()
