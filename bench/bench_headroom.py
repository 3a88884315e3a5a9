"""Context headroom of a demo world: with abundant truth labels, how much map accuracy can context
add beyond what a pixel carries, and can a model see the generator's contextual drivers in the cube?

    .venv/bin/python bench/bench_headroom.py [--seeds 0 1 2 7] [--out /tmp/headroom] [--n 20000]

Per world seed: the demo world and its cube (built as `misomap demo` builds them, kept under --out),
and the generator's own contextual drivers recomputed from the seed (distance to lakes and rivers,
snow drift into lee slopes, basin organic layer, fire scars: misomap.demo.truth). Truth labels are
sampled from the truth rasters on a checkerboard of spatial blocks (`--block` px): `--n` training
pixels on one colour, `--n` test pixels on the other. One Random Forest recipe (`--trees`, one
thread) is fitted on four feature sets:

- `pixel`: the cube's bands at the pixel (the RF baseline's inputs);
- `pixel+focal`: plus Gaussian focal means of every band at 90, 270 and 810 m (what a model can
  learn of context from the cube alone);
- `pixel+drivers`: plus the generator's contextual drivers (the ceiling context can reach);
- `pixel+focal+drivers`.

Each driver is also regressed from `pixel+focal` (held-out R²): is it observable from the inputs?
Writes headroom.csv (every figure) and headroom.md (tables) under --results; each world's figures
are also kept beside it (headroom_rows.json), so a rerun with more seeds measures only the new ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import f1_score, r2_score, recall_score

from misomap.core.classes import SOIL_ORDERS
from misomap.demo.climate import make_climate
from misomap.demo.spec import world_size
from misomap.demo.terrain import make_terrain
from misomap.demo.truth import make_truth

log = logging.getLogger("headroom")
FOCAL_M = (90.0, 270.0, 810.0)
SETS = ("pixel", "pixel+focal", "pixel+drivers", "pixel+focal+drivers")


def world_and_cube(seed: int, root: Path, size: str) -> Path:
    """The demo world of `seed` and its cube under root/seed<N> (made once, kept)."""
    from misomap.core.config_base import StorageConfig
    from misomap.core.errors import MisomapError
    from misomap.cube.store import require_complete
    from misomap.demo.world import generate_world, rustac_serve_files
    from misomap.jobs.build_cube import run_build_cube
    from misomap.jobs.demo import _same_world, demo_run_config
    from misomap.services.stac_api import stac_api_server

    out = (root / f"seed{seed}").resolve()
    cube = out / "cube.zarr"
    try:
        if (cube / "zarr.json").exists():
            require_complete(str(cube), StorageConfig())
            return cube
    except MisomapError as err:  # an unfinished build: finish it
        log.info("cube %s: %s", cube, err)
    out.mkdir(parents=True, exist_ok=True)
    if not _same_world(out / "world", seed, size):
        generate_world(out / "world", seed=seed, size=size)
    with stac_api_server(rustac_serve_files(out / "world"), out / "services") as (url, _):
        run_build_cube(demo_run_config(out / "world", out, url, seed))
    return cube


def drivers(seed: int, size: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """The generator's contextual drivers, and the truth (permafrost, soil order) and land mask."""
    grid = world_size(size).grid()
    res = grid.resolution
    terrain = make_terrain(seed, grid.shape, res)
    climate = make_climate(seed, terrain, res)
    truth = make_truth(seed, terrain, climate, res, (grid.x_coords(), grid.y_coords()))
    dist = {name: ndimage.distance_transform_edt(~mask) * res if mask.any() else np.full(mask.shape, 1e5)
            for name, mask in (("dist_lake_m", terrain.lake), ("dist_river_m", terrain.river))}
    out = {**dist, "snow_drift": truth.snow_drift, "organic_m": truth.organic, "fire": truth.fire}
    return ({k: np.asarray(v, np.float32) for k, v in out.items()}, truth.permafrost, truth.soil_order,
            ~terrain.water)


def focal(data: np.ndarray, res: float) -> tuple[np.ndarray, list[str]]:
    """NaN-aware Gaussian focal means of every band at FOCAL_M scales: (band*scales, H, W)."""
    valid = np.isfinite(data)
    filled = np.where(valid, data, 0).astype(np.float32)
    out, names = [], []
    for m in FOCAL_M:
        s = m / res
        num = ndimage.gaussian_filter(filled, (0, s, s), mode="reflect")
        den = ndimage.gaussian_filter(valid.astype(np.float32), (0, s, s), mode="reflect")
        out.append(num / np.maximum(den, 1e-6))
        names.append(int(m))
    return np.concatenate(out, axis=0), names


def run_seed(seed: int, args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    t0 = time.perf_counter()
    cube = world_and_cube(seed, args.out, args.size)
    da = xr.open_zarr(cube)["data"]
    bands = [str(b) for b in da["band"].values if not str(b).endswith("_scl")]
    data = da.sel(band=bands).values.astype(np.float32)
    drv, pf, so, land = drivers(seed, args.size)
    res = float(abs(da["x"].values[1] - da["x"].values[0]))
    foc, scales = focal(data, res)
    h, w = pf.shape
    assert data.shape[1:] == (h, w), "the cube and the regenerated truth share the grid"
    rows, cols = np.mgrid[0:h, 0:w]
    colour = ((rows // args.block + cols // args.block) % 2).ravel()
    ok = land.ravel() & np.isfinite(data).all(axis=0).ravel()
    rng = np.random.default_rng(seed)
    train = rng.choice(np.flatnonzero(ok & (colour == 0)), args.n, replace=False)
    test = rng.choice(np.flatnonzero(ok & (colour == 1)), args.n, replace=False)
    pix = data.reshape(len(bands), -1).T
    fo = foc.reshape(foc.shape[0], -1).T
    dr = np.stack([v.ravel() for v in drv.values()], axis=1)
    feats = {"pixel": pix, "pixel+focal": np.hstack([pix, fo]), "pixel+drivers": np.hstack([pix, dr]),
             "pixel+focal+drivers": np.hstack([pix, fo, dr])}
    labels = {"permafrost": pf.ravel().astype(int), "soil_order": so.ravel().astype(int)}
    rows_out, drv_out = [], []
    for target, y in labels.items():
        names = ("0", "1") if target == "permafrost" else SOIL_ORDERS
        for name, X in feats.items():
            rf = RandomForestClassifier(args.trees, n_jobs=1, random_state=seed, min_samples_leaf=2)
            rf.fit(X[train], y[train])
            p = rf.predict(X[test])
            yt = y[test]
            present = sorted(set(yt))
            rec = recall_score(yt, p, labels=present, average=None, zero_division=0)
            rows_out.append({"seed": seed, "target": target, "features": name,
                             "accuracy": float((p == yt).mean()),
                             "macro_f1": float(f1_score(yt, p, labels=present, average="macro", zero_division=0)),
                             **{f"recall_{names[c]}": float(r) for c, r in zip(present, rec)}})
            log.info("seed %d %s %-20s acc %.3f", seed, target, name, rows_out[-1]["accuracy"])
    Xo = feats["pixel+focal"]
    for j, name in enumerate(drv):
        reg = RandomForestRegressor(args.trees // 2, n_jobs=1, random_state=seed, min_samples_leaf=2,
                                    max_features=0.33)
        reg.fit(Xo[train], dr[train, j])
        if np.ptp(dr[test, j]) == 0:  # e.g. no lake in this world: nothing to recover
            drv_out.append({"seed": seed, "driver": name, "r2_from_pixel": np.nan, "r2_from_pixel_focal": np.nan})
            continue
        r2_pf = r2_score(dr[test, j], reg.predict(Xo[test]))
        reg.fit(pix[train], dr[train, j])
        r2_p = r2_score(dr[test, j], reg.predict(pix[test]))
        drv_out.append({"seed": seed, "driver": name, "r2_from_pixel": float(r2_p),
                        "r2_from_pixel_focal": float(r2_pf)})
    log.info("seed %d done in %.0f s (focal scales %s m)", seed, time.perf_counter() - t0, scales)
    return rows_out, drv_out


def tables(acc: pd.DataFrame, drv: pd.DataFrame, args: argparse.Namespace) -> str:
    """The markdown tables: accuracy and macro F1 per feature set (mean over seeds and per seed),
    per-class recall gains of the drivers, and how well each driver is recovered from the cube."""
    lines = [f"# Context headroom ({args.size} worlds, seeds {' '.join(map(str, sorted(set(acc['seed']))))})", "",
             (f"RF ({args.trees} trees, min_samples_leaf 2) on {args.n} truth pixels per world, tested on "
             f"{args.n} pixels of the other colour of a {args.block}-px checkerboard of blocks."), ""]
    for target in ("permafrost", "soil_order"):
        sub = acc[acc["target"] == target]
        piv = sub.pivot_table(index="seed", columns="features", values=["accuracy", "macro_f1"])
        lines += [f"## {target}", "", "| seed | " + " | ".join(f"acc {s}" for s in SETS) + " | "
                  + " | ".join(f"F1 {s}" for s in SETS) + " |", "|---" * (1 + 2 * len(SETS)) + "|"]
        for seed, row in piv.iterrows():
            lines.append(f"| {seed} | " + " | ".join(f"{row[('accuracy', s)]:.3f}" for s in SETS) + " | "
                         + " | ".join(f"{row[('macro_f1', s)]:.3f}" for s in SETS) + " |")
        mean = piv.mean()
        lines.append("| mean | " + " | ".join(f"{mean[('accuracy', s)]:.3f}" for s in SETS) + " | "
                     + " | ".join(f"{mean[('macro_f1', s)]:.3f}" for s in SETS) + " |")
        rec = [c for c in sub.columns if c.startswith("recall_")]
        per = sub.groupby("features")[rec].mean().reindex(list(SETS)).dropna(axis=1, how="all")
        lines += ["", f"Recall per class (mean over seeds), {target}:", "",
                  "| features | " + " | ".join(c[7:] for c in per.columns) + " |", "|---" * (1 + per.shape[1]) + "|"]
        lines += [f"| {idx} | " + " | ".join(f"{v:.3f}" for v in r) + " |" for idx, r in per.iterrows()]
        lines.append("")
    d = drv.groupby("driver")[["r2_from_pixel", "r2_from_pixel_focal"]].agg(["mean", "min"])
    lines += ["## Are the drivers observable in the cube?", "",
              ("Held-out R² of an RF regressing each driver from the cube's pixel bands, and from the pixel "
              "bands plus their focal means (mean and worst over seeds):"), "",
              "| driver | R² pixel (mean) | R² pixel (min) | R² pixel+focal (mean) | R² pixel+focal (min) |",
              "|---|---|---|---|---|"]
    lines += [f"| {k} | {r[('r2_from_pixel', 'mean')]:.3f} | {r[('r2_from_pixel', 'min')]:.3f} | "
              f"{r[('r2_from_pixel_focal', 'mean')]:.3f} | {r[('r2_from_pixel_focal', 'min')]:.3f} |"
              for k, r in d.iterrows()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 7])
    ap.add_argument("--size", default="demo")
    ap.add_argument("--out", type=Path, default=Path("/tmp/headroom"))
    ap.add_argument("--results", type=Path, default=Path("bench/results/headroom"))
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--trees", type=int, default=100)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    acc, drv = [], []
    args.results.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:  # the tables are rewritten after each world: a long run reports as it goes
        cache = args.out / f"seed{seed}" / "headroom_rows.json"  # a world already measured is read back
        if cache.exists():
            a, d = json.loads(cache.read_text())
        else:
            a, d = run_seed(seed, args)
            cache.write_text(json.dumps([a, d]))
        acc += a
        drv += d
        acc_df, drv_df = pd.DataFrame(acc), pd.DataFrame(drv)
        acc_df.to_csv(args.results / "headroom.csv", index=False)
        drv_df.to_csv(args.results / "headroom_drivers.csv", index=False)
        (args.results / "headroom.md").write_text(tables(acc_df, drv_df, args))
    print((args.results / "headroom.md").read_text())


if __name__ == "__main__":
    main()
