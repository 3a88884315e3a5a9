"""Coverage of the 95% intervals on the demo world (seed 0, 640×640 px): over 1,000 samples of
n = 300 stratified by permafrost class, labelled from the truth rasters, the intervals for permafrost
area, every soil order's area and both overall accuracies hold the true value in 93-97% of samples,
for a good map and for a deliberately biased one (the same samples bench/bench_assess.py prints)."""

from __future__ import annotations

import pytest

from tests.support.assess_maps import coverage, demo_truth, truth_map, write_map


@pytest.mark.slow
@pytest.mark.parametrize("biased", [False, True], ids=["good map", "biased map"])
def test_intervals_cover_the_truth_on_the_demo_world(biased, tmp_path):
    grid, pf, so = demo_truth(0, "demo")
    folder = write_map(tmp_path / "map", grid, *truth_map(pf, so, biased, 0), run="biased" if biased else "good")
    cov = coverage(folder, pf, so, "permafrost_class", "stratified", "proportional", n=300, reps=1000)
    outside = {f: c["wilson"] for f, c in cov.items() if not 0.93 <= c["wilson"] <= 0.97}
    assert not outside, outside
