"""Cube-build benchmark, one command: `.venv/bin/python bench/bench_cube.py [--world DIR]`.

On the demo world (generated once into --world if missing) and its real STAC API, for a Sentinel-2
summer composite (9 bands + SCL masking):
- throughput of `misomap cube build` vs the naive way (read every item whole with rasterio,
  reproject in memory, composite with numpy) on the same region, as megapixel-bands per second;
- peak memory (RSS above the process's baseline after imports) of both at two region sizes (4x the
  area apart), each run in its own process;
- our reader (per-thread cached datasets, shared nearest warps) vs stackstac vs odc-stac loading the same items
  onto the same region chunk by chunk, as the builder does (the loader choice).
Prints ratios measured in this one run; asserts no times.
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

S2_KEYS = ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "swir16", "swir22")
SCL_DROP = (0, 1, 3, 8, 9, 10, 11)


def _region(world: Path, frac: float) -> tuple[list[float], float]:
    grid = json.loads((world / "world.json").read_text())["grid"]
    xmin, ymin, xmax, ymax = grid["bounds"]
    res = grid["resolution"]
    w = round((xmax - xmin) * frac / res) * res
    h = round((ymax - ymin) * frac / res) * res
    return [xmin, ymax - h, xmin + w, ymax], res


def _cube_section(world: Path, out: str, bounds: list[float], res: float, chunk: int) -> dict:
    manifest = json.loads((world / "world.json").read_text())
    start, end = manifest["seasons"]["summer"]
    return {"out": out, "bounds": bounds, "resolution": res, "chunk": chunk,
            "datetime": f"{min(manifest['years'])}-01-01/{max(manifest['years'])}-12-31",
            "seasons": {"summer": {"start": start, "end": end}}, "workers": 2,
            "sources": [{"collection": "sentinel-2-l2a", "kind": "optical", "prefix": "s2",
                         "mask_asset": "scl", "bands": {k: k for k in S2_KEYS}}]}


def _summer_items(url: str, section: dict):
    from misomap.cube.build import cube_grid, search_bbox
    from misomap.cube.config import CubeConfig
    from misomap.cube.search import open_client, search_source

    cfg = CubeConfig.model_validate(section)
    grid = cube_grid(cfg)
    found = search_source(open_client(url, 30, 2), url, cfg, cfg.sources[0], search_bbox(grid), None)
    return grid, list(found.groups["summer"])


def run_ours(url: str, section: dict) -> dict:
    from misomap.config import config_from_dict
    from misomap.jobs.build_cube import run_build_cube

    t = time.perf_counter()
    result = run_build_cube(config_from_dict({"stac": {"url": url}, "cube": section}))
    return {"seconds": time.perf_counter() - t, "mpix_bands": np.prod(result.shape) / 1e6}


def run_naive(url: str, section: dict) -> dict:
    """Every item read whole, reprojected in memory onto the full region, composited with numpy."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    t = time.perf_counter()
    grid, items = _summer_items(url, section)
    stack = np.full((len(items), len(S2_KEYS), *grid.shape), np.nan, np.float32)
    for i, item in enumerate(items):
        scl = np.zeros(grid.shape, np.float32)
        for j, key in enumerate((*S2_KEYS, "scl")):
            asset = item.assets[key]
            with rasterio.open(asset.href) as src:
                whole = src.read(1).astype(np.float32)
                whole[whole == src.nodata] = np.nan
                dst = np.full(grid.shape, np.nan, np.float32)
                reproject(whole, dst, src_transform=src.transform, src_crs=src.crs, src_nodata=np.nan,
                          dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan,
                          resampling=Resampling.nearest)
            if key == "scl":
                scl = dst
            else:
                rb = (asset.extra_fields.get("raster:bands") or [{}])[0]
                stack[i, j] = dst * rb.get("scale", 1.0) + rb.get("offset", 0.0)
        bad = np.isnan(scl) | np.isin(scl, SCL_DROP)
        stack[i][:, bad] = np.nan
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanmedian(stack, axis=0)
    assert out.shape == (len(S2_KEYS), *grid.shape)
    return {"seconds": time.perf_counter() - t, "mpix_bands": out.size / 1e6}


def run_loader(url: str, section: dict, loader: str) -> dict:
    """Load the summer items' bands onto the region with our reader, stackstac or odc-stac (no
    compositing), one chunk-sized window after another as the builder does."""
    from misomap.cube.grid import plan_chunks

    grid, items = _summer_items(url, section)
    t = time.perf_counter()
    size = 0
    for w in plan_chunks(grid, section["chunk"]):
        sub = grid.window(w.row0, w.col0, w.height, w.width)
        if loader == "ours":
            from misomap.cube.stack import read_window

            size += read_window(items, S2_KEYS, sub).size
        elif loader == "stackstac":
            import stackstac
            from pyproj import CRS

            arr = stackstac.stack([it.to_dict() for it in items], assets=list(S2_KEYS),
                                  epsg=CRS.from_user_input(sub.crs).to_epsg(), resolution=sub.resolution,
                                  bounds=sub.bounds, snap_bounds=False, dtype="float32",
                                  fill_value=np.float32(np.nan), rescale=False, sortby_date=False,
                                  chunksize=max(sub.shape))
            size += arr.data.compute(scheduler="synchronous").size
        else:
            import odc.stac
            from odc.geo.geobox import GeoBox

            box = GeoBox.from_bbox(sub.bounds, crs=sub.crs, resolution=sub.resolution)
            ds = odc.stac.load(items, bands=list(S2_KEYS), geobox=box, chunks={}, resampling="nearest",
                               dtype="float32", groupby="id")
            size += ds.to_array().compute(scheduler="synchronous").values.size
    return {"seconds": time.perf_counter() - t, "mpix_bands": size / 1e6}


def _proc_kb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child(mode: str, url: str, section: dict) -> dict:
    """Run one measurement in a fresh process; its peak RSS is that measurement's alone."""
    cmd = [sys.executable, __file__, "--child", mode, "--url", url, "--section", json.dumps(section)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, default=Path(tempfile.gettempdir()) / "misomap-bench-world")
    ap.add_argument("--size", default="demo", help="demo-world size (tiny, demo, bench)")
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--child")
    ap.add_argument("--url")
    ap.add_argument("--section")
    args = ap.parse_args()
    if args.child:
        runner = {"ours": run_ours, "naive": run_naive,
                  "loader-ours": lambda u, s: run_loader(u, s, "ours"),
                  "stackstac": lambda u, s: run_loader(u, s, "stackstac"),
                  "odc": lambda u, s: run_loader(u, s, "odc")}[args.child]
        import misomap.jobs.build_cube  # noqa: F401 - imports (and the modules they pull in) are
        import odc.stac  # noqa: F401      not part of a measurement's memory
        import rasterio  # noqa: F401

        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) after the imports
        base = _proc_kb("VmRSS")
        res = runner(args.url, json.loads(args.section))
        res["peak_rss_mb"] = (_proc_kb("VmHWM") - base) / 1024
        res["base_rss_mb"] = base / 1024
        print(json.dumps(res))
        return

    from misomap.demo.world import generate_world, rustac_serve_files
    from misomap.services.stac_api import stac_api_server

    if not (args.world / "world.json").exists():
        print(f"generating the {args.size} demo world into {args.world} ...", flush=True)
        generate_world(args.world, seed=0, size=args.size)
    work = Path(tempfile.mkdtemp(prefix="bench-cube-"))
    with stac_api_server(rustac_serve_files(args.world), work / "rustac") as (url, _):
        rows = {}
        for frac in (0.5, 1.0):
            bounds, res = _region(args.world, frac)
            for mode in ("ours", "naive"):
                section = _cube_section(args.world, str(work / f"{mode}-{frac}.zarr"), bounds, res, args.chunk)
                rows[(mode, frac)] = r = _child(mode, url, section)
                print(f"{mode:<6} region {frac:.0%} side: {r['mpix_bands']:.1f} Mpix-bands in {r['seconds']:.1f} s"
                      f" = {r['mpix_bands'] / r['seconds']:.2f} Mpix-bands/s, peak RSS {r['peak_rss_mb']:.0f} MB",
                      flush=True)
        bounds, res = _region(args.world, 0.5)
        section = _cube_section(args.world, str(work / "loader.zarr"), bounds, res, args.chunk)
        load = {name: _child(name, url, section) for name in ("loader-ours", "stackstac", "odc")}
    for frac in (0.5, 1.0):
        ours, naive = rows[("ours", frac)], rows[("naive", frac)]
        ratio = (ours["mpix_bands"] / ours["seconds"]) / (naive["mpix_bands"] / naive["seconds"])
        print(f"region {frac:.0%} side: throughput ours/naive = {ratio:.2f}x; "
              f"peak RSS ours {ours['peak_rss_mb']:.0f} MB vs naive {naive['peak_rss_mb']:.0f} MB")
    o1, o2 = rows[("ours", 0.5)], rows[("ours", 1.0)]
    print(f"ours, 4x the area: time x{o2['seconds'] / o1['seconds']:.2f}, "
          f"peak RSS x{o2['peak_rss_mb'] / o1['peak_rss_mb']:.2f} (the issue asks for flat memory and linear time)")
    n1, n2 = rows[("naive", 0.5)], rows[("naive", 1.0)]
    print(f"naive, 4x the area: time x{n2['seconds'] / n1['seconds']:.2f}, "
          f"peak RSS x{n2['peak_rss_mb'] / n1['peak_rss_mb']:.2f}")
    m, s, o = load["loader-ours"], load["stackstac"], load["odc"]
    print(f"loader, chunk by chunk on the same region: ours {m['seconds']:.2f} s, "
          f"stackstac {s['seconds']:.2f} s, odc-stac {o['seconds']:.2f} s (stackstac/ours time = "
          f"{s['seconds'] / m['seconds']:.2f}, odc/ours = {o['seconds'] / m['seconds']:.2f}); peak RSS "
          f"{m['peak_rss_mb']:.0f} / {s['peak_rss_mb']:.0f} / {o['peak_rss_mb']:.0f} MB")

if __name__ == "__main__":
    main()
