"""Scheduling overhead of a statewide regeneration, one command: `.venv/bin/python bench/bench_schedule.py`.

Builds the dry-run task graph of all of Alaska (misomap.plan.regen.task_graph: search -> one
task per cube chunk -> one per map chunk -> publish) at 30 m and 10 m (tens of thousands of chunks),
runs it with no-op task bodies on a local dask cluster (2 worker processes), and prints:
- time to plan and build the graph, and scheduling time per chunk task;
- the same overhead as a share of the estimated compute per chunk (README per-core rates);
- per-task overhead at the two graph sizes (flat means the scheduler scales), and peak RSS of the
  client + scheduler process.
Prints ratios measured in this one run; asserts no times.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not in /proc/self/status")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk", type=int, default=1024, help="cube and map chunk side (px)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--resolutions", type=float, nargs="+", default=[30.0, 10.0])
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    from misomap.config import config_from_dict
    from misomap.jobs.regenerate import dry_run

    cfg = config_from_dict({
        "cube": {"out": "unused", "area": "alaska", "chunk": args.chunk, "datetime": "2019-01-01/2023-12-31",
                 "sources": [{"collection": "sentinel-2-l2a", "kind": "optical", "prefix": "s2",
                              "bands": {b: b for b in ("blue", "green", "red", "rededge1", "rededge2", "rededge3",
                                                       "nir", "swir16", "swir22")}}]},
        "map": {"cube": "unused", "output": "unused", "chunk_px": args.chunk}})
    rates = cfg.plan.rates
    rows = {}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.submit(sum, [1]).result()  # workers up before timing
        for res in args.resolutions:
            t0 = time.perf_counter()
            d = dry_run(cfg, resolution=res)
            t_plan = time.perf_counter() - t0
            n_chunks = len(d.plan.cube_chunks) + len(d.plan.map_chunks)
            t0 = time.perf_counter()
            client.get(d.graph, "publish")
            t_run = time.perf_counter() - t0
            per_task = t_run / len(d.graph)
            px = args.chunk * args.chunk
            compute = px * 9 / rates.cube_px_bands_per_s_core + px / rates.miso_px_per_s_core  # core-s per chunk
            rows[res] = (n_chunks, per_task)
            print(f"Alaska {res:g} m: {len(d.plan.tiles)} tiles, {len(d.plan.cube_chunks):,} cube + "
                  f"{len(d.plan.map_chunks):,} map chunks, {len(d.graph):,} tasks, {d.n_edges:,} edges; "
                  f"plan+graph {t_plan:.1f} s; run {t_run:.1f} s on {args.workers} workers = "
                  f"{per_task * 1e3:.2f} ms/task; overhead / compute per chunk (cube + MISO at README rates, "
                  f"{compute:.0f} core-s) = {per_task * args.workers / compute:.2e}", flush=True)
    if len(rows) > 1:
        (n1, o1), (n2, o2) = rows[args.resolutions[0]], rows[args.resolutions[-1]]
        print(f"{n2 / n1:.1f}x the chunks: per-task overhead x{o2 / o1:.2f}")
    print(f"peak RSS of client+scheduler {_peak_rss_mb():.0f} MB; load average while running: "
          f"{Path('/proc/loadavg').read_text().split()[0]} on {__import__('os').cpu_count()} cores")


if __name__ == "__main__":
    main()
