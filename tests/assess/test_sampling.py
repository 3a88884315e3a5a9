"""Sampling designs: allocation rules, reproducible draws, exact inclusion probabilities, and
unbiased figures from designs whose strata are not the map classes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from misomap.assess.assessment import assess_layer, compare_layers
from misomap.assess.maps import AssessError, MapLayer, read_layer
from misomap.assess.points import LabelledPoints, label_from_raster
from misomap.assess.sampling import SampleSpec, allocate, build_strata, sample_map
from misomap.cube.grid import Grid
from tests.support.assess_maps import write_map

GRID = Grid("EPSG:3338", 30.0, 0.0, 0.0, 30.0 * 48, 30.0 * 40)


def test_allocations_sum_to_n_keep_floors_and_caps():
    pixels = np.array([5000, 300, 40, 3])
    prop = allocate(pixels, 100, "proportional", 0, np.ones(4))
    assert prop.sum() == 100 and prop[3] == 2 and prop[2] == 2  # the floor of 2 (a 3-pixel stratum too)
    assert prop[0] > prop[1] > prop[2]
    eq = allocate(pixels, 100, "equal", 0, np.ones(4))
    assert eq.sum() == 100 and eq[3] == 3 and sorted(eq[:3]) == [32, 32, 33]  # capped at N_h
    floor = allocate(pixels, 100, "proportional", 20, np.ones(4))
    assert list(floor[1:]) == [20, 20, 3] and floor.sum() == 100
    # Neyman: n_h ∝ N_h S_h
    opt = allocate(np.array([1000, 1000]), 100, "optimal", 0, np.array([0.1, 0.3]))
    assert list(opt) == [25, 75]
    with pytest.raises(AssessError, match="larger than the map"):
        allocate(pixels, 6000, "proportional", 0, np.ones(4))
    with pytest.raises(AssessError, match="minimum"):
        allocate(pixels, 50, "proportional", 20, np.ones(4))


def _map(tmp_path, name: str, seed: int) -> tuple[MapLayer, np.ndarray]:
    """A small map of three-ish permafrost patches with ~20% errors, and its truth (water: 255)."""
    rng = np.random.default_rng(seed)
    h, w = GRID.shape
    truth = (np.add.outer(np.arange(h), np.arange(w)) % 17 < 7).astype(np.uint8)
    truth[:4, :6] = 255
    wrong = rng.random((h, w)) < 0.2
    pf = np.where(wrong, 1 - np.where(truth == 255, 0, truth), np.where(truth == 255, 0, truth)) * 0.8 + 0.1
    so = np.full((7, h, w), 1 / 7)
    so[2] += 0.01
    return read_layer(write_map(tmp_path / name, GRID, pf, so, name), "permafrost_class"), truth


def test_same_seed_same_points_and_exact_inclusion_probabilities(tmp_path):
    layer, _ = _map(tmp_path, "a", 0)
    strata = build_strata(layer, "stratified")
    spec = SampleSpec(n=60, allocation="equal", seed=4)
    one, two = sample_map(layer, strata, spec), sample_map(layer, strata, spec)
    assert one.equals(two)
    assert not one.equals(sample_map(layer, strata, SampleSpec(n=60, allocation="equal", seed=5)))
    counts = layer.pixel_counts()
    for name, grp in one.groupby("stratum"):
        k = layer.classes.index(name)
        assert len(grp) == 30 and (grp["stratum_pixels"] == counts[k]).all()
        assert np.allclose(grp["inclusion_probability"], 30 / counts[k])
        assert (layer.codes[grp["row"], grp["col"]] == k).all()  # strata are the map classes
    # pixel centres of the map grid, and the map's digest on every point
    assert np.allclose((one.geometry.x - 15) % 30, 0) and (one["map_digest"] == layer.digest).all()
    assert not one.duplicated(["row", "col"]).any()


def test_disagreement_design_is_unbiased_for_both_maps(tmp_path):
    """Strata agree/disagree are neither map's classes: the mean estimate over many samples equals the
    true figure of each map (the Stehman estimator with the design's inclusion probabilities)."""
    a, truth = _map(tmp_path, "a", 0)
    b, _ = _map(tmp_path, "b", 1)
    strata = build_strata(a, "disagreement", other=b)
    assert strata.names == ("agree", "disagree")
    land = truth != 255
    true_a = (a.codes == truth)[land].mean()
    true_area = (truth == 1).sum() * a.pixel_km2
    est_a, est_diff, area = [], [], []
    for seed in range(50):
        table = sample_map(a, strata, SampleSpec(n=40, design="disagreement", allocation="equal", seed=seed), other=b)
        points = LabelledPoints("t", label_from_raster(table, a, truth, "label"))
        fig, _ = assess_layer(points, a)
        est_a.append(fig.overall.value)
        area.append(fig.classes[1].area_km2.value)
        est_diff.append(compare_layers(points, a, b).difference.value)
    true_diff = true_a - (b.codes == truth)[land].mean()
    se = lambda v: np.std(v) / np.sqrt(len(v))
    assert abs(np.mean(est_a) - true_a) < 4 * se(est_a)
    assert abs(np.mean(area) - true_area) < 4 * se(area)
    assert abs(np.mean(est_diff) - true_diff) < 4 * se(est_diff) + 1e-12
    # half the points fall where the maps disagree, a far smaller share of the map
    assert (a.codes != b.codes).mean() < 0.45


def test_zones_cross_the_strata(tmp_path):
    layer, _ = _map(tmp_path, "a", 0)
    zones = (np.where(np.arange(GRID.width)[None, :] < 20, 0, 1).repeat(GRID.height, 0).astype(np.int32),
             ("west", "east"))
    strata = build_strata(layer, "stratified", zones=zones)
    assert set(strata.names) == {"west/absent", "west/present", "east/absent", "east/present"}
    table = sample_map(layer, strata, SampleSpec(n=40), zones=zones)
    assert ((table["col"] < 20) == (table["zone"] == "west")).all()
    assert all(s.startswith(f"{z}/") for s, z in zip(table["stratum"], table["zone"]))


def test_truth_area_of_a_map_of_the_tiny_world(demo_world, tmp_path):
    """The demo's last-screen figure: a map's permafrost area from a sample labelled by the world's truth
    rasters (read from the world folder as `misomap demo-world` wrote them), beside the true area."""
    from misomap.evaluation.map_truth import truth_raster
    from misomap.jobs.assess import truth_area
    from tests.support.assess_maps import truth_map

    pf, so = truth_raster(str(demo_world), "permafrost"), truth_raster(str(demo_world), "soil_order")
    grid = Grid("EPSG:3338", 30.0, *json.loads((demo_world / "world.json").read_text())["grid"]["bounds"])
    folder = write_map(tmp_path / "biased", grid, *truth_map(pf, so, biased=True), run="biased")
    area = truth_area(folder, str(demo_world), n=300, seed=0)
    km2 = 0.03 * 0.03
    assert area.true_km2 == pytest.approx((pf == 1).sum() * km2)
    assert area.map_km2 == pytest.approx((read_layer(folder, "permafrost_class").codes == 1).sum() * km2)
    assert area.map_km2 > 1.15 * area.true_km2  # the biased map over-maps permafrost ...
    assert area.estimate.low <= area.true_km2 <= area.estimate.high  # ... the sample's interval holds the truth
