"""`misomap assess sample | estimate | compare` as a user runs them, on maps made from the tiny demo
world's truth: the files each writes, pedons flagged as naive, and every bad input refused with one
line, exit 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from tests.support.assess_maps import demo_truth, truth_map, write_map
from tests.support.cli import run_in_process


def run(args: list[str], capsys) -> tuple[int, str]:
    return run_in_process(args, capsys)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Truth of the tiny world, a good and a biased map of it (the good one unmapped in a corner),
    and zones (north / south halves)."""
    root = tmp_path_factory.mktemp("assess")
    grid, pf, so = demo_truth(0, "tiny")
    p, s = truth_map(pf, so, biased=False)
    p[:6, :6], s[:, :6, :6] = np.nan, np.nan
    good = write_map(root / "good", grid, p, s, "good")
    biased = write_map(root / "biased", grid, *truth_map(pf, so, biased=True), "biased")
    ym = (grid.ymin + grid.ymax) / 2
    zones = root / "zones.parquet"
    gpd.GeoDataFrame({"zone": ["north", "south"]}, crs="EPSG:3338", geometry=[
        box(grid.xmin, ym, grid.xmax, grid.ymax), box(grid.xmin, grid.ymin, grid.xmax, ym)]).to_parquet(zones)
    return {"root": root, "grid": grid, "pf": pf, "so": so, "good": good, "biased": biased, "zones": str(zones)}


def _label(points: Path, world: dict, out: Path) -> Path:
    """The sample with labels from the truth: `label` (permafrost) and `label_soil_order_class`."""
    table = gpd.read_parquet(points)
    pf, so = world["pf"][table["row"], table["col"]], world["so"][table["row"], table["col"]]
    table["label"] = np.where(pf == 255, "none", np.where(pf == 1, "present", "absent"))
    orders = np.array(["Andisols", "Entisols", "Gelisols", "Histosols", "Inceptisols", "Mollisols", "Spodosols",
                       "none"], dtype=object)
    table["label_soil_order_class"] = orders[np.where(so == 255, 7, so)]
    table.to_parquet(out)
    return out


def test_sample_label_estimate(world, tmp_path, capsys):
    pts = tmp_path / "points.parquet"
    code, text = run(["assess", "sample", world["good"], "--n", "150", "--min-per-class", "10", "--seed", "3",
                      "--zones", world["zones"], "--out", str(pts)], capsys)
    assert code == 0, text
    table = gpd.read_parquet(pts)
    assert len(table) == 150 and table.crs.to_epsg() == 3338
    assert {"stratum", "inclusion_probability", "map_digest", "zone"} <= set(table.columns)
    assert set(table["stratum"]) == {"north/absent", "north/present", "south/absent", "south/present"}
    labelled = _label(pts, world, tmp_path / "labelled.parquet")
    out = tmp_path / "assessment"
    code, text = run(["assess", "estimate", world["good"], "--labels", str(labelled), "--out", str(out),
                      "--zones", world["zones"]], capsys)
    assert code == 0, text
    assert "overall accuracy" in text
    doc = json.loads((out / "estimate.json").read_text())
    assert not doc["naive"]
    for layer, classes in (("permafrost_class", ["absent", "present"]),
                           ("soil_order_class", ["Andisols", "Gelisols", "Inceptisols"])):
        fig = doc["layers"][layer]
        lo, hi = fig["overall_accuracy_ci95"]
        assert lo <= fig["overall_accuracy"] <= hi
        for name in classes:
            c = fig["classes"][name]
            assert c["area_ci95_km2"][0] <= c["area_km2"] <= c["area_ci95_km2"][1]
            for key in ("users_accuracy", "producers_accuracy"):
                assert c[f"{key}_ci95"][0] <= c[key] <= c[f"{key}_ci95"][1], (layer, name, key)
        assert set(fig["zones"]) == {"north", "south"}
    # the zones' permafrost areas add up to the whole map's
    pf = doc["layers"]["permafrost_class"]
    parts = sum(z["classes"]["present"]["area_km2"] for z in pf["zones"].values())
    assert parts == pytest.approx(pf["classes"]["present"]["area_km2"], rel=1e-9)
    report = (out / "report.md").read_text()
    assert "| present |" in report and "Wilson" in report and "NAIVE" not in report
    assert (out / "assess.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_disagreement_sample_and_compare(world, tmp_path, capsys):
    pts = tmp_path / "points.parquet"
    code, text = run(["assess", "sample", world["good"], "--design", "disagreement", "--versus", world["biased"],
                      "--allocation", "equal", "--n", "100", "--out", str(pts)], capsys)
    assert code == 0, text
    table = gpd.read_parquet(pts)
    assert (table["stratum"] == "disagree").sum() == 50
    labelled = _label(pts, world, tmp_path / "labelled.parquet")
    code, text = run(["assess", "compare", world["good"], world["biased"], "--labels", str(labelled),
                      "--out", str(tmp_path)], capsys)
    assert code == 0, text
    doc = json.loads((tmp_path / "compare.json").read_text())
    pf = doc["layers"]["permafrost_class"]
    assert pf["difference"] > 0 and pf["mcnemar_exact_p"] < 0.01  # the biased map is worse
    assert "McNemar exact p" in text


def test_pedons_are_flagged_naive(world, tmp_path, capsys):
    rng = np.random.default_rng(0)
    grid = world["grid"]
    rows, cols = rng.integers(8, grid.height, 200), rng.integers(8, grid.width, 200)
    pf = world["pf"][rows, cols]
    pedons = gpd.GeoDataFrame({"pedon_id": [f"p{i}" for i in range(200)],
                               "permafrost": np.where(pf == 255, None, pf).astype(object),
                               "soil_order": None},
                              geometry=gpd.points_from_xy(grid.x_coords()[cols], grid.y_coords()[rows]), crs="EPSG:3338")
    pedons.to_parquet(tmp_path / "pedons.parquet")
    code, text = run(["assess", "estimate", world["good"], "--labels", str(tmp_path / "pedons.parquet"),
                      "--out", str(tmp_path / "a")], capsys)
    assert code == 0, text
    doc = json.loads((tmp_path / "a" / "estimate.json").read_text())
    assert doc["naive"] and list(doc["layers"]) == ["permafrost_class"]
    assert "(naive)" in text and "NAIVE" in (tmp_path / "a" / "report.md").read_text()


def _sample(world, tmp_path, capsys, map_key: str = "good") -> gpd.GeoDataFrame:
    pts = tmp_path / "drawn.parquet"
    code, text = run(["assess", "sample", world[map_key], "--n", "60", "--out", str(pts)], capsys)
    assert code == 0, text
    return gpd.read_parquet(_label(pts, world, pts))


def _outside(t, grid):
    t.loc[0, "geometry"] = gpd.points_from_xy([grid.xmax + 1e4], [grid.ymax])[0]
    return t


def _on_nodata(t, grid):
    t.loc[0, "geometry"] = gpd.points_from_xy([grid.x_coords()[1]], [grid.y_coords()[1]])[0]
    return t


def _unknown(t, grid):
    t.loc[3, "label"] = "maybe"
    return t


def _one_label(t, grid):
    present = t.index[t["stratum"] == "present"]
    return t.drop(present[1:])


def _no_label(t, grid):
    return t[t["stratum"] != "present"]


BAD_LABELS = {"outside the map": (_outside, "outside the map"), "on nodata": (_on_nodata, "nodata"),
              "unknown class": (_unknown, "'maybe'"), "stratum with one label": (_one_label, "stratum 'present'"),
              "stratum without labels": (_no_label, "points were removed")}


@pytest.mark.parametrize("case", list(BAD_LABELS))
def test_bad_labels_are_refused(case, world, tmp_path, capsys):
    edit, culprit = BAD_LABELS[case]
    bad = tmp_path / "bad.parquet"
    edit(_sample(world, tmp_path, capsys), world["grid"]).to_parquet(bad)
    before = bad.read_bytes()
    code, text = run(["assess", "estimate", world["good"], "--labels", str(bad), "--out", str(tmp_path / "out")],
                     capsys)
    errors = [ln for ln in text.splitlines() if "ERROR" in ln]
    assert code == 2 and len(errors) == 1 and culprit in errors[0] and "Traceback" not in text, text
    assert not (tmp_path / "out").exists() and bad.read_bytes() == before


def test_a_sample_of_another_map_is_refused(world, tmp_path, capsys):
    (_sample(world, tmp_path, capsys, "biased")).to_parquet(tmp_path / "b.parquet")
    code, text = run(["assess", "estimate", world["good"], "--labels", str(tmp_path / "b.parquet"),
                      "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "drawn for another map" in text and not (tmp_path / "out").exists(), text


def test_bad_sample_requests_write_nothing(world, tmp_path, capsys):
    out = tmp_path / "p.parquet"
    code, text = run(["assess", "sample", world["good"], "--n", "1000000", "--out", str(out)], capsys)
    assert code == 2 and "larger than the map" in text and not out.exists(), text
    out.write_bytes(b"someone's labels")
    code, text = run(["assess", "sample", world["good"], "--n", "10", "--out", str(out)], capsys)
    assert code == 2 and "exists" in text and out.read_bytes() == b"someone's labels", text
