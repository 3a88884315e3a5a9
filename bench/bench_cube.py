"""Cube-build benchmark, one command: `.venv/bin/python bench/bench_cube.py [--world DIR]`.

On the demo world (generated once into --world if missing) and its real STAC API, for a Sentinel-2
summer composite (9 bands + SCL masking):
- throughput of `misomap cube build` vs the naive way (read every item whole with rasterio,
  reproject in memory, composite with numpy) on the same region, as megapixel-bands per second;
- peak memory (RSS above the process's baseline after imports) of both at two region sizes (4x the
  area apart), each run in its own process;
- our reader (per-thread cached datasets, shared nearest warps) vs stackstac vs odc-stac loading the same items
  onto the same region chunk by chunk, as the builder does (the loader choice).

`--full-size DIR`: instead, real-sized Sentinel-2 sources (10980² px 10 m and 5490² px 20 m COGs,
two overlapping MGRS tiles x two dates, item JSON in the Earth Search v1 layout of
tests/data/catalogs/) written once into DIR; the builder (one worker) at three region sizes shows
peak memory per worker and time per chunk as the region grows (1 to 64 chunks), and our reader vs stackstac vs
odc-stac load the same items chunk by chunk. Run it with another checkout first on PYTHONPATH to
measure that code on the same files.
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
    from misomap.cube.build import planned_grid, search_bbox
    from misomap.cube.config import CubeConfig
    from misomap.cube.search import open_client, search_source

    cfg = CubeConfig.model_validate(section)
    grid = planned_grid(cfg)
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
    keys = list(section["sources"][0]["bands"].values())
    t = time.perf_counter()
    size = 0
    for w in plan_chunks(grid, section["chunk"]):
        sub = grid.window(w.row0, w.col0, w.height, w.width)
        if loader == "ours":
            from misomap.cube.stack import read_window

            size += read_window(items, keys, sub).size
        elif loader == "stackstac":
            import stackstac
            from pyproj import CRS

            arr = stackstac.stack([it.to_dict() for it in items], assets=keys,
                                  epsg=CRS.from_user_input(sub.crs).to_epsg(), resolution=sub.resolution,
                                  bounds=sub.bounds, snap_bounds=False, dtype="float32",
                                  fill_value=np.float32(np.nan), rescale=False, sortby_date=False,
                                  chunksize=max(sub.shape))
            size += arr.data.compute(scheduler="synchronous").size
        else:
            import odc.stac
            from odc.geo.geobox import GeoBox

            box = GeoBox.from_bbox(sub.bounds, crs=sub.crs, resolution=sub.resolution)
            ds = odc.stac.load(items, bands=keys, geobox=box, chunks={}, resampling="nearest",
                               dtype="float32", groupby="id")
            size += ds.to_array().compute(scheduler="synchronous").values.size
    return {"seconds": time.perf_counter() - t, "mpix_bands": size / 1e6}


FULL_TILES = {"06WVT": 399960.0, "06WWT": 499980.0}
"""Two MGRS-like tiles of UTM 6N with Sentinel-2's 9.78 km overlap, x origin by tile (top y below)."""
FULL_YMAX = 7400040.0
FULL_BANDS = {"red": (10, "B04"), "nir": (10, "B08"), "swir16": (20, "B11"), "scl": (20, "SCL")}
FULL_DATES = {"2022-07-06T21:40:00Z": (True, 0), "2022-07-16T21:40:00Z": (False, 1000)}
"""Dates -> (earthsearch:boa_offset_applied, DN offset in the pixels): both Earth Search kinds."""


def _full_cog(path: Path, res: int, scl: bool, add: int) -> None:
    """One full-size tile band: smooth reflectance x 1e4 (+ the baseline offset), ZSTD COG."""
    import rasterio
    import rasterio.windows
    from rasterio.transform import from_origin

    n = 109800 // res
    rows = np.arange(n, dtype=np.float32)[:, None]
    profile = {"driver": "COG", "width": n, "height": n, "count": 1, "crs": "EPSG:32606",
               "transform": from_origin(FULL_TILES[path.parent.name.split("_")[1]], FULL_YMAX, res, res),
               "nodata": 0, "compress": "ZSTD", "level": 1, "predictor": 2, "blocksize": 1024,
               "overviews": "NONE", "dtype": "uint8" if scl else "uint16", "num_threads": 2}
    cols = np.arange(n, dtype=np.float32)[None, :]
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, n, 1098):  # in strips: no full-tile float temporaries
            r = rows[r0:r0 + 1098]
            if scl:
                data = np.where((r // 97 + cols // 89) % 7 == 0, 9, 4).astype(np.uint8)  # cloud lattice
            else:
                data = (1500 + add + 800 * np.sin(r / 300.0) * np.cos(cols / 410.0)).astype(np.uint16)
            dst.write(data, 1, window=rasterio.windows.Window(0, r0, n, len(r)))


def full_size_world(root: Path) -> list[str]:
    """Write (once) the full-size tiles and their STAC files; the files to serve."""
    import copy

    template = json.loads((Path(__file__).parent.parent / "tests" / "data" / "catalogs"
                           / "earth-search-v1-sentinel-2-l2a.json").read_text())
    features = []
    for tile, x0 in FULL_TILES.items():
        for when, (applied, add) in FULL_DATES.items():
            day = when[:10].replace("-", "")
            item_id = f"S2A_{tile}_{day}_0_L2A"
            folder = root / "cogs" / item_id
            folder.mkdir(parents=True, exist_ok=True)
            it = copy.deepcopy(template)
            it["id"], it["links"] = item_id, []
            it["properties"].update({"datetime": when, "proj:epsg": 32606, "s2:processing_baseline": "04.00",
                                     "earthsearch:boa_offset_applied": applied, "grid:code": f"MGRS-{tile}",
                                     "s2:datatake_id": f"GS2A_{day}T214000_000000_N04.00"})
            from pyproj import Transformer

            tr = Transformer.from_crs("EPSG:32606", "EPSG:4326", always_xy=True)
            w, s_, e, n = tr.transform_bounds(x0, FULL_YMAX - 109800, x0 + 109800, FULL_YMAX, densify_pts=21)
            it["bbox"] = [w, s_, e, n]
            it["geometry"] = {"type": "Polygon", "coordinates": [[[w, s_], [e, s_], [e, n], [w, n], [w, s_]]]}
            red = template["assets"]["red"]
            it["assets"] = {}
            for key, (res, name) in FULL_BANDS.items():
                path = folder / f"{name}.tif"
                if not path.exists():
                    _full_cog(path, res, key == "scl", add)
                asset = copy.deepcopy(red)
                asset.update({"href": path.resolve().as_uri(), "title": key, "gsd": res,
                              "proj:shape": [109800 // res] * 2,
                              "proj:transform": [res, 0, x0, 0, -res, FULL_YMAX]})
                asset["raster:bands"][0]["spatial_resolution"] = res
                if key == "scl":
                    asset.pop("eo:bands")
                    asset["raster:bands"] = [{"nodata": 0, "data_type": "uint8", "spatial_resolution": res}]
                it["assets"][key] = asset
            features.append(it)
    coll = {"type": "Collection", "stac_version": "1.0.0", "id": "sentinel-2-l2a", "description": "bench",
            "license": "proprietary", "links": [],
            "extent": {"spatial": {"bbox": [[-152.0, 64.0, -146.0, 68.0]]},
                       "temporal": {"interval": [["2022-01-01T00:00:00Z", "2022-12-31T00:00:00Z"]]}}}
    (root / "collection.json").write_text(json.dumps(coll))
    (root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return [str(root / "collection.json"), str(root / "items.json")]


def _full_section(out: str, side_px: int, chunk: int) -> dict:
    """A 10 m EPSG:3338 region of `side_px` px inside both tiles' overlap (every chunk reads 4 items)."""
    x0, y1 = 320_000.0, 1_820_000.0  # inside UTM 6N x 499980..509760 (both tiles), ~66.2°N 147°W
    return {"out": out, "bounds": [x0, y1 - side_px * 10, x0 + side_px * 10, y1], "resolution": 10.0,
            "chunk": chunk, "datetime": "2022-01-01/2022-12-31", "workers": 1,
            "seasons": {"summer": {"start": "06-15", "end": "08-15"}},
            "sources": [{"collection": "sentinel-2-l2a", "kind": "optical", "prefix": "s2",
                         "mask_asset": "scl",
                         "bands": {"red": "red", "nir": "nir", "swir16": "swir16"}}]}


def full_size(root: Path, chunk: int) -> None:
    """Peak memory per worker and time per chunk at three region sizes; loaders on one region."""
    from misomap.services.stac_api import stac_api_server

    files = full_size_world(root)
    work = Path(tempfile.mkdtemp(prefix="bench-cube-full-"))
    with stac_api_server(files, work / "rustac") as (url, _):
        rows = {}
        for side in (chunk, 2 * chunk, 4 * chunk, 8 * chunk):
            section = _full_section(str(work / f"ours-{side}.zarr"), side, chunk)
            rows[side] = r = _child("ours", url, section)
            n = (side // chunk) ** 2
            print(f"build {side}x{side} px ({n} chunks of {chunk}): {r['seconds']:.1f} s = "
                  f"{r['seconds'] / n:.2f} s/chunk, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
        small, big = rows[chunk], rows[8 * chunk]
        print(f"64x the area: time x{big['seconds'] / small['seconds']:.2f}, "
              f"peak RSS x{big['peak_rss_mb'] / small['peak_rss_mb']:.2f}")
        section = _full_section(str(work / "loader.zarr"), 2 * chunk, chunk)
        load = {name: _child(name, url, section) for name in ("loader-ours", "stackstac", "odc")}
    m, s, o = load["loader-ours"], load["stackstac"], load["odc"]
    nb = len(section["sources"][0]["bands"])
    print(f"loader, {2 * chunk}x{2 * chunk} px chunk by chunk, 4 full-size items x {nb} bands: "
          f"ours {m['seconds']:.2f} s, stackstac {s['seconds']:.2f} s, odc-stac {o['seconds']:.2f} s "
          f"(stackstac/ours = {s['seconds'] / m['seconds']:.2f}, "
          f"odc/ours = {o['seconds'] / m['seconds']:.2f}); "
          f"peak RSS {m['peak_rss_mb']:.0f} / {s['peak_rss_mb']:.0f} / {o['peak_rss_mb']:.0f} MB")


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
    ap.add_argument("--full-size", type=Path, metavar="DIR",
                    help="bench on full-size (10980² / 5490² px) Sentinel-2 tiles written once into DIR")
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

    if args.full_size:
        full_size(args.full_size, args.chunk)
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
