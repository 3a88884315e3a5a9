"""Coverage of `misomap assess`'s 95% intervals on the demo world: repeated samples of a map, labelled
from the world's truth rasters, and the share of intervals that hold the true value.

    .venv/bin/python bench/bench_assess.py [--seed 0] [--size demo] [--reps 1000] [--n 300]

The maps: the truth rasters of the demo world (seed, size; made in memory as `misomap demo-world`
makes them, without the imagery) turned into map probabilities with spatially patchy errors
(`tests/support/assess_maps.truth_map`): a good map (~93% permafrost, ~84% soil-order accuracy on
land) and a deliberately biased one that also over-maps permafrost and Gelisols and under-maps
Histosols. Both are written as real map stores and read back by `misomap.assess`. Designs: n points
stratified by permafrost class (proportional), stratified by soil-order class (proportional, at least
20 per class), and a simple random sample; every point is labelled for both class layers from the
truth (water: `none`). Figures: permafrost area, each soil order's area, both overall accuracies.
Printed: coverage of the Wilson intervals `misomap assess` reports, of normal intervals (estimate ±
1.96 SE) for contrast, and the mean Wilson width relative to the true value.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.assess_maps import coverage, demo_truth, truth_map, write_map

DESIGNS = (("permafrost_class", "stratified", "proportional", 0),
           ("soil_order_class", "stratified", "proportional", 20),
           ("soil_order_class", "random", "proportional", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="demo world seed")
    parser.add_argument("--size", default="demo", help="demo world size (tiny, demo, bench)")
    parser.add_argument("--reps", type=int, default=1000, help="repeated samples per map and design")
    parser.add_argument("--n", type=int, default=300, help="points per sample")
    parser.add_argument("--design", type=int, action="append", help="design index (0, 1, 2; default all)")
    args = parser.parse_args()
    grid, pf, so = demo_truth(args.seed, args.size)
    print(f"demo world seed {args.seed} ({args.size}): {grid.width}x{grid.height} px at {grid.resolution:g} m; "
          f"{args.reps} samples of n={args.n} per map and design")
    with tempfile.TemporaryDirectory() as tmp:
        for biased in (False, True):
            name = "biased" if biased else "good"
            folder = write_map(Path(tmp) / name, grid, *truth_map(pf, so, biased, args.seed), run=name)
            for i in args.design or range(len(DESIGNS)):
                layer, design, allocation, floor = DESIGNS[i]
                t0 = time.perf_counter()
                cov = coverage(folder, pf, so, layer, design, allocation, args.n, args.reps, floor)
                label = f"{design} by {layer}" if design == "stratified" else design
                print(f"\n{name} map, {label}, {allocation}, min {floor}/stratum ({time.perf_counter() - t0:.0f} s)")
                print(f"{'figure':<26}{'true':>10}{'Wilson':>9}{'normal':>9}{'width':>8}")
                for fig, c in cov.items():
                    print(f"{fig:<26}{c['true']:>10.3f}{c['wilson']:>9.3f}{c['normal']:>9.3f}{c['width']:>8.3f}")


if __name__ == "__main__":
    main()
